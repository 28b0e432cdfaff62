-- get / is_live: the record of a live conversation. ARGV[2] id.
-- Reply: {record, now}, or {} when unknown or past due.
-- needs: clock, record

local now, ahead = clock()
local raw = redis.call('HGET', C, ARGV[2])
if not raw then
  return {}
end
if now > deadline(rec_read(raw)) then
  seen_due(now, ahead)
  return {}
end
return { raw, fmt(now) }
