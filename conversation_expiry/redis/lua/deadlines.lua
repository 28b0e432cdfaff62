-- deadlines: the next n deadlines of live conversations. ARGV[4] n.
-- Reply: {id, deadline, ...}.
-- needs: clock

local now = fmt((clock()))
return redis.call('ZRANGE', D, now, '+inf', 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[4]), 'WITHSCORES')
