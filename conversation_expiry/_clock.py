"""Clocks: where the manager reads time.

Expiry decisions use :meth:`Clock.monotonic`; reported timestamps are that reading plus
:meth:`Clock.wall_offset` (POSIX seconds, UTC). Keeping the two apart is what lets a wall-clock
step leave deadlines alone. The default clock is ``_system_clock.SystemClock``; the bounds and
checks of a reading are ``_readings``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable

from . import _fork, _frozen
from ._readings import (
    _REAL,
    LIMIT,
    PERF_COUNTER,
    SLACK,
    WALL_HI,
    WALL_LO,
    WallOffset,
    checked_reading,
)
from ._system_clock import SystemClock
from ._validation import WALL_HORIZON, to_seconds

__all__ = [
    "LIMIT", "PERF_COUNTER", "SLACK", "WALL_HI", "WALL_LO", "_REAL", "Clock", "ManualClock",
    "SystemClock", "WallOffset", "checked_reading", "is_stock", "reader",
]


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


def is_stock(clock: Clock) -> bool:
    """Whether ``clock`` is a stock clock, whose readings are always finite floats.

    A store may take their readings as they are (~25-40 ns less a call on the request path); any
    other clock's, a subclass of a stock one included, need :func:`checked_reading`.
    """
    return type(clock) in (SystemClock, ManualClock)


class ManualClock:
    """A clock that moves only when told to, for tests.

    ``start`` is the wall-clock reading it begins at (timezone-aware; default: now). It never
    reads later than ``WALL_HORIZON`` (9899-01-01 UTC), so that a deadline up to 100
    years ahead of any reading is still a ``datetime``: an advance beyond is refused.
    """

    __slots__ = ("__weakref__", "_elapsed", "_limit", "_lock", "_start")

    _start: WallOffset

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime.now(timezone.utc)
        elif not isinstance(start, datetime):
            raise TypeError(f"start must be a timezone-aware datetime, got {type(start).__name__}")
        elif start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware, got naive {start!r}")
        if start > WALL_HORIZON:
            raise ValueError(
                f"start must be at most {WALL_HORIZON.isoformat()} (100 years before the latest "
                f"datetime, so deadlines stay representable), got {start!r}"
            )
        self._start = WallOffset(start, 0.0)
        self._limit = (WALL_HORIZON - start).total_seconds()  # how far it may advance in all
        self._elapsed = 0.0
        self._lock = threading.Lock()
        _fork.renew_after_fork(self, _lock=threading.Lock)

    def advance(self, amount: float | timedelta) -> None:
        """Move the clock forward by ``amount`` seconds (or a timedelta); never backward.

        Refused (ValueError, the clock unchanged) past ``WALL_HORIZON``.
        """
        seconds = to_seconds("amount", amount, allow_zero=True, bounded=False)
        with self._lock:
            elapsed = self._elapsed + seconds
            if elapsed > self._limit:
                raise ValueError(
                    f"amount must not move the clock past {WALL_HORIZON.isoformat()} (deadlines "
                    f"100 years ahead must stay representable); it reads {self.now().isoformat()}"
                    f", got {amount!r:.80}"
                )
            self._elapsed = elapsed

    def monotonic(self) -> float:
        return self._elapsed

    def wall_offset(self) -> float:
        return self._start

    def reading(self) -> tuple[float, float]:
        return self._elapsed, self._start

    def now(self) -> datetime:
        """The clock's wall-clock reading."""
        return self._start.base + timedelta(seconds=self._elapsed)

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now().isoformat()})"


_frozen.install()  # freezegun imported before this library: see its freezes start
