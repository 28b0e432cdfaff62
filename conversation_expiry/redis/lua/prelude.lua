-- Shared by every script (prepended at load time; redis has no include).
--
-- KEYS, in this order, all under one hash tag so a Cluster keeps them in one slot. The request
-- path's scripts (touch, read, count, hold) are given only the first four, all they use:
--   C  hash   id -> live record (see REC below)
--   D  zset   id -> deadline (microseconds): what is due, the live count, eviction order
--   W  zset   id -> warning time, for conversations with a warning window not yet warned
--   M  hash   hw (time high-water mark), inc (incarnation counter), late, takeovers
--   K  hash   incarnation -> claimed record (claim header, id, live record)
--   L  zset   incarnation -> lease deadline of its claim
--   X  hash   incarnation -> claimed record, for the dead-lettered
--   S  stream departures of held conversations, read by the processes holding cleanups
--   T  zset   "incarnation:owner" -> time a claim was taken from that owner (late acks)
--   R  string the reply of one request, for a retried request (only scripts that use it)
-- ARGV[1] time in microseconds ('' = the server's TIME), ARGV[2] owner (16 bytes),
-- ARGV[3] lease in microseconds; a script's own arguments follow.
--
-- Times are integral microseconds: Lua numbers are doubles, exact below 2^53 (year 2255), so
-- deadline arithmetic is exact. Numbers are passed to redis as '%.17g' strings because redis
-- would turn a Lua number into '%.14g' text and drop the low digits.

local C, D, W, M, K, L, X, S, T, R =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local OWNER, LEASE = ARGV[2], tonumber(ARGV[3])

-- A live record: flags, created, last activity, ttl (7-byte integers: microseconds up to the
-- year 3111), incarnation (6 bytes); then max_age and warning_before (7 bytes each) when set;
-- then the metadata JSON text (empty: none). 28 bytes without the options: with the 3-byte
-- header of a Redis string that is a 32-byte allocation, which is why it is packed this tight.
local REC = '<BI7I7I7I6'
local OPT = '<I7'
-- A claimed record: owner, reason, lapsed claims, id length; then the id, then a live record.
local HEAD = '<c16BBI4'
local HEAD_LEN = 22
local WARNED, HELD, HAS_MAX_AGE, HAS_WARNING = 1, 2, 4, 8
local EXPIRED, ENDED, EVICTED, MAX_AGE = 1, 2, 3, 5
local DEAD_AFTER = 3       -- lapsed claims before a conversation is dead-lettered
local STREAM_LEN = 10000   -- departures of held conversations kept (at most 100 more)
local TAKEN_FOR = 86400e6  -- how long a takeover is remembered, to count a late ack

local function fmt(x)
  return string.format('%.17g', x)
end

-- The store's time: the given reading or the server's, never below the high-water mark.
local function clock()
  local t
  if ARGV[1] ~= '' then
    t = tonumber(ARGV[1])
  else
    local tm = redis.call('TIME')
    t = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
  end
  local hw = tonumber(redis.call('HGET', M, 'hw') or 0)
  if t <= hw then
    return hw, false
  end
  return t, true
end

-- For scripts that act on the time: it is recorded, so no later call decides on an earlier one.
local function now_rw()
  local t, ahead = clock()
  if ahead then
    redis.call('HSET', M, 'hw', fmt(t))
  end
  return t
end

-- For reads: the time is recorded only when the read saw something past due (it may not be
-- seen live again by a reading from before), so the common read writes nothing.
local function now_ro()
  return clock()
end

local function seen_due(now, ahead)
  if ahead then
    redis.call('HSET', M, 'hw', fmt(now))
  end
end

local function bit_set(flags, bit)
  return math.floor(flags / bit) % 2 == 1
end

-- A record as a table; `f` keeps only the WARNED and HELD bits (the others are recomputed).
local function rec_read(s)
  local f, c, l, t, i, pos = struct.unpack(REC, s)
  local a, w = 0, 0
  if bit_set(f, HAS_MAX_AGE) then
    a, pos = struct.unpack(OPT, s, pos)
  end
  if bit_set(f, HAS_WARNING) then
    w, pos = struct.unpack(OPT, s, pos)
  end
  return { c = c, l = l, t = t, a = a, w = w, i = i, f = f % 4, m = string.sub(s, pos) }
end

-- The record without its metadata (append r.m for the whole record).
local function rec_fixed(r)
  local f, opt = r.f, ''
  if r.a > 0 then
    f = f + HAS_MAX_AGE
    opt = struct.pack(OPT, r.a)
  end
  if r.w > 0 then
    f = f + HAS_WARNING
    opt = opt .. struct.pack(OPT, r.w)
  end
  return struct.pack(REC, f, r.c, r.l, r.t, r.i) .. opt
end

-- A claimed record's parts: owner, reason, lapses, id, live record.
local function blob_read(blob)
  local owner, reason, lapses, idlen = struct.unpack(HEAD, blob)
  local cid = string.sub(blob, HEAD_LEN + 1, HEAD_LEN + idlen)
  return owner, reason, lapses, cid, string.sub(blob, HEAD_LEN + idlen + 1)
end

local function deadline(r)
  local d = r.l + r.t
  if r.a > 0 and r.c + r.a < d then
    d = r.c + r.a
  end
  return d
end

-- Why a past-due record is due: MAX_AGE when the max_age cap came before the idle deadline.
local function due_reason(r)
  if r.a > 0 and r.c + r.a < r.l + r.t then
    return MAX_AGE
  end
  return EXPIRED
end

-- Record activity at `now`: last moves forward only; a warning stands until the deadline
-- leaves the warning window. Writes the record, its deadline and its warning time.
local function activity(cid, r, now, extend)
  if extend and now > r.l then
    r.l = now
  end
  local d = deadline(r)
  if r.w > 0 then
    if r.f % 2 == WARNED then
      if d - r.w > now then
        r.f = r.f - WARNED
        redis.call('ZADD', W, fmt(d - r.w), cid)
      end
    else
      redis.call('ZADD', W, fmt(d - r.w), cid)
    end
  end
  redis.call('HSET', C, cid, rec_fixed(r) .. r.m)
  redis.call('ZADD', D, fmt(d), cid)
  return r
end

-- Departures of held conversations, for the processes holding cleanups for them. The stream
-- is kept short with XDEL rather than XADD MAXLEN: trimming leaves no trace a reader could see,
-- while XDEL moves max-deleted-entry-id, which tells a reader it missed entries (events.lua).
local function publish(cid, inc, reason, owner)
  redis.call('XADD', S, '*', 'c', cid, 'i', inc, 'r', reason, 'o', owner)
  if redis.call('XLEN', S) > STREAM_LEN + 100 then
    local old = redis.call('XRANGE', S, '-', '+', 'COUNT', 100)
    local ids = {}
    for n, entry in ipairs(old) do
      ids[n] = entry[1]
    end
    redis.call('XDEL', S, unpack(ids))
  end
end

-- A live record as claimed by this process, for `reason`.
local function claimed_blob(cid, r, reason)
  return struct.pack(HEAD, OWNER, reason, 0, #cid) .. cid .. rec_fixed(r) .. r.m
end

-- Move one live record to the claimed ones under this process's lease; append its claimed
-- record to `out`. (A sweep does the same in bulk: claim.lua.)
local function claim_one(cid, r, reason, now, out)
  local inc = fmt(r.i)
  local blob = claimed_blob(cid, r, reason)
  redis.call('HSET', K, inc, blob)
  redis.call('ZADD', L, fmt(now + LEASE), inc)
  if r.w > 0 then
    redis.call('ZREM', W, cid)
  end
  redis.call('HDEL', C, cid)
  redis.call('ZREM', D, cid)
  out[#out + 1] = blob
end

-- A retried request (redis-py re-sends a command whose reply was lost) gets the first reply.
local function replay()
  local seen = redis.call('GET', R)
  if seen then
    return cmsgpack.unpack(seen)
  end
  return nil
end

local function remember(reply)
  redis.call('SET', R, cmsgpack.pack(reply), 'PX', 60000)
  return reply
end
