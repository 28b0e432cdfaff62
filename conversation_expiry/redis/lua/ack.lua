-- ack: the claiming process finished these incarnations; forget them. Those that were held
-- were published when they were claimed, and are published again now for the processes still
-- running the scripts of a version that published only here (a rolling deploy: their gone.lua
-- takes a claimed incarnation for one still here); a holder takes a departure once.
-- ARGV[4...] incarnations. Reply: how many acknowledgements came late (the claim
-- was taken over or dead-lettered): they change nothing. An incarnation already acknowledged
-- by this owner (a retried ack) is neither late nor changed. One call per batch for each
-- structure: an ack follows every claimed batch of a sweep.
-- needs: claims

local incs = {}
for n = 4, #ARGV do
  incs[#incs + 1] = ARGV[n]
end
if #incs == 0 then
  return 0
end
local blobs = redis.call('HMGET', K, unpack(incs))
local mine = {}
local late = 0
for n, inc in ipairs(incs) do
  local blob = blobs[n]
  if blob then
    if string.sub(blob, 1, 16) == OWNER then
      mine[#mine + 1] = inc
      local _, reason, _, idlen = struct.unpack(HEAD, blob)
      if bit_set(string.byte(blob, HEAD_LEN + idlen + 1), HELD) then
        publish(string.sub(blob, HEAD_LEN + 1, HEAD_LEN + idlen), inc, reason, OWNER)
      end
    else
      late = late + 1
    end
  elseif redis.call('ZSCORE', T, inc .. ':' .. OWNER) then
    late = late + 1
  end
end
if #mine > 0 then
  redis.call('HDEL', K, unpack(mine))
  redis.call('ZREM', L, unpack(mine))
end
if late > 0 then
  redis.call('HINCRBY', M, 'late', late)
end
return late
