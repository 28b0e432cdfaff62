-- stats: counts for operators. Reply: {live, due, claimed, dead, late, takeovers, now}.
-- needs: clock

local now = fmt((clock()))
local m = redis.call('HMGET', M, 'late', 'takeovers')
return {
  redis.call('ZCOUNT', D, now, '+inf'),
  redis.call('ZCOUNT', D, '-inf', '(' .. now),
  redis.call('ZCARD', L),
  redis.call('HLEN', X),
  tonumber(m[1] or 0),
  tonumber(m[2] or 0),
  now,
}
