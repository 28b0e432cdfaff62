"""The cleanup thread: a loop around the manager's public one-shot sweep."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from ._faults import logger

__all__ = ["CleanupThread"]


class CleanupThread:
    """Runs ``sweep`` every ``interval`` real seconds on a daemon thread until stopped.

    ``sweep`` is held weakly: a manager nobody references any more is collected, and its thread
    ends at its next wake-up instead of keeping it alive. ``sweep`` returns how long the thread
    may sleep before the next run (at most ``interval``), so warnings due sooner are on time.
    """

    def __init__(self, sweep: Callable[[], float], interval: float, name: str) -> None:
        self._sweep = weakref.WeakMethod(sweep)
        self._interval = interval
        self._name = name
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def stopped(self) -> bool:
        return self._stopping

    def is_current(self) -> bool:
        """Whether the calling thread is this cleanup thread."""
        thread = self._thread
        return thread is not None and thread is threading.current_thread()

    def start(self) -> None:
        with self._lock:
            if self._stopping:
                raise RuntimeError("this manager was stopped; its cleanup thread cannot restart")
            if self.alive:
                return
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Make the thread recompute its wait now (something became due sooner)."""
        self._event.set()

    def stop(self, timeout: float | None) -> bool:
        """Stop and join; idempotent. True when the thread has ended (or never ran)."""
        with self._lock:
            self._stopping = True
            self._event.set()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True  # stop() from a callback on this very thread: it ends when it returns
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        event = self._event
        wait = self._interval
        while True:
            event.wait(wait)
            if self._stopping:
                return
            event.clear()
            sweep = self._sweep()
            if sweep is None:
                return  # the manager is gone
            try:
                wait = max(0.0, min(self._interval, sweep()))
            except Exception:
                logger.exception("conversation expiry sweep failed; the thread goes on")
                wait = self._interval
            del sweep

    def reinit_after_fork(self) -> None:
        """In a forked child: fresh primitives, and the thread again if the parent ran one."""
        ran = self._thread is not None and not self._stopping
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._thread = None
        if ran:
            self.start()
