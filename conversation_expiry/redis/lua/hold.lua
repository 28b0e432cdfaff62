-- hold: mark a live conversation as held (some process attached cleanups to it), so that its
-- departure is published on the stream. ARGV[2] id.
-- Reply: its incarnation, or -1 (unknown) / -2 (past due). Running it twice changes nothing.
-- needs: clock, record

local now = now_rw()
local cid = ARGV[2]
local raw = redis.call('HGET', C, cid)
if not raw then
  return -1
end
local r = rec_read(raw)
if now > deadline(r) then
  return -2
end
if not bit_set(r.f, HELD) then
  r.f = r.f + HELD
  redis.call('HSET', C, cid, rec_fixed(r) .. r.m)
end
return r.i
