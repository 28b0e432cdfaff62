-- stats: counts for operators. Reply: {1, live, due, claimed, dead, late, takeovers, now}, or
-- {0} when it put right RESOLVE indexes and there may be more (see due): call again.
-- needs: clock, due

local now, ahead = clock()
if not resolve(now, ahead) then
  return { 0 }
end
local t = fmt(now)
local m = redis.call('HMGET', M, 'late', 'takeovers')
return {
  1,
  redis.call('ZCOUNT', D, t, '+inf'),
  redis.call('ZCOUNT', D, '-inf', '(0'), -- confirmed past due: nothing else is below now
  redis.call('ZCARD', L),
  redis.call('HLEN', X),
  tonumber(m[1] or 0),
  tonumber(m[2] or 0),
  t,
}
