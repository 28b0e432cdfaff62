-- register / ensure: touch a live conversation, or start it afresh (claiming the past-due
-- incarnation it replaces and, at capacity, the conversations evicted to make room).
-- ARGV[4] id, [5] 'r' register / 'e' ensure, [6] extend '1'/'0', [7] ttl (us, '' = default),
-- [8] default ttl, [9] max_age (0: none), [10] warning_before (0: none), [11] capacity
-- (0: none), [12] '1' if metadata is given, [13] metadata.
-- Reply: {started 0/1, record, now, {claimed records}}.
-- needs: clock, activity, claims, replay, due

local seen = replay()
if seen then
  return seen
end
local now = now_rw()
local cid, register, extend = ARGV[4], ARGV[5] == 'r', ARGV[6] == '1'
local ttl = ARGV[7]
local out = {}

local raw = redis.call('HGET', C, cid)
if raw then
  local r = rec_read(raw)
  if now <= deadline(r) then
    if register then
      if ttl ~= '' then
        r.t = tonumber(ttl)
      end
      if ARGV[12] == '1' then
        r.m = ARGV[13]
      end
    end
    local rec = activity(cid, r, now, extend, true)
    -- Nothing started or claimed: running this twice is two activities, no need to remember.
    return { 0, rec, fmt(now), out }
  end
  claim_one(cid, r, due_reason(r), now, out)
end

-- At capacity: the conversation nearest its deadline makes room (past-due ones first, with
-- their own reason). The lowest index of D is the nearest deadline once it is its record's
-- deadline (every other index is at or above it, and a deadline is at or above its index): an
-- index left behind by touches (see due) is put right and the lowest looked at again, up to
-- RESOLVE of them per call, after which the lowest index is taken as it is (a capacity reached
-- by a burst of touched, then idle, conversations: room is made, in nearly deadline order).
-- Bounded per call, so a capacity lowered by another process is reached over several
-- registrations rather than in one long script. C holds the mark too (now_rw wrote it).
local cap = tonumber(ARGV[11])
if cap > 0 then
  local room, fixes = 64, 0
  while room > 0 and redis.call('HLEN', C) - 1 >= cap do
    local first = redis.call('ZRANGE', D, 0, 0, 'WITHSCORES')
    if #first == 0 then
      break
    end
    local victim = first[1]
    local vraw = redis.call('HGET', C, victim)
    if vraw then
      local v = rec_read(vraw)
      local d = deadline(v)
      if now > d then
        claim_one(victim, v, due_reason(v), now, out)
        room = room - 1
      elseif tonumber(first[2]) < d and fixes < RESOLVE then
        redis.call('ZADD', D, fmt(d), victim)
        fixes = fixes + 1
      else
        claim_one(victim, v, EVICTED, now, out)
        room = room - 1
      end
    else
      redis.call('ZREM', D, victim) -- an index without a record: never written, but harmless
      room = room - 1
    end
  end
end

if ttl == '' then
  ttl = ARGV[8]
end
local md = ''
if ARGV[12] == '1' then
  md = ARGV[13]
end
local r = {
  c = now, l = now, t = tonumber(ttl), a = tonumber(ARGV[9]), w = tonumber(ARGV[10]),
  i = redis.call('HINCRBY', M, 'inc', 1), f = 0, m = md,
}
local reply = { 1, activity(cid, r, now, false, true), fmt(now), out }
if #out > 0 then
  -- What was claimed must reach this process even if the reply is lost. A plain start is not
  -- remembered (a key per registration would double the memory of a burst of them): run
  -- twice, it is a start and then an activity, and the retry reports started = 0.
  remember(reply)
end
return reply
