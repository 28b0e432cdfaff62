"""The conversation map's lock: ``readerwriterlock.RWLockRead`` plus a turnstile for the sweep.

Measured on the CI machine kind (benchmarks/locks.py): the write side of ``RWLockRead`` is
0.18 us against 0.67 us for ``RWLockFair`` and 1.1 us for ``RWLockWrite``. Every
``update_activity`` is a write, and its budget is about 1 us, so only the reader-preferring class
fits. Its known defect, readers that keep overlapping starve a writer, matters for the sweep, the
one writer that holds the lock for a batch; so a sweep that finds the lock busy raises a flag and
holds a turnstile that new readers pass through, and it gets in as soon as the current readers
leave. Readers pay one attribute check for that.

``readerwriterlock`` handles record whether they hold the lock, so a handle must not be shared by
threads that may hold it at once: readers get one per thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from readerwriterlock import rwlock

__all__ = ["RWGuard"]

_LET_IN_FOR = 0.002  # seconds a sweep waits at most, between batches, for blocked threads
_LET_IN_STEP = 0.00005


class RWGuard:
    """Reader-preferring RW lock whose sweep cannot be starved by readers."""

    __slots__ = ("_local", "_rw", "_turnstile", "sweep_waiting", "waiting", "write", "writing")

    def __init__(self) -> None:
        self._setup()

    def _setup(self) -> None:
        self._rw = rwlock.RWLockRead()
        # The write side of RWLockRead is exactly its resource lock; its handle only adds
        # bookkeeping that costs a fifth of update_activity. Used as ``with guard.write:``.
        self.write = self._rw.c_resource
        # One entry per thread blocked on the write side now (append and pop are atomic): the
        # sweep lets them in before its next batch.
        self.waiting: deque[None] = deque()
        self.writing = _Writing(self)
        self._local = threading.local()
        self._turnstile = threading.Lock()
        self.sweep_waiting = False

    def acquire_write(self) -> None:
        """Take the write side, counted in ``waiting`` if it must wait (release with
        ``write.release()``)."""
        if not self.write.acquire(False):
            self.wait_write()

    def wait_write(self) -> None:
        """Block for the write side, found taken, counted in ``waiting`` meanwhile."""
        self.waiting.append(None)
        try:
            self.write.acquire()
        finally:
            self.waiting.pop()

    def let_in(self) -> None:
        """Wait (at most ``_LET_IN_FOR``) until the threads blocked on the write side took it.

        For a caller that just released it and would lock again at once (a sweep between
        batches, a count between steps): a lock does not queue its waiters, and a thread
        woken by the release takes longer to run than the releaser takes to lock again.
        Without this, request threads waited 15-60 ms now and then during a sweep of 10M.
        Threads that only wait for the GIL need nothing: CPython hands it over every 5 ms
        (the switch interval), as long as nothing keeps taking it back sooner, as a
        ``sleep(0)`` between batches did (that is what starved them).
        """
        if self.waiting:
            until = time.perf_counter() + _LET_IN_FOR
            while self.waiting and time.perf_counter() < until:
                time.sleep(_LET_IN_STEP)

    def acquire_read(self) -> Any:
        """Take the read side; returns the handle to release."""
        if self.sweep_waiting:
            with self._turnstile:
                pass
        local = self._local
        try:
            handle = local.reader
        except AttributeError:
            handle = local.reader = self._rw.gen_rlock()
        handle.acquire()
        return handle

    def acquire_sweep(self) -> Any:
        """Take the write side for a sweep batch, ahead of readers arriving later."""
        handle = self._rw.gen_wlock()
        if handle.acquire(blocking=False):
            return handle
        with self._turnstile:
            self.sweep_waiting = True
            try:
                handle.acquire()
            finally:
                self.sweep_waiting = False
        return handle

    def try_acquire_write(self, timeout: float) -> Any:
        """Take the write side with a timeout (fork preparation); returns the handle or None."""
        handle = self._rw.gen_wlock()
        return handle if handle.acquire(blocking=True, timeout=timeout) else None

    def reinit(self) -> None:
        """Fresh, unlocked primitives: after fork() only the forking thread survives."""
        self._setup()


class _Writing:
    """``with guard.writing:`` takes the write side the way the hot path does, inline."""

    __slots__ = ("_guard",)

    def __init__(self, guard: RWGuard) -> None:
        self._guard = guard

    def __enter__(self) -> None:
        self._guard.acquire_write()

    def __exit__(self, *exc: object) -> None:
        self._guard.write.release()
