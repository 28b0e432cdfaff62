"""The cleanup thread: a loop around the manager's public one-shot sweep."""

from __future__ import annotations

import random
import threading
import weakref
from collections.abc import Callable

from . import _fork
from ._clock import _REAL
from ._errors import StoreUnavailableError
from ._faults import log_safely, logger

__all__ = ["CleanupThread"]

# While sweeps keep failing, how often (real seconds) one line says they still do.
_FAILURE_SUMMARY = 60.0
# While they fail, the waits between tries double from the interval up to this (or the
# interval, if longer): a store that is down is not asked again at every short interval.
_MAX_BACKOFF = 30.0


class CleanupThread:
    """Runs ``sweep`` every ``interval`` real seconds on a daemon thread until stopped.

    ``sweep`` is held weakly: a manager nobody references any more is collected, and its thread
    ends at its next wake-up instead of keeping it alive. ``sweep`` returns how long the thread
    may sleep before the next run (at most ``interval``), so warnings due sooner are on time.

    Nothing a sweep raises ends the thread, ``BaseException`` included: on this thread a
    ``SystemExit`` would only end the thread (silently), and a ``KeyboardInterrupt`` is never
    Ctrl-C (signals go to the main thread) but a callable raising it, so either would just
    stop every later expiry. A run of failures is logged once in full, then counted.
    """

    def __init__(self, sweep: Callable[[], float], interval: float, name: str) -> None:
        self._sweep = weakref.WeakMethod(sweep)
        self._interval = interval
        self._name = name
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._failures = _Failures(interval)
        _fork.renew_after_fork(self, _lock=threading.Lock, _event=threading.Event)

    @property
    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def stopping(self) -> bool:
        """True once stop() was called: a sweep in progress should end after its batch."""
        return self._stopping

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
        event = self._event
        # (set() takes the event's lock, ~0.8 us: too much for each update_activity with
        # warnings; set already, the thread has yet to clear it, and sweeps after that)
        if not event.is_set():
            event.set()

    def stop(self, timeout: float | None) -> bool:
        """Stop and join; idempotent. True when the thread has ended (or never ran)."""
        with self._lock:
            self._stopping = True
            self._event.set()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True  # stop() from a callback on this very thread: it ends when it returns
        thread.join(None if timeout is None else min(timeout, threading.TIMEOUT_MAX))
        return not thread.is_alive()

    def _run(self) -> None:
        event = self._event
        wait = self._interval
        failures = self._failures
        while True:
            event.wait(min(wait, threading.TIMEOUT_MAX))  # Windows: about 49 days at most
            event.clear()  # (before the check: a stop() just after it sets the event again)
            if self._stopping:
                failures.flush()
                return
            sweep = self._sweep()
            if sweep is None:
                failures.flush()
                return  # the manager is gone
            try:
                wait = max(0.0, min(self._interval, sweep()))
            except BaseException as exc:  # the thread outlives anything a sweep raises
                wait = failures.failed(exc)
            else:
                failures.succeeded()
            del sweep

    def reinit_after_fork(self) -> None:
        """In a forked child: the thread again if the parent ran one.

        Its lock and event were re-created already (``_fork.renew_after_fork``).
        """
        ran = self._thread is not None and not self._stopping
        self._thread = None
        if ran:
            self.start()


class _Failures:
    """Failed sweeps in a row: the first of each exception type logged in full, then counted.

    A sweep failing at every wake of a short interval (a store that is down) would otherwise
    write a traceback per interval. Runs on the cleanup thread only, so it needs no lock.
    """

    __slots__ = ("count", "first_at", "interval", "reported", "said_at", "types")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.types: set[type[BaseException]] = set()  # seen in this run of failures
        self.reported: set[type[BaseException]] = set()  # of those, logged in full
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.first_at = self.said_at = 0.0
        self.types.clear()
        self.reported.clear()

    def failed(self, exc: BaseException) -> float:
        """Log ``exc`` if it is news; returns how long to wait before the next try."""
        now = _REAL[0]()
        self.count += 1
        if self.count == 1:
            self.first_at = self.said_at = now
        self.types.add(type(exc))
        if type(exc) not in self.reported:
            if log_safely(self._report, exc):
                self.reported.add(type(exc))
        elif now - self.said_at >= _FAILURE_SUMMARY and not self._outage():
            # (an outage is logged once and its end once: a reminder would be a second alert)
            self.said_at = now
            log_safely(logger.error, "%s", self._summary(now, "still failing"))
        backoff = self.interval * 2.0 ** min(self.count - 1, 30)
        # Jitter, so that the workers of a deployment do not all retry at once.
        return min(backoff, max(self.interval, _MAX_BACKOFF)) * random.uniform(0.8, 1.0)

    def _report(self, exc: BaseException) -> None:
        if isinstance(exc, StoreUnavailableError):  # an outage, not a bug: no traceback
            logger.warning(
                "conversation store unavailable (%s: %s); the cleanup thread keeps trying, "
                "backing off, and says when it works again",
                type(exc.__cause__ or exc).__name__, exc.__cause__ or exc,
            )
        else:
            logger.error(
                "conversation expiry sweep failed with %s; the thread goes on%s",
                type(exc).__name__,
                "" if self.count > 1 else " (further failures in a row are counted)",
                exc_info=(type(exc), exc, exc.__traceback__),
            )

    def succeeded(self) -> None:
        if self.count:
            log_safely(logger.warning, "%s", self._summary(_REAL[0](), "works again"))
            self.reset()

    def flush(self) -> None:
        """At the thread's end: say how many failures were not logged."""
        if self.count > len(self.reported):
            log_safely(
                logger.warning if self._outage() else logger.error,
                "%s",
                self._summary(_REAL[0](), "was still failing when it ended"),
            )

    def _outage(self) -> bool:
        """Whether every failure of this run was the store being unavailable."""
        return all(issubclass(t, StoreUnavailableError) for t in self.types)

    def _summary(self, now: float, what: str) -> str:
        kinds = ", ".join(sorted(t.__name__ for t in self.types))
        return (
            f"conversation expiry sweep {what}: {self.count} failed sweeps in a row over "
            f"{now - self.first_at:.0f}s ({kinds})"
        )
