-- clock: the store's time, never below the namespace's high-water mark, and the kind of time
-- the namespace runs on.
--
-- M 'hw' is a time calls acted on. A call decides on max(its reading, hw), so a server clock
-- stepped back or a failover to a lagging replica delays expiry, never hastens it. Calls that
-- start, claim, end, hold or renew record their time. Reads and touches, the calls made most,
-- write no mark while what they see is live: they record their time only when they saw
-- something past due (so that no reading from before can see it live again), and a touch
-- keeps its time in the record it changes, whose last activity only moves forward; nothing
-- they decided can be undone by an earlier reading.
--
-- M 'time' is the kind of time that decides in the namespace: 'server' (TIME) or 'driven' (a
-- manager's own clock, a ManualClock in tests, as ARGV[1]). The two have nothing in common: a
-- driven clock an hour ahead would push the mark an hour past the server's time (every
-- conversation expires at once for the processes on server time, whose time then stands
-- still). So a call of the other kind fails while the namespace has conversations (live or
-- claimed); on an empty one it starts afresh on its own kind, recorded by its first write.

local KIND = ARGV[1] == '' and 'server' or 'driven'
local recorded = false -- the namespace's kind as recorded (false: none yet); set by clock()

local function clock()
  local m = redis.call('HMGET', M, 'hw', 'time')
  local hw = tonumber(m[1]) or 0
  recorded = m[2]
  if recorded and recorded ~= KIND then
    if redis.call('HLEN', C) > 0 or (K and redis.call('HLEN', K) > 0) then
      error({ err = 'TIMEKIND the namespace runs on ' .. recorded .. ' time, this call on '
        .. KIND .. ' time' })
    end
    recorded, hw = false, 0 -- empty: this kind takes over, and the old mark means nothing to it
  end
  local t
  if KIND == 'driven' then
    t = tonumber(ARGV[1])
  else
    local tm = redis.call('TIME')
    t = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
  end
  if t <= hw then
    return hw, false
  end
  return t, true
end

-- Record `t` as the mark (with this call's kind, when the namespace has none recorded yet).
local function mark(t)
  if recorded then
    redis.call('HSET', M, 'hw', fmt(t))
  else
    redis.call('HSET', M, 'hw', fmt(t), 'time', KIND)
    recorded = KIND
  end
end

-- For scripts that act on the time: it is recorded, so no later call decides on an earlier one.
local function now_rw()
  local t, ahead = clock()
  if ahead or not recorded then
    mark(t)
  end
  return t
end

-- For a read or touch that saw something past due at `now` (from clock()).
local function seen_due(now, ahead)
  if ahead or not recorded then
    mark(now)
  end
end
