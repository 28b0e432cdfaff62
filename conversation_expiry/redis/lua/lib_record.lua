-- record: a live record as a table, and its deadline.
-- needs: layout

local function bit_set(flags, bit)
  return math.floor(flags / bit) % 2 == 1
end

-- A record as a table; `f` keeps only the WARNED and HELD bits (the others are recomputed).
local function rec_read(s)
  local f, c, l, t, i, pos = struct.unpack(REC, s)
  local a, w = 0, 0
  if bit_set(f, HAS_MAX_AGE) then
    a, pos = struct.unpack(OPT, s, pos)
  end
  if bit_set(f, HAS_WARNING) then
    w, pos = struct.unpack(OPT, s, pos)
  end
  return { c = c, l = l, t = t, a = a, w = w, i = i, f = f % 4, m = string.sub(s, pos) }
end

-- The record without its metadata (append r.m for the whole record).
local function rec_fixed(r)
  local f, opt = r.f, ''
  if r.a > 0 then
    f = f + HAS_MAX_AGE
    opt = struct.pack(OPT, r.a)
  end
  if r.w > 0 then
    f = f + HAS_WARNING
    opt = opt .. struct.pack(OPT, r.w)
  end
  return struct.pack(REC, f, r.c, r.l, r.t, r.i) .. opt
end

local function deadline(r)
  local d = r.l + r.t
  if r.a > 0 and r.c + r.a < d then
    d = r.c + r.a
  end
  return d
end

