"""Clocks: where the manager reads time.

Expiry decisions use :meth:`Clock.monotonic`; reported timestamps are that reading plus
:meth:`Clock.wall_offset` (POSIX seconds, UTC). Keeping the two apart is what lets a wall-clock
step leave deadlines alone.
"""

from __future__ import annotations

import calendar
import sys
import threading
import time as _time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Protocol, runtime_checkable

from ._validation import to_seconds

__all__ = ["Clock", "ManualClock", "SystemClock", "reader"]

# freezegun replaces every module attribute that *is* a real time function, so the real ones are
# kept where it does not look: a tuple, and default arguments.
_REAL: tuple[Callable[[], float], Callable[[], float]] = (_time.monotonic, _time.time)

# How often SystemClock re-reads the wall/monotonic offset, and how far it must move to be taken.
_OFFSET_RECHECK = 0.5
_OFFSET_STEP = 1e-3


@runtime_checkable
class Clock(Protocol):
    """What the manager needs from a clock."""

    def monotonic(self) -> float:
        """Seconds on a clock that never steps; only differences matter."""
        ...

    def wall_offset(self) -> float:
        """Seconds to add to a :meth:`monotonic` reading to get POSIX time (UTC)."""
        ...


def reader(clock: Clock) -> Callable[[], tuple[float, float]]:
    """``clock.reading`` if it has one, else a function combining its two readings."""
    fused = getattr(clock, "reading", None)
    if callable(fused):
        return fused  # type: ignore[no-any-return]
    monotonic, wall_offset = clock.monotonic, clock.wall_offset
    return lambda: (monotonic(), wall_offset())


def _frozen_seconds() -> float | None:
    """The time freezegun is freezing, as its own fakes compute it, or None when none is active.

    freezegun gives real time to callers it finds under ``threading`` in the first few frames, so
    the cleanup thread and the test would read different clocks. Asking its factory directly gives
    every thread the test's time.
    """
    api = sys.modules.get("freezegun.api")
    if api is None or not getattr(api, "freeze_factories", None):
        return None
    try:
        frozen = api.get_current_time()
    except (IndexError, AttributeError):  # the freeze ended while we looked
        return None
    return float(calendar.timegm(frozen.timetuple()) + frozen.microsecond / 1_000_000)


class SystemClock:
    """The default clock: ``time.monotonic`` for deadlines, the wall clock for timestamps.

    Under ``freezegun`` every thread sees the frozen time, and any other patch of ``time`` is
    honoured, so tests that move time by patching keep working.
    """

    __slots__ = ("_lock", "_offset", "_recheck_at")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = self._measure_offset()
        self._recheck_at = _REAL[0]() + _OFFSET_RECHECK

    def monotonic(self, _real: Callable[[], float] = _REAL[0], _t: ModuleType = _time) -> float:
        fn: Callable[[], float] = _t.monotonic
        if fn is _real:
            return fn()
        frozen = _frozen_seconds()
        return fn() if frozen is None else frozen

    def wall_offset(
        self,
        _real_m: Callable[[], float] = _REAL[0],
        _real_t: Callable[[], float] = _REAL[1],
        _t: ModuleType = _time,
    ) -> float:
        if _t.monotonic is not _real_m or _t.time is not _real_t:
            if _frozen_seconds() is not None:
                return 0.0  # freezegun's monotonic is its frozen wall time
            return float(_t.time() - _t.monotonic())
        now = _REAL[0]()
        if now < self._recheck_at:
            return self._offset
        return self._refresh(now)

    def reading(
        self,
        _real_m: Callable[[], float] = _REAL[0],
        _real_t: Callable[[], float] = _REAL[1],
        _t: ModuleType = _time,
    ) -> tuple[float, float]:
        """``(monotonic(), wall_offset())`` in one call: update_activity's budget is ~1 us."""
        if _t.monotonic is _real_m and _t.time is _real_t:
            now = _real_m()
            if now < self._recheck_at:
                return now, self._offset
            return now, self._refresh(now)
        return self.monotonic(), self.wall_offset()

    def _refresh(self, now: float) -> float:
        # A cached offset keeps two snapshots of one conversation equal; it moves only when the
        # wall clock really stepped (or slewed) by more than _OFFSET_STEP.
        with self._lock:
            measured = self._measure_offset()
            if abs(measured - self._offset) > _OFFSET_STEP:
                self._offset = measured
            self._recheck_at = now + _OFFSET_RECHECK
            return self._offset

    @staticmethod
    def _measure_offset() -> float:
        mono, wall = _REAL
        best = None
        for _ in range(3):  # a thread switch between the reads would skew one sample
            before = mono()
            w = wall()
            after = mono()
            if best is None or after - before < best[0]:
                best = (after - before, w - (before + after) / 2)
        assert best is not None
        return best[1]

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to, for tests.

    ``start`` is the wall-clock reading it begins at (timezone-aware; default: now).
    """

    __slots__ = ("_elapsed", "_lock", "_start")

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime.now(timezone.utc)
        elif not isinstance(start, datetime):
            raise TypeError(f"start must be a timezone-aware datetime, got {type(start).__name__}")
        elif start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware, got naive {start!r}")
        self._start = start.timestamp()
        self._elapsed = 0.0
        self._lock = threading.Lock()

    def advance(self, amount: float | timedelta) -> None:
        """Move the clock forward by ``amount`` seconds (or a timedelta); never backward."""
        seconds = to_seconds("amount", amount, allow_zero=True)
        with self._lock:
            self._elapsed += seconds

    def monotonic(self) -> float:
        return self._elapsed

    def wall_offset(self) -> float:
        return self._start

    def reading(self) -> tuple[float, float]:
        return self._elapsed, self._start

    def now(self) -> datetime:
        """The clock's wall-clock reading."""
        return datetime.fromtimestamp(self._start + self._elapsed, timezone.utc)

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now().isoformat()})"

