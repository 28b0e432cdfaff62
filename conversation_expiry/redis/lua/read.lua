-- get / is_live: the record of a live conversation. ARGV[2] id.
-- Reply: {record, now}, or {} when unknown or past due.
-- needs: clock, record

local got = redis.call('HMGET', C, ARGV[2], MARK)
local raw = got[1]
local now, ahead = clock_of(got[2])
if not raw then
  return {}
end
if now > deadline(rec_read(raw)) then
  seen_due(now, ahead)
  return {}
end
return { raw, fmt(now) }
