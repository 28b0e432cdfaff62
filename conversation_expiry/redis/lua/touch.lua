-- touch: slide the deadline of a live conversation (update_activity's one round trip).
-- ARGV[4] id, [5] extend '1'/'0'. Reply: the record, or 0 (unknown) / 1 (past due).

local now = now_rw()
local cid = ARGV[4]
local raw = redis.call('HGET', C, cid)
if not raw then
  return 0
end
local r = rec_read(raw)
if now > deadline(r) then
  return 1
end
if ARGV[5] == '1' then
  activity(cid, r, now, true)
end
return rec_fixed(r) .. r.m
