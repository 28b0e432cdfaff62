-- touch: slide the deadline of a live conversation (update_activity's one round trip).
-- ARGV[2] id, [3] extend '1'/'0'. Reply: the record, or 0 (unknown) / 1 (past due).
-- needs: clock, layout
--
-- Writes no time mark while the conversation is live (see clock): the activity's time is in
-- the record. Running it twice is two activities at about the same time. The usual record
-- is handled first, before the functions of the general case are even defined: every
-- function a script defines is built again on every call, and a touch is the call to keep
-- short.

local now, ahead = clock()
local cid = ARGV[2]
local raw = redis.call('HGET', C, cid)
if not raw then
  return 0
end
local f, c, l, t, i, pos = struct.unpack(REC, raw)
if f < HAS_MAX_AGE then
  -- No max_age, no warning window (the usual record): the deadline is last activity + ttl,
  -- and only those two fields change. The same as below, without building a table.
  if now > l + t then
    seen_due(now, ahead)
    return 1
  end
  if ARGV[3] ~= '1' or now <= l then
    return raw
  end
  local rec = struct.pack(REC, f, c, now, t, i) .. string.sub(raw, pos)
  redis.call('HSET', C, cid, rec)
  redis.call('ZADD', D, fmt(now + t), cid)
  return rec
end

-- needs: activity
local r = rec_read(raw)
if now > deadline(r) then
  seen_due(now, ahead)
  return 1
end
if ARGV[3] == '1' then
  return activity(cid, r, now, true)
end
return raw
