-- claim: one bounded batch of a sweep. Takes over claims whose lease lapsed (or dead-letters
-- them after DEAD_AFTER lapses), claims past-due conversations, then marks those entering their
-- warning window. ARGV[4] limit, ARGV[5] '1' if this process warns (a process configured
-- without warnings leaves them to those that warn, rather than use them up unheard).
-- Reply: {now, more 0/1, seconds to the next warning ('' = none), {claimed records},
--         {warned id, record, ...}, {dead-lettered records}}.
--
-- Not remembered for a retry: a batch whose reply was lost stays claimed by this process,
-- unrenewed, and is taken over after the lease like any other lapsed claim.
-- needs: clock, claims, stream

local now = now_rw()
local limit = tonumber(ARGV[4])
local out, warned, dead = {}, {}, {}
local horizon = fmt(now)

-- 1. Lapsed claims: the process that held them died or stalled for longer than its lease.
local lapsed = redis.call('ZRANGE', L, '-inf', '(' .. horizon, 'BYSCORE', 'LIMIT', 0, limit)
if #lapsed > 0 then
  redis.call('ZREMRANGEBYSCORE', T, '-inf', fmt(now - TAKEN_FOR))
  for _, inc in ipairs(lapsed) do
    local blob = redis.call('HGET', K, inc)
    if not blob then
      redis.call('ZREM', L, inc)
    else
      local owner, reason, lapses, cid, rest = blob_read(blob)
      lapses = lapses + 1
      local tail = cid .. rest
      redis.call('ZADD', T, horizon, inc .. ':' .. owner)
      redis.call('HINCRBY', M, 'takeovers', 1)
      if lapses >= DEAD_AFTER then
        local moved = struct.pack(HEAD, owner, reason, lapses, #cid) .. tail
        redis.call('HDEL', K, inc)
        redis.call('ZREM', L, inc)
        redis.call('HSET', X, inc, moved)
        dead[#dead + 1] = moved
        if bit_set(rec_read(rest).f, HELD) then
          -- The processes holding cleanups for it run them: it has left, if uncleanly.
          publish(cid, inc, reason, '')
        end
      else
        local taken = struct.pack(HEAD, OWNER, reason, lapses, #cid) .. tail
        if bit_set(rec_read(rest).f, HELD) then
          publish(cid, inc, reason, OWNER) -- (again; a claim made before that was published at its ack)
        end
        redis.call('HSET', K, inc, taken)
        redis.call('ZADD', L, fmt(now + LEASE), inc)
        out[#out + 1] = taken
      end
    end
  end
end

-- 2. Past due: the lowest indexes of D below now (see lib_due): confirmed past due first, then
-- those not known, whose records say whether they are past due (claimed) or live with their
-- index behind (put right: their index becomes their deadline, after now). They are the lowest
-- ranks of D, so they leave D in one call; every other structure is written with one call per
-- batch too (a call costs about a microsecond in a script, as much as the rest of the work on
-- one record). An index put right counts as work against the limit, as a claim does.
local fixed = 0
local room = limit - #out - #dead
if room > 0 then
  local due = redis.call('ZRANGE', D, '-inf', '(' .. horizon, 'BYSCORE', 'LIMIT', 0, room)
  if #due > 0 then
    local raws = redis.call('HMGET', C, unpack(due))
    local claimed, leases, unwarn, gone, live = {}, {}, {}, {}, {}
    local until_ = fmt(now + LEASE)
    for n, cid in ipairs(due) do
      local raw = raws[n]
      if raw then
        local r = rec_read(raw)
        local d = deadline(r)
        if now > d then
          local reason = due_reason(r)
          local blob = claimed_blob(cid, r, reason)
          local inc = fmt(r.i)
          if bit_set(r.f, HELD) then -- published now, as claim_one does
            publish(cid, inc, reason, OWNER)
          end
          claimed[#claimed + 1] = inc
          claimed[#claimed + 1] = blob
          leases[#leases + 1] = until_
          leases[#leases + 1] = inc
          gone[#gone + 1] = cid
          if r.w > 0 then
            unwarn[#unwarn + 1] = cid
          end
          out[#out + 1] = blob
        else
          live[#live + 1] = fmt(d)
          live[#live + 1] = cid
        end
      end
    end
    if #claimed > 0 then
      redis.call('HSET', K, unpack(claimed))
      redis.call('ZADD', L, unpack(leases))
      redis.call('HDEL', C, unpack(gone))
    end
    if #unwarn > 0 then
      redis.call('ZREM', W, unpack(unwarn))
    end
    redis.call('ZREMRANGEBYRANK', D, 0, #due - 1)
    if #live > 0 then
      redis.call('ZADD', D, unpack(live))
      fixed = #live / 2
    end
  end
end

-- 3. Warnings: warning time <= now, for those not yet warned.
room = limit - #out - #dead - fixed
if room > 0 and ARGV[5] == '1' then
  local due = redis.call('ZRANGE', W, '-inf', horizon, 'BYSCORE', 'LIMIT', 0, room)
  if #due > 0 then
    local raws = redis.call('HMGET', C, unpack(due))
    local records = {}
    for n, cid in ipairs(due) do
      local raw = raws[n]
      if raw then
        local r = rec_read(raw)
        if r.f % 2 == 0 then
          r.f = r.f + WARNED
        end
        local rec = rec_fixed(r) .. r.m
        records[#records + 1] = cid
        records[#records + 1] = rec
        warned[#warned + 1] = cid
        warned[#warned + 1] = rec
      end
    end
    if #records > 0 then
      redis.call('HSET', C, unpack(records))
    end
    redis.call('ZREMRANGEBYRANK', W, 0, #due - 1)
  end
end

local more = 0
if #out + #warned / 2 + #dead + fixed >= limit then
  more = 1
end
local next_warning = ''
local first = redis.call('ZRANGE', W, 0, 0, 'WITHSCORES')
if #first > 0 then
  local wait = tonumber(first[2]) - now
  if wait < 0 then
    wait = 0
  end
  next_warning = fmt(wait)
end
return { fmt(now), more, next_warning, out, warned, dead }
