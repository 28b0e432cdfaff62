"""Lag from a conversation's deadline to its ``on_expire`` call, with the real cleanup thread.

This library (default ``SystemClock``, ``autostart``) and the naive port (its Go ticker loop) run
side by side with the same short TTL and cleanup interval. Conversations are registered at
random moments, so their deadlines fall anywhere between two sweeps; ``on_expire`` records the
wall time it was called minus the deadline the state carries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from random import Random
from typing import Any

from conversation_expiry import ConversationExpiryManager

from .adapters import NAIVE, OURS
from .naive_port import NaiveExpiryManager, utcnow

__all__ = ["LagResult", "cleanup_lags"]


@dataclass(frozen=True)
class LagResult:
    name: str
    lags: tuple[float, ...]  # seconds, one per conversation that expired in time
    missing: int  # conversations not expired by the end of the wait

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "lags": list(self.lags), "missing": self.missing}


def cleanup_lags(
    count: int, ttl: float = 0.2, interval: float = 0.05, seed: int = 3
) -> list[LagResult]:
    ours_lags: list[float] = []
    naive_lags: list[float] = []

    def ours_expired(state: Any, _reason: object) -> None:
        ours_lags.append(time.time() - state.expires_at.timestamp())

    def naive_expired(state: Any) -> None:
        naive_lags.append((utcnow() - state.expires_at).total_seconds())

    rng = Random(seed)
    m = ConversationExpiryManager(ttl, interval, on_expire=ours_expired)
    n = NaiveExpiryManager(
        timedelta(seconds=ttl), timedelta(seconds=interval), on_expire=naive_expired
    )
    try:
        for i in range(count):
            m.register_conversation(f"lag-{i}")
            n.register_conversation(f"lag-{i}")
            time.sleep(rng.uniform(0, interval / 5))
        give_up = time.monotonic() + ttl + 10 * interval + 1.0
        while (len(ours_lags) < count or len(naive_lags) < count) and time.monotonic() < give_up:
            time.sleep(interval / 5)
    finally:
        m.stop()
        n.stop()
    return [
        LagResult(OURS, tuple(ours_lags), count - len(ours_lags)),
        LagResult(NAIVE, tuple(naive_lags), count - len(naive_lags)),
    ]
