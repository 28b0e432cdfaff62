-- claims: this process's claims on conversations that left, under its lease.
-- needs: record, stream
--
-- ARGV[2] owner (16 bytes), ARGV[3] lease in microseconds.
-- A claimed record: owner, reason, lapsed claims, id length; then the id, then a live record.

local OWNER, LEASE = ARGV[2], tonumber(ARGV[3])
local EXPIRED, ENDED, EVICTED, MAX_AGE = 1, 2, 3, 5 -- reasons a conversation left
local HEAD = '<c16BBI4'
local HEAD_LEN = 22
local DEAD_AFTER = 3       -- lapsed claims before a conversation is dead-lettered
local TAKEN_FOR = 86400e6  -- how long a takeover is remembered, to count a late ack

-- Why a past-due record is due: MAX_AGE when the max_age cap came before the idle deadline.
local function due_reason(r)
  if r.a > 0 and r.c + r.a < r.l + r.t then
    return MAX_AGE
  end
  return EXPIRED
end

-- A claimed record's parts: owner, reason, lapses, id, live record.
local function blob_read(blob)
  local owner, reason, lapses, idlen = struct.unpack(HEAD, blob)
  local cid = string.sub(blob, HEAD_LEN + 1, HEAD_LEN + idlen)
  return owner, reason, lapses, cid, string.sub(blob, HEAD_LEN + idlen + 1)
end

-- A live record as claimed by this process, for `reason`.
local function claimed_blob(cid, r, reason)
  return struct.pack(HEAD, OWNER, reason, 0, #cid) .. cid .. rec_fixed(r) .. r.m
end

-- Move one live record to the claimed ones under this process's lease; append its claimed
-- record to `out`. (A sweep does the same in bulk: claim.lua.) A held one is published now,
-- not at its acknowledgement: the processes holding cleanups for it learn at once that it has
-- left, however long this one's on_expire takes.
local function claim_one(cid, r, reason, now, out)
  local inc = fmt(r.i)
  local blob = claimed_blob(cid, r, reason)
  if bit_set(r.f, HELD) then
    publish(cid, inc, reason, OWNER)
  end
  redis.call('HSET', K, inc, blob)
  redis.call('ZADD', L, fmt(now + LEASE), inc)
  if r.w > 0 then
    redis.call('ZREM', W, cid)
  end
  redis.call('HDEL', C, cid)
  redis.call('ZREM', D, cid)
  out[#out + 1] = blob
end
