-- ack: the claiming process finished these incarnations; forget them, and publish those that
-- were held. ARGV[4...] incarnations. Reply: how many acknowledgements came late (the claim
-- was taken over or dead-lettered): they change nothing. An incarnation already acknowledged
-- by this owner (a retried ack) is neither late nor changed.

local late = 0
for n = 4, #ARGV do
  local inc = ARGV[n]
  local blob = redis.call('HGET', K, inc)
  if blob then
    local owner, reason, _, cid, rest = blob_read(blob)
    if owner == OWNER then
      redis.call('HDEL', K, inc)
      redis.call('ZREM', L, inc)
      if bit_set(rec_read(rest).f, HELD) then
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
