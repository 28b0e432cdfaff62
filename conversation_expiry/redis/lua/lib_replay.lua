-- replay: a retried request (redis-py re-sends a command whose reply was lost) gets the first
-- reply, kept a minute under the request's own key R.

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
