"""The default clock: ``time.monotonic`` for deadlines, the wall clock for timestamps.

Most of it is ``freezegun``: a freeze continues the clock from where it stood, and leaving one
never runs it backwards (the freezes are recorded by ``_frozen``).
"""

from __future__ import annotations

import math
import threading
import time as _time
from collections.abc import Callable
from datetime import datetime, timezone
from types import ModuleType

from . import _fork, _frozen
from ._errors import ClockError
from ._frozen import Anchor, Chain
from ._readings import _REAL, FROZEN_HI, FROZEN_LO, TEXT, WallOffset, checked_reading

__all__ = ["SystemClock"]

# How often SystemClock re-reads the wall/monotonic offset, and how far it must move to be taken.
_OFFSET_RECHECK = 0.5
_OFFSET_STEP = 1e-3


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
            if isinstance(wall, TEXT):
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
        if not FROZEN_LO < moment <= FROZEN_HI:
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
