-- stream: departures of held conversations, for the processes holding cleanups for them.

local STREAM_LEN = 10000 -- departures kept (at most 100 more)

-- The stream is kept short with XDEL rather than XADD MAXLEN: trimming leaves no trace a reader
-- could see, while XDEL moves max-deleted-entry-id, which tells a reader it missed entries
-- (events.lua).
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
