"""Clocks: where the manager reads time.

Expiry decisions use :meth:`Clock.monotonic`; reported timestamps are that reading plus
:meth:`Clock.wall_offset` (POSIX seconds, UTC). Keeping the two apart is what lets a wall-clock
step leave deadlines alone.
"""

from __future__ import annotations

import math
import threading
import time as _time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Protocol, runtime_checkable

from . import _fork, _frozen
from ._errors import ClockError
from ._frozen import Anchor, Chain
from ._validation import WALL_HORIZON, to_seconds

__all__ = [
    "LIMIT", "SLACK", "WALL_HI", "WALL_LO", "Clock", "ManualClock", "SystemClock", "WallOffset",
    "checked_reading", "is_stock", "reader",
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
_TEXT = (str, bytes, bytearray, memoryview)
# POSIX seconds a reading plus its offset may stand for: a time whose datetimes exist, and
# whose deadline too (a reading past them would fail every later call that shows a time, and
# hold the store's time there: it never goes back).
_WALL_FIRST = datetime(1, 1, 2, tzinfo=timezone.utc)
WALL_LO = _WALL_FIRST.timestamp()
WALL_HI = WALL_HORIZON.timestamp()
# The same bounds for freezegun's times, which are naive UTC.
_FROZEN_LO = _WALL_FIRST.replace(tzinfo=None)
_FROZEN_HI = WALL_HORIZON.replace(tzinfo=None)

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


def is_stock(clock: Clock) -> bool:
    """Whether ``clock`` is a stock clock, whose readings are always finite floats.

    A store may take their readings as they are (~25-40 ns less a call on the request path); any
    other clock's, a subclass of a stock one included, need :func:`checked_reading`.
    """
    return type(clock) in (SystemClock, ManualClock)


def checked_reading(now: object, offset: object) -> tuple[float, float]:
    """``(now, offset)`` as finite floats, or :class:`ClockError` naming the reading.

    For readings that failed a store's fast test (a float and an offset of a float class,
    finite; see ``MemoryStore._checked``), and a patched ``time.monotonic``'s.
    """
    try:
        if isinstance(now, _TEXT) or isinstance(offset, _TEXT):
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


class _Freeze:
    """How readings continue through one freezegun freeze: ``mono`` at ``moment``, onwards."""

    __slots__ = ("anchor", "factory", "last", "moment", "mono", "offset")

    def __init__(
        self, factory: object, moment: datetime, mono: float, anchor: Anchor | None
    ) -> None:
        self.factory = factory
        self.anchor = anchor  # the freeze's record this mapping follows (None: not recorded)
        self.moment = moment
        self.mono = mono
        self.last = mono
        self.offset = WallOffset(moment.replace(tzinfo=timezone.utc), mono)


class SystemClock:
    """The default clock: ``time.monotonic`` for deadlines, the wall clock for timestamps.

    Under ``freezegun`` every thread sees the frozen time. A freeze continues the clock from
    where it stood when the freeze started (moving as the frozen time moves, also by ticks made
    before the clock's first reading in it: see ``_frozen``), and the clock never runs
    backwards after it, so entering or leaving a freeze neither expires nor revives anything;
    timestamps are the frozen time. Any other patch of ``time.monotonic`` / ``time.time`` is
    honoured as it is.
    """

    __slots__ = (
        "__weakref__", "_chain", "_chain_at", "_drift", "_freeze", "_lock", "_offset",
        "_recheck_at",
    )

    _chain_at: float
    _drift: float
    _offset: float
    _recheck_at: float

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drift = 0.0  # added to time.monotonic() once a freeze ran the clock ahead
        self._freeze: _Freeze | None = None
        self._chain: Chain | None = None  # the freezes this clock is in, and where it stood
        self._chain_at = 0.0  # when they started
        self._offset = self._measure_offset()
        self._recheck_at = _REAL[0]() + _OFFSET_RECHECK
        _frozen.install()
        _fork.renew_after_fork(self, _lock=threading.Lock)

    def monotonic(self, _real: Callable[[], float] = _REAL[0], _t: ModuleType = _time) -> float:
        if _t.monotonic is _real and self._freeze is None:
            now: float = _real() + self._drift
            return now
        return self.reading()[0]

    def wall_offset(self) -> float:
        return self.reading()[1]

    def reading(
        self,
        _real_m: Callable[[], float] = _REAL[0],
        _real_t: Callable[[], float] = _REAL[1],
        _t: ModuleType = _time,
    ) -> tuple[float, float]:
        """``(monotonic(), wall_offset())`` in one call: update_activity's budget is ~1 us.

        ``MemoryStore``'s request path copies the first branch
        (tests/stores/test_store_system_clock.py).
        """
        if _t.monotonic is _real_m and _t.time is _real_t and self._freeze is None:
            now = _real_m() + self._drift
            if now < self._recheck_at:
                return now, self._offset
            return now, self._refresh(now)
        return self._slow_reading()

    def _slow_reading(self) -> tuple[float, float]:
        _frozen.install()
        frozen = _frozen.frozen_now()
        with self._lock:
            if frozen is not None:
                return self._frozen_reading(*frozen)
            if self._freeze is not None:
                self._thaw()
        if _time.monotonic is _REAL[0] and _time.time is _REAL[1]:
            return self.reading()
        try:
            mono: object = _time.monotonic()  # patched by someone else: honour it
            wall: object = _time.time()
        except Exception:
            # freezegun's patches raise IndexError on other threads while its stop() runs
            # (between its pops of freeze_factories and ignore_lists): that freeze is ending,
            # and the real clock is what comes next. The store's floor keeps time monotonic.
            return _REAL[0]() + self._drift, self._offset
        try:
            if isinstance(wall, _TEXT):
                raise TypeError
            offset = float(wall) - float(mono)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            offset = math.nan  # (checked_reading names the reading)
        return checked_reading(mono, offset)

    def _frozen_reading(self, factory: object, moment: datetime) -> tuple[float, float]:
        f = self._freeze
        anchor = _frozen.anchor_of(factory)
        if f is None or f.factory is not factory or f.anchor is not anchor:
            f = self._freeze = self._enter(factory, moment, anchor, f)
        if not _FROZEN_LO < moment <= _FROZEN_HI:
            raise ClockError(
                f"freezegun froze time at {moment.isoformat()}, not a time between the years 1 "
                "and 9899 (deadlines up to 100 years ahead must stay datetimes)"
            )
        mono = f.mono + (moment - f.moment).total_seconds()
        if mono < f.last:  # the freeze moved back before the last reading: go on from there
            f = self._freeze = _Freeze(factory, moment, f.last, anchor)
            return f.last, f.offset
        f.last = mono
        return mono, f.offset

    def _enter(
        self, factory: object, moment: datetime, anchor: Anchor | None, prev: _Freeze | None
    ) -> _Freeze:
        """Start following a freeze (a new one, or an outer one resumed); never backwards."""
        if anchor is None:  # not seen starting: continue from here, at its time now
            here = _REAL[0]() + self._drift if prev is None else prev.last
            return _Freeze(factory, moment, here, None)
        if self._chain is not anchor.chain:
            # Where the clock stood when the outermost freeze started, not at this reading.
            self._chain = anchor.chain
            self._chain_at = anchor.chain.real + self._drift
            if prev is not None:
                self._chain_at = max(self._chain_at, prev.last)
        mono = self._chain_at + anchor.gain
        if prev is not None:
            mono = max(mono, prev.last)
            if anchor.ended is not None and anchor.ended[0] is prev.factory:
                # Resuming after a freeze this clock followed: from its own reading of it.
                ran = (anchor.ended[1] - prev.moment).total_seconds()
                mono = max(mono, prev.mono + ran)
        return _Freeze(factory, anchor.moment, mono, anchor)

    def _thaw(self) -> None:
        assert self._freeze is not None
        f = self._freeze
        end = f.last
        done = _frozen.finished()
        if done is not None:  # ticks after the last reading count
            chain, gain, factory, moment = done
            if factory is f.factory:  # the freeze it followed, as it followed it (moves back)
                end = max(end, f.mono + (moment - f.moment).total_seconds())
            elif chain is self._chain:
                end = max(end, self._chain_at + gain)
        behind = end - (_REAL[0]() + self._drift)
        if behind > 0:
            self._drift += behind  # the freeze ran ahead of real time: carry on from there
        self._freeze = None
        self._chain = None
        self._offset = self._measure_offset() - self._drift
        self._recheck_at = _REAL[0]() + self._drift + _OFFSET_RECHECK

    def _refresh(self, now: float) -> float:
        # A cached offset keeps two snapshots of one conversation equal; it moves only when the
        # wall clock really stepped (or slewed) by more than _OFFSET_STEP.
        _frozen.install()  # if freezegun was imported since: see its freezes start
        with self._lock:
            measured = self._measure_offset() - self._drift
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
