-- clock: the store's time, never below the namespace's high-water mark, and the kind of time
-- the namespace runs on.
--
-- The mark is C's field MARK ('\255': no id can be it, UTF-8 never has the byte 0xff), so that
-- a touch reads it with the record in one HMGET. Its value is the kind ('s' server, 'd'
-- driven) then the time, e.g. 's1764642000123456'; it is written by the namespace's first
-- write and never deleted, so C holds HLEN(C) - 1 records once it exists.
--
-- The time in the mark (hw) is a time calls acted on. A call decides on max(its reading, hw),
-- so a server clock stepped back or a failover to a lagging replica delays expiry, never
-- hastens it. Calls that start, claim, end, hold or renew record their time. Reads and touches,
-- the calls made most, write no mark while what they see is live: they record their time only
-- when they saw something past due (so that no reading from before can see it live again),
-- and a touch keeps its time in the record it changes, whose last activity only moves forward;
-- nothing they decided can be undone by an earlier reading. They still read the mark: a
-- reading below it (the clock went back) must neither find live a conversation that a call at
-- the mark already found past due, nor give it a deadline that the mark has already passed.
--
-- The kind is what decides in the namespace: server time (TIME) or driven time (a manager's
-- own clock, a ManualClock in tests, as AT). The two have nothing in common: a driven
-- clock an hour ahead would push the mark an hour past the server's time (every conversation
-- expires at once for the processes on server time, whose time then stands still). So a call
-- of the other kind fails while the namespace has conversations (live or claimed); on an empty
-- one it starts afresh on its own kind, recorded by its first write.

local MARK = '\255'
-- AT 'f' (the operator commands' reads): whichever kind the namespace runs on, at its own time;
-- a driven one at its mark, the time its own calls last acted on (no driven clock is here).
local FOLLOW = AT == 'f'
local KIND = (AT == '' or FOLLOW) and 's' or 'd'
local recorded = false -- the namespace's kind as recorded (false: none yet); set by clock_of()

-- The time from `mk`, the mark's value as read from C (false: none yet): (now, ahead), ahead
-- when the reading is above the mark.
local function clock_of(mk)
  local hw = 0
  recorded = false
  if mk then
    recorded = string.sub(mk, 1, 1)
    hw = tonumber(string.sub(mk, 2))
    if FOLLOW then
      KIND = recorded
    end
    if recorded ~= KIND then
      if redis.call('HLEN', C) > 1 or (K and redis.call('HLEN', K) > 0) then
        local names = { s = 'server', d = 'driven' }
        error({ err = 'TIMEKIND the namespace runs on ' .. names[recorded] .. ' time, this '
          .. 'call on ' .. names[KIND] .. ' time' })
      end
      recorded, hw = false, 0 -- empty: this kind takes over, and the old mark means nothing to it
    end
  end
  local t
  if KIND == 'd' then
    t = FOLLOW and hw or tonumber(AT)
  else
    local tm = redis.call('TIME')
    t = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
  end
  if t <= hw then
    return hw, false
  end
  return t, true
end

local function clock()
  return clock_of(redis.call('HGET', C, MARK))
end

-- Record `t` as the mark, with this call's kind.
local function mark(t)
  redis.call('HSET', C, MARK, KIND .. fmt(t))
  recorded = KIND
end

-- For scripts that act on the time: it is recorded, so no later call decides on an earlier one.
local function now_rw()
  if FOLLOW then
    error({ err = 'FOLLOW the namespace\'s own time is for reads' })
  end
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
