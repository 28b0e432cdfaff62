"""The default store: conversations in this process's memory, behind a readerwriterlock lock.

The bookkeeping is :class:`~conversation_expiry._book.Book`; this class adds the lock (``_rwlock``)
and the protocol. ``touch`` is the request path, so it is written out here in full.
"""

from __future__ import annotations

from typing import Any

from ._book import Book
from ._errors import ConversationExpiredError, ConversationNotFoundError
from ._rwlock import RWGuard
from ._state import ConversationState
from ._store import Cleanup, Removed

__all__ = ["MemoryStore"]

_tuple_new = tuple.__new__


class MemoryStore(Book):
    """Conversations in a dict guarded by a ``readerwriterlock`` lock; the manager's default."""

    def __init__(self) -> None:
        super().__init__()
        self._guard = RWGuard()

    def register(
        self, cid: str, now: float, offset: float, ttl: float | None
    ) -> tuple[ConversationState, Removed]:
        removed = Removed([], [], {})
        with self._guard.writing:
            state, _fresh = self._start_or_touch(cid, now, offset, ttl, True, removed)
        return state, removed

    def ensure(
        self, cid: str, now: float, offset: float, extend: bool
    ) -> tuple[ConversationState, bool, Removed]:
        removed = Removed([], [], {})
        with self._guard.writing:
            state, fresh = self._start_or_touch(cid, now, offset, None, extend, removed)
        return state, fresh, removed

    def touch(self, cid: str, now: float, offset: float, extend: bool) -> ConversationState:
        lock = self._guard.write
        if not lock.acquire(False):
            self._guard.contended = True  # the sweep will let us in sooner
            lock.acquire()
        try:
            e = self._entries.get(cid)
            if e is None:
                raise ConversationNotFoundError(cid)
            if not self._plain or self._ttl_of:  # (activity is stamped then: see Book)
                ttl = self._ttl_for(cid)
                if now > self._deadline(e, ttl):
                    raise ConversationExpiredError(cid)
                if extend:
                    self._activity(e, ttl, now)
                return self._state(e, ttl, offset)
            # No max_age, no warnings, the default TTL: the hot path, inlined.
            ttl = self._ttl
            last = e.last
            if now > last + ttl:
                raise ConversationExpiredError(cid)
            if extend:
                if now > last:
                    e.last = last = now
                p = e.prev
                n = e.next
                p.next = n
                n.prev = p
                ring = self._default.fresh
                p = ring.prev
                e.prev = p
                e.next = ring
                p.next = e
                ring.prev = e
            return _tuple_new(
                ConversationState, (cid, e.created, last, last + ttl, True, False, offset)
            )
        finally:
            lock.release()

    def get(self, cid: str, now: float, offset: float) -> ConversationState | None:
        handle = self._guard.acquire_read()
        try:
            return self._get(cid, now, offset)
        finally:
            handle.release()

    def is_live(self, cid: str, now: float) -> bool:
        handle = self._guard.acquire_read()
        try:
            if self._plain and not self._ttl_of:  # is_expired on the request path: inlined
                e = self._entries.get(cid)
                return e is not None and now <= e.last + self._ttl
            return self._is_live(cid, now)
        finally:
            handle.release()

    def count(self, now: float) -> int:
        handle = self._guard.acquire_read()
        try:
            return self._count(now)
        finally:
            handle.release()

    def add_cleanup(self, cid: str, now: float, fn: Cleanup) -> None:
        with self._guard.writing:
            self._add_cleanup(cid, now, fn)

    def end(self, cid: str, now: float, offset: float) -> Removed:
        removed = Removed([], [], {})
        with self._guard.writing:
            self._end(cid, now, offset, removed)
        return removed

    def collect(
        self, now: float, offset: float, limit: int
    ) -> tuple[Removed, list[ConversationState], bool]:
        handle = self._guard.acquire_sweep()
        try:
            return self._collect(now, offset, limit)
        finally:
            handle.release()

    def drain(self, now: float, offset: float, limit: int) -> Removed:
        handle = self._guard.acquire_sweep()
        try:
            return self._drain(now, offset, limit)
        finally:
            handle.release()

    def next_warning_at(self) -> float | None:
        if self._warn is None:
            return None
        handle = self._guard.acquire_read()
        try:
            return self._next_warning_at()
        finally:
            handle.release()

    def contended(self) -> bool:
        was = self._guard.contended
        self._guard.contended = False
        return was

    def before_fork(self, timeout: float) -> Any:
        """Hold the write side across fork() so the child never sees a half-made change."""
        return self._guard.try_acquire_write(timeout)

    def reinit_after_fork(self) -> None:
        self._guard.reinit()
