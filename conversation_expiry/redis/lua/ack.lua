-- ack: the claiming process finished these incarnations; forget them, and publish those that
-- were held. ARGV[4...] incarnations. Reply: how many acknowledgements came late (the claim
-- was taken over or dead-lettered): they change nothing. An incarnation already acknowledged
-- by this owner (a retried ack) is neither late nor changed.

local late = 0
for n = 4, #ARGV do
  local inc = ARGV[n]
  local blob = redis.call('HGET', K, inc)
  if blob then
    local owner, reason, _, idlen = struct.unpack(HEAD, blob)
    if owner == OWNER then
      redis.call('HDEL', K, inc)
      redis.call('ZREM', L, inc)
      local r = rec_read(string.sub(blob, HEAD_LEN + 1))
      if math.floor(r.f / HELD) % 2 == 1 then
        local cid = string.sub(blob, HEAD_LEN + REC_LEN + 1, HEAD_LEN + REC_LEN + idlen)
        publish(cid, inc, reason, OWNER)
      end
    else
      late = late + 1
    end
  elseif redis.call('ZSCORE', T, inc .. ':' .. OWNER) then
    late = late + 1
  end
end
if late > 0 then
  redis.call('HINCRBY', M, 'late', late)
end
return late
