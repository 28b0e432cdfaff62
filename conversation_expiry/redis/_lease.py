"""The lease keeper: renews this process's outstanding claims while it lives.

A claim's lease is what tells other processes this one is still working on a conversation (a
slow ``on_expire``); a process that dies stops renewing, and its claims are taken over. The
keeper is a daemon thread started only while claims are outstanding, paced by ``Event.wait``;
it also retries acknowledgements that failed during an outage, so a claim whose cleanups ran
is not renewed forever. Threads do not survive ``fork()``: the child starts afresh.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable

from .._errors import StoreUnavailableError
from .._faults import log_safely, logger

__all__ = ["LeaseKeeper"]

_CHUNK = 500  # incarnations per renew script: well under a millisecond of server time


class LeaseKeeper:
    """Outstanding claims (incarnations) of one store, and the thread that renews them."""

    def __init__(
        self,
        renew: Callable[[list[bytes]], list[bytes]],
        retry_acks: Callable[[], object],
        period: float,
        name: str = "conversation-expiry-lease",
    ) -> None:
        self._renew = renew
        self._retry_acks = retry_acks  # sends every acknowledgement pending, or raises
        self._period = period
        self._name = name
        self._reset()
        _keepers.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._outstanding: dict[bytes, None] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        self._acks_pending = False
        self._failures = 0  # failed renewals in a row (logged once per run)

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    @property
    def running(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    def add(self, incarnations: list[bytes]) -> None:
        with self._lock:
            self._outstanding.update(dict.fromkeys(incarnations))
            self._ensure_running()

    def discard(self, incarnations: list[bytes]) -> None:
        with self._lock:
            for inc in incarnations:
                self._outstanding.pop(inc, None)

    def renew_now(self) -> None:
        """Renew every outstanding claim in the caller's thread; raises as the store does."""
        with self._lock:
            batch = list(self._outstanding)
        self._renew_all(batch)

    def _renew_all(self, batch: list[bytes]) -> None:
        for start in range(0, len(batch), _CHUNK):
            lost = self._renew(batch[start : start + _CHUNK])
            if lost:
                self.discard(lost)

    def acks_pending(self) -> None:
        with self._lock:
            self._acks_pending = True
            self._ensure_running()

    def _ensure_running(self) -> None:  # under the lock
        if self._thread is None and not self._closed:
            t = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread = t
            t.start()

    def close(self, timeout: float | None = None) -> None:
        with self._lock:
            self._closed = True
            t = self._thread
        self._stop.set()
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            with self._lock:
                batch = list(self._outstanding)
                if not batch and not self._acks_pending:
                    self._thread = None  # the next claim starts another
                    return
            try:
                self._tick(batch)
            except StoreUnavailableError:
                pass  # the manager reports outages; renewing again next period is all we can do
            except Exception as exc:  # never die: a keeper that stops lets slow cleanups run twice
                self._failures += 1
                if self._failures == 1:  # once per run of failures, not once per period
                    log_safely(
                        logger.error,
                        "conversation store lease keeper: renewing claims failed; it keeps "
                        "trying every %.3gs and says when it works again", self._period,
                        exc_info=(type(exc), exc, exc.__traceback__),
                    )
            else:
                if self._failures:
                    log_safely(
                        logger.warning,
                        "conversation store lease keeper works again after %d failed renewals",
                        self._failures,
                    )
                    self._failures = 0

    def _tick(self, batch: list[bytes]) -> None:
        if self._acks_pending:
            with self._lock:  # cleared first: an ack failing meanwhile sets it again
                self._acks_pending = False
            try:
                self._retry_acks()  # (raises if one still fails)
            except BaseException:
                with self._lock:
                    self._acks_pending = True
                raise
        self._renew_all(batch)

    def after_fork_in_child(self) -> None:
        # The parent's claims stay the parent's: it renews and acknowledges them.
        self._reset()


_keepers: weakref.WeakSet[LeaseKeeper] = weakref.WeakSet()
_stores: weakref.WeakSet[object] = weakref.WeakSet()


def track_store(store: object) -> None:
    """Call ``store._after_fork_in_child()`` in every forked child."""
    _stores.add(store)


def _after_in_child() -> None:
    for keeper in list(_keepers):
        keeper.after_fork_in_child()
    for store in list(_stores):
        hook = getattr(store, "_after_fork_in_child", None)
        if hook is not None:
            hook()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_in_child)
