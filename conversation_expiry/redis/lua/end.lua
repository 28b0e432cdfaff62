-- end: claim one conversation now (ENDED if live, its expiry reason if past due).
-- ARGV[4] id. Reply: {now, {claimed record}} (empty when unknown or already claimed).
-- needs: clock, claims, replay

local seen = replay()
if seen then
  return seen
end
local now = now_rw()
local cid = ARGV[4]
local out = {}
local raw = redis.call('HGET', C, cid)
if not raw then
  return { fmt(now), out }
end
local r = rec_read(raw)
local reason = ENDED
if now > deadline(r) then
  reason = due_reason(r)
end
claim_one(cid, r, reason, now, out)
return remember({ fmt(now), out })
