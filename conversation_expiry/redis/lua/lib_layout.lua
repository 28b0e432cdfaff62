-- layout: the live record's layout.
--
-- A live record: flags, created, last activity, ttl (7-byte integers: microseconds up to the
-- year 3111), incarnation (6 bytes); then max_age and warning_before (7 bytes each) when set;
-- then the metadata JSON text (empty: none). 28 bytes without the options: with the 3-byte
-- header of a Redis string that is a 32-byte allocation, which is why it is packed this tight.

local REC = '<BI7I7I7I6'
local OPT = '<I7'
local WARNED, HELD, HAS_MAX_AGE, HAS_WARNING = 1, 2, 4, 8
