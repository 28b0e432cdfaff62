-- renew: extend the leases of this owner's outstanding claims. ARGV[4...] incarnations.
-- Reply: those no longer this owner's (taken over, acknowledged, dead-lettered).
-- needs: clock, claims

local now = now_rw()
local lost = {}
local until_ = fmt(now + LEASE)
for n = 4, #ARGV do
  local inc = ARGV[n]
  local blob = redis.call('HGET', K, inc)
  if blob and string.sub(blob, 1, 16) == OWNER then
    redis.call('ZADD', L, until_, inc)
  else
    lost[#lost + 1] = inc
  end
end
return lost
