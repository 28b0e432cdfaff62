-- gone: which held incarnations have left, when the stream was trimmed past a reader's cursor.
-- ARGV[4...] pairs of id, incarnation. Reply: {id, incarnation, reason, ...} of those gone
-- (reason 0 when no trace is left: it was acknowledged and its stream entry trimmed).
-- needs: claims

local out = {}
for n = 4, #ARGV, 2 do
  local cid, inc = ARGV[n], ARGV[n + 1]
  local here = false
  local raw = redis.call('HGET', C, cid)
  if raw and fmt(rec_read(raw).i) == inc then
    here = true
  end
  local claimed = redis.call('HGET', K, inc)
  if claimed and string.sub(claimed, 1, 16) == OWNER then
    here = true -- this reader's own claim: its manager runs the cleanups, where it claimed
  end
  if not here then
    local reason = 0 -- claimed (published then), dead-lettered, or acknowledged and trimmed
    local blob = claimed or redis.call('HGET', X, inc)
    if blob then
      local _, r = struct.unpack(HEAD, blob)
      reason = r
    end
    out[#out + 1] = cid
    out[#out + 1] = inc
    out[#out + 1] = reason
  end
end
return out
