-- count: live conversations (deadline not passed), O(log n).
return redis.call('ZCOUNT', D, fmt(now_ro()), '+inf')
