"""Eviction order against a plain model: random calls at few clock readings, small buckets.

Many activities at one reading (a ManualClock, a coarse clock) are where the order of
eviction rests on the stamps of activity and not on time; small buckets make such readings
span several of them, and ids touched again lazily leave entries behind. The model is a dict
id -> (last activity, order of the call).
"""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationNotFoundError,
    ExpiryReason,
    ManualClock,
)
from conversation_expiry import _buckets as buckets
from conversation_expiry import _walks as walks

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
LONG = 1e6  # nothing expires: every removal at capacity is an eviction
SEEDS = range(300)


def first_divergence(seed: int, capacity: int, n_ids: int, ttls: tuple[float | None, ...]) -> str:
    """Run 120 random calls; '' if every eviction took the model's least recently active."""
    rnd = random.Random(seed)
    clock = ManualClock(START)
    evicted: list[str] = []
    m = ConversationExpiryManager(
        LONG, 3600, clock=clock, autostart=False, max_conversations=capacity,
        on_expire=lambda s, r: r is ExpiryReason.EVICTED and evicted.append(s.id),
    )
    model: dict[str, tuple[float, int]] = {}
    ids = [f"i{k}" for k in range(n_ids)]
    for step in range(120):
        op, cid = rnd.random(), rnd.choice(ids)
        now = clock.monotonic()
        if op < 0.15:
            clock.advance(0.5)
        elif op < 0.55:
            ttl = rnd.choice(ttls)
            evicted.clear()
            m.register_conversation(cid, ttl=ttl)
            if cid not in model and len(model) >= capacity:
                expected = min(model, key=model.__getitem__)
                if evicted != [expected]:
                    return f"step {step}: evicted {evicted}, expected [{expected!r}]"
                del model[expected]
            model[cid] = (now, step)
        elif op < 0.9:
            if cid in model:
                m.update_activity(cid)
                model[cid] = (now, step)
            else:
                with pytest.raises(ConversationNotFoundError):
                    m.update_activity(cid)
        elif m.end_conversation(cid) != (model.pop(cid, None) is not None):
            return f"step {step}: end_conversation({cid!r}) disagrees"
    return ""


@pytest.mark.parametrize("cap", [2, 3, 4])
@pytest.mark.parametrize("ttls", [(None,), (None, LONG / 2)], ids=["one-ttl", "two-ttls"])
def test_eviction_takes_the_least_recently_active(
    monkeypatch: pytest.MonkeyPatch, cap: int, ttls: tuple[float | None, ...]
) -> None:
    monkeypatch.setattr(buckets, "CAP", cap)
    monkeypatch.setattr(walks, "_PROBE", 1)
    failures = [
        f"seed {seed}: {found}"
        for seed in SEEDS
        if (found := first_divergence(seed, 3 + seed % 6, 4 + seed % 10, ttls))
    ]
    assert failures == []
