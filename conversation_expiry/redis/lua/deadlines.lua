-- deadlines: the next n deadlines of live conversations. ARGV[4] n.
-- Reply: {id, deadline, ...}.

local now = fmt((now_ro()))
return redis.call('ZRANGE', D, now, '+inf', 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[4]), 'WITHSCORES')
