-- touch: slide the deadline of a live conversation (update_activity's one round trip).
-- KEYS C, W only. ARGV[1] id, [2] '0' to check without extending (absent: extend), [3] the
-- time (absent: the server's): the usual call, on server time, sends nothing but the id, as
-- every argument costs the caller about as much as a command costs the server.
-- Reply: the record, or 0 (unknown) / 1 (past due).
-- needs: layout
--
-- The usual record (no max_age, no warning window) on a namespace of this call's kind of time
-- is handled first, before the functions of the general case are even defined (a script
-- builds every function it defines again on every call, and a touch is the call to keep
-- short), in three commands: HMGET of the record and the time mark, TIME, HSET.
--
-- It writes neither the deadline index D nor a mark:
-- * D keeps the deadline it had, which is earlier (see due): whoever reads D puts it right.
-- * The time is still max(TIME, mark), read with the record at no extra command. It cannot be
--   TIME alone, even when TIME finds the record live: below the mark (the clock went back) a
--   call at the mark may have found this record past due (a read, a count), and a touch at
--   TIME would bring it back to life; and a deadline TIME + ttl below the mark would make the
--   next sweep expire it at once, earlier than its ttl. At max(TIME, mark) neither can
--   happen: the touch decides on a time at or after every time the namespace acted on.
-- * No mark is needed for what it decides: live at `now` needs none (it changes no other
--   call's decision; its time is kept in the record, and the record's last activity only
--   moves forward: `now <= l` writes nothing), and past due goes to the general case below,
--   which records its time.
-- Running it twice is two activities at about the same time.

local cid, extend = ARGV[1], ARGV[2] ~= '0'
AT = ARGV[3] or '' -- where lib_clock reads the time argument
local got = redis.call('HMGET', C, cid, '\255') -- '\255': the mark (lib_clock's MARK)
local raw, mk = got[1], got[2]
if raw and mk then
  local f, c, l, t, i, pos = struct.unpack(REC, raw)
  -- 100, 115: 'd', 's', the mark's kind byte for driven and server time
  if f < HAS_MAX_AGE and string.byte(mk) == (AT == '' and 115 or 100) and AT ~= 'f' then
    local now
    if AT == '' then
      local tm = redis.call('TIME')
      now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
    else
      now = tonumber(AT)
    end
    local hw = tonumber(string.sub(mk, 2))
    if now < hw then
      now = hw
    end
    if now <= l + t then
      if not extend or now <= l then
        return raw
      end
      local rec = struct.pack(REC, f, c, now, t, i) .. string.sub(raw, pos)
      if AT ~= '' and now > hw then
        -- Driven time (a test's clock) is known only from the calls: its mark follows them,
        -- so that the operator commands read such a namespace at its latest time.
        redis.call('HSET', C, cid, rec, '\255', 'd' .. fmt(now))
      else
        redis.call('HSET', C, cid, rec)
      end
      return rec
    end
  end
end

-- The general case: options, past due, another kind of time, no mark yet.
-- needs: clock, activity
local now, ahead = clock_of(mk)
if not raw then
  return 0
end
local r = rec_read(raw)
if now > deadline(r) then
  seen_due(now, ahead)
  return 1
end
if extend then
  if FOLLOW then
    error({ err = 'FOLLOW the namespace\'s own time is for reads' })
  end
  local rec = activity(cid, r, now, true, false)
  if KIND == 'd' and ahead then
    mark(now) -- (as the usual case does: a driven mark follows the activity)
  end
  return rec
end
return raw
