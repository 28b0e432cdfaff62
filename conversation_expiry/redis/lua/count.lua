-- count: live conversations (deadline not passed). Reply: {1, count}, or {0} when it put right
-- RESOLVE indexes and there may be more (see due): the caller calls again.
-- needs: clock, due

local now, ahead = clock()
if not resolve(now, ahead) then
  return { 0 }
end
return { 1, redis.call('ZCOUNT', D, fmt(now), '+inf') }
