"""Logging the faults of user callables without flooding the log.

A callable that raises is logged at ERROR on the ``conversation_expiry`` logger with its traceback
and the conversation id. Reports are rate-limited per (kind of callable, callable, exception
type), so one broken cleanup that fails for every conversation of every sweep writes a bounded
number of lines:

* the first ``_BURST`` failures are logged in full, then one line says the rest are counted;
* when a minute (``_WINDOW``) has passed, the next failure logs one line summing up those not
  logged, and is itself logged in full; while the callable keeps failing, that is all: one
  traceback and one summary a minute;
* after a quiet minute without failures, it gets a full burst again;
* ``stop()`` (:meth:`FaultLog.flush`) logs the summaries still pending.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from . import _fork
from ._clock import _REAL

__all__ = ["FaultLog", "logger"]

logger = logging.getLogger("conversation_expiry")

_BURST = 20
_WINDOW = 60.0


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


class _Window:
    """The failures of one key in the current window."""

    __slots__ = ("allowance", "last", "last_cid", "logged", "start", "suppressed")

    def __init__(self, now: float, allowance: int) -> None:
        self.start = now  # when the window opened
        self.last = now  # the latest failure
        self.allowance = allowance  # full reports this window may log
        self.logged = 0
        self.suppressed = 0
        self.last_cid = ""


_Key = tuple[str, str, type[BaseException]]


class FaultLog:
    """Logs callback failures at ERROR, rate-limited per callable and exception type."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[_Key, _Window] = {}
        _fork.renew_after_fork(self, _lock=threading.Lock)

    def report(self, what: str, fn: Callable[..., Any], cid: str, exc: BaseException) -> None:
        """Record that ``fn`` (an ``on_expire``, cleanup or ``on_warning``) raised for ``cid``."""
        key = (what, _name_of(fn), type(exc))
        now = _REAL[0]()  # real time: a frozen or manual clock must not stall the windows
        summary: tuple[int, str] | None = None
        exhausted = False
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(now, _BURST)
            elif now - window.start >= _WINDOW:
                if window.suppressed:
                    summary = (window.suppressed, window.last_cid)
                # Still failing: one full report a window. Quiet for a window: a burst again.
                allowance = _BURST if now - window.last >= _WINDOW else 1
                window = self._windows[key] = _Window(now, allowance)
            window.last = now
            full = window.logged < window.allowance
            if full:
                window.logged += 1
                exhausted = window.logged == _BURST
            else:
                window.suppressed += 1
                window.last_cid = cid
        if summary is not None:
            _summarise(key, *summary)
        if full:
            logger.error(
                "%s %s failed for conversation %r", what, key[1], cid,
                exc_info=(type(exc), exc, exc.__traceback__),
                extra={"conversation_id": cid},
            )
            if exhausted:
                logger.error(
                    "%s %s keeps raising %s; further failures are counted and summarised once "
                    "a minute", what, key[1], key[2].__name__,
                )

    def flush(self) -> None:
        """Log the summaries still pending (at stop)."""
        with self._lock:
            pending = [(k, w.suppressed, w.last_cid) for k, w in self._windows.items()]
            self._windows.clear()
        for key, suppressed, last_cid in pending:
            if suppressed:
                _summarise(key, suppressed, last_cid)


def _summarise(key: _Key, suppressed: int, last_cid: str) -> None:
    logger.error(
        "%s %s raised %s %d more times (last for conversation %r); those were not logged",
        key[0], key[1], key[2].__name__, suppressed, last_cid,
        extra={"conversation_id": last_cid},
    )
