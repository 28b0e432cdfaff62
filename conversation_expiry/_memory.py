"""The default store: conversations in this process's memory, behind a readerwriterlock lock.

The bookkeeping is :class:`~conversation_expiry._book.Book` (sweeps: ``_sweeps.Ledger``); this
class adds the lock (``_rwlock``), the store's time and the protocol. ``get`` and ``is_live``
are the request path, so they are written out here in full (the reference versions are
``Book._get`` and ``Book._is_live``; ``tests/memory/test_memory_buckets.py`` checks that both
give the same states and the same layout, and ``tests/stores/test_store_contract.py`` runs both
paths). ``touch`` is the reference of the manager's ``update_activity`` on this store, which
writes it out with the manager's checks and reads a ``SystemClock`` inline (``_fused_update``).

Time is the manager's clock, read *before* the lock is taken (a clock that stalls its caller
must not stall everyone) and checked under it against the latest reading the store acted on: an
older reading is replaced by that one, so no decision is ever made on time the store has already
seen pass (a thread preempted after reading the clock cannot revive what another thread saw
expire). A reading that is not a finite number fails that call alone, before anything changes.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from ._clock import (
    LIMIT,
    SLACK,
    WALL_HI,
    WALL_LO,
    Clock,
    SystemClock,
    WallOffset,
    checked_reading,
    is_stock,
    reader,
)
from ._rwlock import RWGuard
from ._state import ConversationState, ExpiryReason, snapshot
from ._store import Departures, Policy, Sweep
from ._sweeps import Ledger

__all__ = ["MemoryStore"]

_INF = math.inf
_FLOATS = (float, WallOffset)  # offsets whose class says they are numbers
_COUNT_STEP = 4096  # entries a count reviews per queue under the lock: about 1 ms


class MemoryStore(Ledger):
    """Conversations in a dict guarded by a ``readerwriterlock`` lock; the manager's default."""

    shared = False

    def __init__(self) -> None:
        super().__init__()
        self._guard = RWGuard()
        self._counting = threading.Lock()
        self._floor = -_INF
        self._bound = False
        self._reading: Any = None
        self._stock = False
        self._system: SystemClock | None = None  # the clock, when it may be read inline
        # The last item of the request path's snapshots (``_state``'s layout), for the offset
        # of the latest: (TTL, active, not warned, offset, no metadata).
        self._rest: tuple[Any, ...] = (None, True, False, None, None)

    def bind(self, policy: Policy, clock: Clock) -> None:
        if self._bound:
            raise RuntimeError("this store is already bound to a manager; give each its own")
        self._bound = True
        self.configure(policy)
        self._reading = reader(clock)
        self._stock = is_stock(clock)
        self._system = clock if type(clock) is SystemClock else None

    def register(
        self, cid: str, ttl: float | None, metadata: str | None
    ) -> tuple[ConversationState, Departures]:
        reading = self._reading()
        with self._guard.writing:
            now, offset = self._checked(reading)
            removed = Departures([], [], {}, now)
            state, _fresh = self._start_or_touch(cid, now, offset, ttl, True, removed, metadata)
        return state, removed

    def ensure(self, cid: str, extend: bool) -> tuple[ConversationState, bool, Departures]:
        reading = self._reading()
        with self._guard.writing:
            now, offset = self._checked(reading)
            removed = Departures([], [], {}, now)
            state, fresh = self._start_or_touch(cid, now, offset, None, extend, removed)
        return state, fresh, removed

    def _checked(self, reading: tuple[float, float]) -> tuple[float, float]:
        """This call's store time, under the lock: never older than one already acted on.

        A reading older than the floor was read before the lock by a thread preempted since:
        the floor stands for it. Only a stock clock's reading is known to be a finite float.
        """
        now, offset = reading
        if not self._stock and not (
            now.__class__ is float
            and offset.__class__ in _FLOATS
            and -LIMIT < offset < LIMIT
            and WALL_LO < now + offset < WALL_HI
        ):
            now, offset = checked_reading(now, offset)
        if self._floor <= now:
            self._floor = now
            return now, offset
        return self._floor, offset

    def touch(self, cid: str, extend: bool) -> ConversationState:
        # The manager's update_activity is this, written out with its checks, whenever it can
        # be (``_fused_update``): this is the reference, for the traced path and subclasses.
        reading = self._reading()
        with self._guard.writing:
            now, offset = self._checked(reading)
            created, last, ttl = self._live(cid, now)
            if extend:
                last = self._activity(cid, created, ttl, ttl, now)
            return self._state(cid, created, last, ttl, offset)

    def get(self, cid: str) -> ConversationState | None:
        reading = self._reading()
        lock = self._guard.write
        if not lock.acquire(False):
            self._guard.wait_write()
        try:
            now, offset = self._checked(reading)
            if not self._plain or self._ttl_of or self._meta:
                return self._get(cid, now, offset)
            # The request path's plain case, inlined from Book._get.
            v = self._last.get(cid)
            if v is None:
                return None
            ttl = self._ttl
            last = v.real
            if now > last + ttl and now > last + ttl + SLACK:
                return None
            rest = self._rest
            if rest[3] is not offset:
                rest = self._rest = (ttl, True, False, offset, None)
            return snapshot((cid, v, rest))
        finally:
            lock.release()

    def is_live(self, cid: str) -> bool:
        reading = self._reading()
        lock = self._guard.write
        if not lock.acquire(False):
            self._guard.wait_write()
        try:
            now = self._checked(reading)[0]
            if self._plain and not self._ttl_of:  # is_expired's plain case, from Book._is_live
                v = self._last.get(cid)
                if v is None:
                    return False
                due = v.real + self._ttl
                return now <= due or now <= due + SLACK
            return self._is_live(cid, now)
        finally:
            lock.release()

    def count(self) -> int:
        """Live conversations; the walk of those fallen due since the last count is done in
        steps, with other threads let in between (it reads each of them once)."""
        reading = self._reading()
        with self._counting:  # one count walks at a time, each at its own reading
            now: float | None = None
            while True:
                with self._guard.writing:
                    if now is None:
                        now = self._checked(reading)[0]
                    n, done = self._count(now, _COUNT_STEP)
                if done:
                    return n
                self._guard.let_in()

    def hold(self, cid: str) -> int:
        reading = self._reading()
        with self._guard.writing:
            return self._hold(cid, self._checked(reading)[0])

    def end(self, cid: str) -> Departures:
        reading = self._reading()
        with self._guard.writing:
            now, offset = self._checked(reading)
            removed = Departures([], [], {}, now)
            self._end(cid, now, offset, removed)
        return removed

    def claim(self, limit: int) -> Sweep:
        self._guard.let_in()  # request threads blocked on the lock go before this batch
        reading = self._reading()
        handle = self._guard.acquire_sweep()
        try:
            now, offset = self._checked(reading)
            removed, warned, more = self._collect(now, offset, limit)
            due = self._next_warning_in(now) if self._warn is not None else None
        finally:
            handle.release()
        return Sweep(removed, warned, more, due)

    def ack(self, departures: Departures) -> None:
        """Nothing to do: a claim of this store is final at once."""

    def drain(self, limit: int) -> Departures:
        reading = self._reading()
        handle = self._guard.acquire_sweep()
        try:
            now, offset = self._checked(reading)
            return self._drain(now, offset, limit)
        finally:
            handle.release()

    def left_elsewhere(self) -> list[tuple[str, int, ExpiryReason]]:
        return []  # every departure is returned to the call that caused it

    def close(self) -> None:
        """Nothing to release."""

    def before_fork(self, timeout: float) -> Any:
        """Hold the lock across fork() so the child never sees a half-made change."""
        return self._guard.try_acquire_write(timeout)

    def reinit_after_fork(self) -> None:
        """Fresh locks in a forked child (the data is kept)."""
        self._guard.reinit()
        self._counting = threading.Lock()
