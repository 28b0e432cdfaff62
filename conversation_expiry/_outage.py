"""What the cleanup thread does while its store cannot be reached: back off, and say so twice.

An outage is logged once when it starts (WARNING) and once when it ends, however many sweeps
fail in between; while it lasts the thread waits longer and longer between tries (doubling from
the cleanup interval up to ``_MAX_BACKOFF``, with jitter so that many workers do not retry in
step), and a stop() still ends the wait at once.
"""

from __future__ import annotations

import random
import time

from ._faults import logger

__all__ = ["Outage"]

_MAX_BACKOFF = 30.0  # seconds; never shorter than the cleanup interval itself


class Outage:
    """The state of one manager's store outage, as its cleanup thread sees it."""

    __slots__ = ("_failures", "_interval", "_since")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._failures = 0
        self._since = 0.0

    @property
    def ongoing(self) -> bool:
        return self._failures > 0

    def failed(self, exc: BaseException) -> float:
        """A sweep could not reach the store; returns how long to wait before the next try."""
        if self._failures == 0:
            self._since = time.monotonic()
            logger.warning(
                "conversation store unavailable (%s: %s); the cleanup thread keeps trying, "
                "backing off, and logs again when it is back",
                type(exc).__name__, exc,
            )
        self._failures += 1
        cap = max(self._interval, _MAX_BACKOFF)
        wait = min(cap, self._interval * 2.0 ** min(self._failures - 1, 30))
        return wait * random.uniform(0.8, 1.0)

    def succeeded(self) -> None:
        """A sweep reached the store; logs the end of an outage that was going on."""
        if self._failures:
            logger.warning(
                "conversation store reachable again after %.1fs (%d failed sweeps)",
                time.monotonic() - self._since, self._failures,
            )
            self._failures = 0
