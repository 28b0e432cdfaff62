-- count: live conversations (deadline not passed), O(log n).
-- needs: clock

local now, ahead = clock()
local t = fmt(now)
local first = redis.call('ZRANGE', D, 0, 0, 'WITHSCORES')
if #first > 0 and tonumber(first[2]) < now then
  seen_due(now, ahead)
end
return redis.call('ZCOUNT', D, t, '+inf')
