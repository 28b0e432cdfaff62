"""Logging the faults of user callables without flooding the log.

A callable that raises is logged at ERROR on the ``conversation_expiry`` logger with its traceback
and the conversation id. Reports are rate-limited per (kind of callable, callable, exception
type), so one broken cleanup that fails for every conversation of every sweep writes a bounded
number of lines:

* the first ``_BURST`` failures are logged in full, then one line says the rest are counted;
* when a minute (``_WINDOW``) has passed, the next failure logs one line summing up those not
  logged (their count, and the ids of the first ``_LISTED`` and of the last), and is itself
  logged in full; while the callable keeps failing, that is all: one traceback and one summary
  a minute;
* after a quiet minute without failures, it gets a full burst again;
* ``stop()`` (:meth:`FaultLog.flush`) logs the summaries still pending.

The same windows (:class:`LogWindows`) limit the warnings about refused client ids (``_web``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, NamedTuple, TypeVar

from . import _fork
from ._clock import _REAL

__all__ = ["FaultLog", "LogWindows", "Summary", "log_safely", "logger"]

K = TypeVar("K", bound=Hashable)

logger = logging.getLogger("conversation_expiry")

_BURST = 20
_WINDOW = 60.0
_LISTED = 100  # details (ids) of the events not logged that a summary names, besides the last


def log_safely(log: Callable[..., None], *args: Any, **kwargs: Any) -> bool:
    """Call ``log``; False if logging itself raised, which must not end a thread or a batch.

    Logging raises when a filter does, or when a ``LogRecord`` cannot read the time: freezegun's
    patched ``time.time`` raises ``IndexError`` on other threads while a freeze stops. A fault
    of a callable whose report failed is still counted (and summarised at the next report).
    """
    try:
        log(*args, **kwargs)
    except Exception:
        return False
    return True


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


class Summary(NamedTuple):
    """The events of a window that were not logged."""

    events: int
    details: list[str]  # the first _LISTED of them
    last: str


class _Window:
    """The events of one key in the current window."""

    __slots__ = ("allowance", "details", "last", "last_detail", "logged", "start", "suppressed")

    def __init__(self, now: float, allowance: int) -> None:
        self.start = now  # when the window opened
        self.last = now  # the latest event
        self.allowance = allowance  # full reports this window may log
        self.logged = 0
        self.suppressed = 0
        self.details: list[str] = []  # of the first _LISTED not logged
        self.last_detail = ""

    def summary(self) -> Summary:
        return Summary(self.suppressed, self.details, self.last_detail)


class Verdict(NamedTuple):
    full: bool  # log this event in full
    exhausted: bool  # it used up the burst: say that the rest are counted
    summary: Summary | None  # the events of a past window that were not logged


class LogWindows(Generic[K]):
    """Rate limits for log lines, per key: the policy in this module's docstring.

    Used for faults of callables (here) and for refused client ids (``_web``). ``now`` is real
    monotonic time by default, so a frozen or manual clock cannot stall the windows.
    """

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._windows: dict[K, _Window] = {}
        _fork.renew_after_fork(self, _lock=threading.Lock)

    def hit(self, key: K, detail: str) -> Verdict:
        """Count one event of ``key``; ``detail`` (an id) is kept if it goes unlogged."""
        now = self._now() if self._now is not None else _REAL[0]()
        summary: Summary | None = None
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(now, _BURST)
            elif now - window.start >= _WINDOW:
                if window.suppressed:
                    summary = window.summary()
                # Still going on: one full report a window. Quiet for a window: a burst again.
                allowance = _BURST if now - window.last >= _WINDOW else 1
                window = self._windows[key] = _Window(now, allowance)
            window.last = now
            full = window.logged < window.allowance
            if full:
                window.logged += 1
            else:
                window.suppressed += 1
                if len(window.details) < _LISTED:
                    window.details.append(detail)
                window.last_detail = detail
            return Verdict(full, full and window.logged == _BURST, summary)

    def drain(self) -> list[tuple[K, Summary]]:
        """What every window with events not logged did not log; forgets them all."""
        with self._lock:
            pending = [(k, w.summary()) for k, w in self._windows.items() if w.suppressed]
            self._windows.clear()
        return pending


_Key = tuple[str, str, type[BaseException]]


class FaultLog:
    """Logs callback failures at ERROR, rate-limited per callable and exception type."""

    def __init__(self) -> None:
        self._windows: LogWindows[_Key] = LogWindows()

    def report(self, what: str, fn: Callable[..., Any], cid: str, exc: BaseException) -> None:
        """Record that ``fn`` (an ``on_expire``, cleanup or ``on_warning``) raised for ``cid``."""
        key = (what, _name_of(fn), type(exc))
        full, exhausted, summary = self._windows.hit(key, cid)
        if summary is not None:
            _summarise(key, summary)
        if full:
            log_safely(
                logger.error,
                "%s %s failed for conversation %r", what, key[1], cid,
                exc_info=(type(exc), exc, exc.__traceback__),
                extra={"conversation_id": cid},
            )
            if exhausted:
                log_safely(
                    logger.error,
                    "%s %s keeps raising %s; further failures are counted and summarised once "
                    "a minute", what, key[1], key[2].__name__,
                )

    def flush(self) -> None:
        """Log the summaries still pending (at stop)."""
        for key, summary in self._windows.drain():
            _summarise(key, summary)


def _summarise(key: _Key, summary: Summary) -> None:
    listed = ", ".join(map(repr, summary.details))
    if summary.events > len(summary.details):
        others = summary.events - len(summary.details)
        listed += f" and {others} more (the last {summary.last!r})"
    log_safely(
        logger.error,
        "%s %s raised %s %d more times, for conversations %s; those were not logged in full",
        key[0], key[1], key[2].__name__, summary.events, listed,
        extra={"conversation_id": summary.last},
    )
