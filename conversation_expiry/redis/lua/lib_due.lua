-- due: the deadline index D, which a touch leaves behind.
-- needs: clock, record
--
-- A touch writes only the record (update_activity is the call made most, and the ZADD was a
-- third of its server time). So D holds, for each live record, an index at or below its
-- deadline (the deadline when D was last written for it: deadlines only move forward), and
-- is put right by those who read it:
--   index <  0          confirmed past due: deadline - SHIFT, written when it was found due
--                       (by a call whose time is in the mark, so it never is live again);
--   0 <= index < now    not known: past due, or live with its index behind (resolve());
--   index >= now        live (its deadline is at or after its index).
-- So the sweep (claim.lua) takes the lowest indexes, claims those past due and writes the
-- others' real deadlines; the live count is ZCOUNT(now, +inf) once nothing is below now but
-- confirmed ones; the nearest deadlines are the lowest indexes once those are exact; eviction
-- checks its victim's record. Each index put right pays for the ZADDs that touches skipped,
-- and is written at most once per touched-then-idle stretch of a conversation.

local SHIFT = 18014398509481984 -- 2^54, above any deadline: a confirmed index is below 0
local RESOLVE = 256 -- indexes put right per call at most (about 0.5 ms of server time)

-- Write the indexes put right: `fixed` {index, id, ...} to D, `gone` ids (no record) out of it.
local function write_index(fixed, gone)
  if #fixed > 0 then
    redis.call('ZADD', D, unpack(fixed))
  end
  if #gone > 0 then
    redis.call('ZREM', D, unpack(gone))
  end
end

-- Put right up to RESOLVE unknown indexes (0 <= index < now): the live ones to their deadline,
-- the past-due ones confirmed. True when none is left.
local function resolve(now, ahead)
  local low = redis.call('ZRANGE', D, 0, '(' .. fmt(now), 'BYSCORE', 'LIMIT', 0, RESOLVE)
  if #low == 0 then
    return true
  end
  local raws = redis.call('HMGET', C, unpack(low))
  local fixed, gone, due = {}, {}, false
  for n, cid in ipairs(low) do
    local raw = raws[n]
    if raw then
      local d = deadline(rec_read(raw))
      if now > d then
        d = d - SHIFT
        due = true
      end
      fixed[#fixed + 1] = fmt(d)
      fixed[#fixed + 1] = cid
    else
      gone[#gone + 1] = cid -- an index without a record: never written, but harmless
    end
  end
  write_index(fixed, gone)
  if due then
    seen_due(now, ahead)
  end
  return #low < RESOLVE
end
