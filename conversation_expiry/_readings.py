"""Readings: what a clock's reading may be, and how a store takes one.

A reading is ``(monotonic seconds, wall offset)``; the offset added to it gives POSIX seconds
(UTC). Apart from the clocks (``_clock``, ``_system_clock``) because the stores check readings
against these bounds too, whatever clock gave them.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from datetime import datetime, timezone

from ._errors import ClockError
from ._validation import WALL_HORIZON

__all__ = [
    "FROZEN_HI", "FROZEN_LO", "LIMIT", "PERF_COUNTER", "SLACK", "TEXT", "WALL_HI", "WALL_LO",
    "WallOffset", "checked_reading",
]

# freezegun replaces every module attribute that *is* a real time function, so the real ones are
# kept where it does not look: a tuple, and default arguments.
_REAL: tuple[Callable[[], float], Callable[[], float]] = (_time.monotonic, _time.time)
# For durations (a sweep's, a batch's time slice): real elapsed time even inside a freeze.
PERF_COUNTER: tuple[Callable[[], float]] = (_time.perf_counter,)

LIMIT = 1e12  # seconds (an offset): far beyond any date a datetime can show
# Deadlines are decided to the microsecond, the resolution of the datetimes a state shows (and
# of the Redis store's integer time): a reading is past a deadline only when it is later by
# more than half a microsecond. Sums of float readings and TTLs err by far less (0.7 + 0.1 is
# just under 0.8), and would otherwise expire a conversation at the microsecond its
# ``expires_at`` shows.
SLACK = 5e-7
TEXT = (str, bytes, bytearray, memoryview)
# POSIX seconds a reading plus its offset may stand for: a time whose datetimes exist, and
# whose deadline too (a reading past them would fail every later call that shows a time, and
# hold the store's time there: it never goes back).
_WALL_FIRST = datetime(1, 1, 2, tzinfo=timezone.utc)
WALL_LO = _WALL_FIRST.timestamp()
WALL_HI = WALL_HORIZON.timestamp()
# The same bounds for freezegun's times, which are naive UTC.
FROZEN_LO = _WALL_FIRST.replace(tzinfo=None)
FROZEN_HI = WALL_HORIZON.replace(tzinfo=None)


def checked_reading(now: object, offset: object) -> tuple[float, float]:
    """``(now, offset)`` as finite floats, or :class:`ClockError` naming the reading.

    For readings that failed a store's fast test (a float and an offset of a float class,
    finite; see ``MemoryStore._checked``), and a patched ``time.monotonic``'s.
    """
    try:
        if isinstance(now, TEXT) or isinstance(offset, TEXT):
            raise TypeError  # float() would parse it: text is not a reading
        value = float(now)  # type: ignore[arg-type]
        off = float(offset)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ClockError(f"the clock gave a reading that is not a number: {now!r:.60}") from None
    if isinstance(now, bool) or not abs(off) < LIMIT or not WALL_LO < value + off < WALL_HI:
        raise ClockError(
            f"the clock returned a reading that is not finite, or not a time between the years "
            f"1 and 9899: {now!r:.80}, offset {offset!r:.80}"
        )
    return value, off


class WallOffset(float):
    """A wall offset that also knows the exact datetime it maps a reading to.

    Far from 1970 a float of POSIX seconds has too few bits for microseconds (one step is about
    4 us in the year 3000), so clocks that know an exact anchor hand it along and timestamps are
    computed from it: ``base + (reading - mono)``.
    """

    __slots__ = ("base", "mono")

    base: datetime
    mono: float

    def __new__(cls, base: datetime, mono: float) -> WallOffset:
        self = super().__new__(cls, base.timestamp() - mono)
        self.base = base.astimezone(timezone.utc)
        self.mono = mono
        return self

    def __reduce__(self) -> tuple[object, ...]:
        return (WallOffset, (self.base, self.mono))
