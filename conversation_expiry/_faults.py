"""Running user callables so that their faults stay contained, and logging them without floods."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ._clock import _REAL

__all__ = ["FaultLog", "logger"]

logger = logging.getLogger("conversation_expiry")

# Per (what failed, which callable, which exception type): this many full reports per window,
# then one summary line when the window closes. A callable that fails on every sweep would
# otherwise write a traceback per conversation.
_BURST = 5
_WINDOW = 60.0


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


class FaultLog:
    """Logs callback failures at ERROR, rate-limited per callable and exception type."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str, type[BaseException]], list[Any]] = {}
        self.failures = 0

    def report(self, what: str, fn: Callable[..., Any], cid: str, exc: BaseException) -> None:
        """Record that ``fn`` (an ``on_expire``, cleanup or ``on_warning``) raised for ``cid``."""
        key = (what, _name_of(fn), type(exc))
        now = _REAL[0]()
        summary: tuple[int, str] | None = None
        with self._lock:
            self.failures += 1
            window = self._windows.get(key)
            if window is None or now - window[0] >= _WINDOW:
                if window is not None and window[2]:
                    summary = (window[2], window[3])
                window = self._windows[key] = [now, 0, 0, cid]
            window[1] += 1
            full = window[1] <= _BURST
            if not full:
                window[2] += 1
                window[3] = cid
        if summary is not None:
            logger.error(
                "%s %s raised %s for %d more conversations (last %r); those were not logged",
                what, key[1], key[2].__name__, summary[0], summary[1],
            )
        if full:
            logger.error(
                "%s %s failed for conversation %r", what, key[1], cid,
                exc_info=(type(exc), exc, exc.__traceback__),
                extra={"conversation_id": cid},
            )
            if window[1] == _BURST:
                logger.error(
                    "%s %s keeps raising %s; further failures are counted and summarised once a "
                    "minute", what, key[1], key[2].__name__,
                )

    def flush(self) -> None:
        """Log the summaries still pending (at stop)."""
        with self._lock:
            pending = [(k, w) for k, w in self._windows.items() if w[2]]
            self._windows.clear()
        for key, window in pending:
            logger.error(
                "%s %s raised %s for %d more conversations (last %r); those were not logged",
                key[0], key[1], key[2].__name__, window[2], window[3],
            )
