-- activity: record activity on a live conversation.
-- needs: record

-- Record activity at `now`: last moves forward only; a warning stands until the deadline
-- leaves the warning window. Writes the record and its warning time, and its deadline in D
-- when `index` (a start must: its ttl may have shortened the deadline; a touch only moves it
-- later, and D may keep an earlier one: see due); returns the record as written.
local function activity(cid, r, now, extend, index)
  if extend and now > r.l then
    r.l = now
  end
  local d = deadline(r)
  if r.w > 0 then
    if r.f % 2 == WARNED then
      if d - r.w > now then
        r.f = r.f - WARNED
        redis.call('ZADD', W, fmt(d - r.w), cid)
      end
    else
      redis.call('ZADD', W, fmt(d - r.w), cid)
    end
  end
  local rec = rec_fixed(r) .. r.m
  redis.call('HSET', C, cid, rec)
  if index then
    redis.call('ZADD', D, fmt(d), cid)
  end
  return rec
end
