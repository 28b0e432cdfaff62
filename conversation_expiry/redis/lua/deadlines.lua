-- deadlines: the next n deadlines of live conversations. ARGV[4] n.
-- Reply: {1, {id, deadline, ...}}, or {0} when it put right RESOLVE indexes and there may be
-- more (see due): the caller calls again.
-- needs: clock, due

local now, ahead = clock()
if not resolve(now, ahead) then
  return { 0 }
end
-- Everything below now is confirmed past due. The n lowest indexes at or after now are the n
-- nearest deadlines once each of them is its record's deadline: every other index is at or
-- above theirs, and a deadline is at or above its index. Indexes behind are put right (they
-- move up) until the n lowest are exact.
local n, fixes = tonumber(ARGV[4]), 0
while true do
  local first = redis.call('ZRANGE', D, fmt(now), '+inf', 'BYSCORE', 'LIMIT', 0, n, 'WITHSCORES')
  if #first == 0 then
    return { 1, first }
  end
  local ids = {}
  for k = 1, #first, 2 do
    ids[#ids + 1] = first[k]
  end
  local raws = redis.call('HMGET', C, unpack(ids))
  local fixed, gone = {}, {}
  for k, cid in ipairs(ids) do
    local raw = raws[k]
    if not raw then
      gone[#gone + 1] = cid
    else
      local d = deadline(rec_read(raw))
      if d ~= tonumber(first[2 * k]) then
        fixed[#fixed + 1] = fmt(d)
        fixed[#fixed + 1] = cid
      end
    end
  end
  if #fixed == 0 and #gone == 0 then
    return { 1, first }
  end
  write_index(fixed, gone)
  fixes = fixes + #fixed / 2 + #gone
  if fixes >= RESOLVE then
    return { 0 }
  end
end
