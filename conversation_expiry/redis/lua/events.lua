-- events: departures of held conversations published after a cursor.
-- ARGV[4] cursor ('' = none yet: just return the stream's last id), [5] count.
-- Reply: {last id, trimmed past the cursor 0/1, {id, {field, value, ...}}, ...}.

local cursor = ARGV[4]
if redis.call('EXISTS', S) == 0 then
  return { cursor == '' and '0-0' or cursor, 0, {} }
end
local info = redis.call('XINFO', 'STREAM', S)
local last, deleted = '0-0', '0-0'
for n = 1, #info, 2 do
  if info[n] == 'last-generated-id' then
    last = info[n + 1]
  elseif info[n] == 'max-deleted-entry-id' then
    deleted = info[n + 1]
  end
end
if cursor == '' then
  return { last, 0, {} }
end
local function before(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local trimmed = 0
if before(cursor, deleted) then
  trimmed = 1
end
local entries = redis.call('XRANGE', S, '(' .. cursor, '+', 'COUNT', tonumber(ARGV[5]))
return { last, trimmed, entries }
