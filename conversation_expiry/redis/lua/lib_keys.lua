-- keys: the namespace's keys and the number format. Every script starts with this part, then
-- the parts it names on its "-- needs:" line (Redis has no include; _scripts.py assembles).
--
-- KEYS, in this order, all under one hash tag so a Cluster keeps them in one slot. The request
-- path's scripts (read, count, hold) are given only the first three, all they use, and touch
-- only the first two:
--   C  hash   id -> live record (see record); and the field '\255', the time mark (see clock)
--   W  zset   id -> warning time, for conversations with a warning window not yet warned
--   D  zset   id -> deadline index (microseconds): what is due, the live count, eviction order;
--             a touch leaves it behind the deadline, those who read it put it right (see due)
--   M  hash   inc (incarnation counter), late, takeovers
--   K  hash   incarnation -> claimed record (claim header, id, live record)
--   L  zset   incarnation -> lease deadline of its claim
--   X  hash   incarnation -> claimed record, for the dead-lettered
--   S  stream departures of held conversations, read by the processes holding cleanups
--   T  zset   "incarnation:owner" -> time a claim was taken from that owner (late acks)
--   R  string the reply of one request, for a retried request (only scripts that use it)
-- ARGV[1] is the time in microseconds ('' = the server's TIME), AT below (touch, which sends
-- as few arguments as it can, has it elsewhere). The request path's scripts take their own
-- arguments from ARGV[2]; the others get this process's owner and lease as ARGV[2] and [3]
-- (see claims) and theirs from ARGV[4]. Each script's header says which.
--
-- Times are integral microseconds: Lua numbers are doubles, exact below 2^53 (year 2255), so
-- deadline arithmetic is exact. Numbers are passed to redis as '%.17g' strings because redis
-- would turn a Lua number into '%.14g' text and drop the low digits.

local C, W, D, M, K, L, X, S, T, R =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local AT = ARGV[1]

local function fmt(x)
  return string.format('%.17g', x)
end
