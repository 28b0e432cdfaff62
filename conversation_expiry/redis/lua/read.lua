-- get / is_live: the record of a live conversation. ARGV[4] id.
-- Reply: {record, now}, or {} when unknown or past due.

local now, ahead = now_ro()
local raw = redis.call('HGET', C, ARGV[4])
if not raw then
  return {}
end
if now > deadline(rec_read(raw)) then
  seen_due(now, ahead)
  return {}
end
return { raw, fmt(now) }
