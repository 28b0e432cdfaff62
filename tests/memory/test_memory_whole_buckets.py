"""A sweep takes the buckets that are past due whole in one call (``_walks._take_whole``).

Its reference is the walk bucket by bucket (``_walks._settled`` and ``review``), which a sweep
falls back to wherever ``_take_whole`` takes nothing. The test drives two stores through the
same random activity, one with ``_take_whole`` switched off, and asks that every sweep takes
the same ids, with the same states, in the same order, and that counts agree: bursts at one
reading, ids active since they were queued, ended ids (stale entries), evictions at capacity,
and batches smaller and larger than a bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from random import Random
from typing import Any

import pytest
from support import SetClock

from conversation_expiry import MemoryStore, Policy
from conversation_expiry import _walks as walks
from conversation_expiry._errors import ConversationExpiredError, ConversationNotFoundError

TTL = 100.0


def _nothing_whole(*args: Any) -> tuple[list[str], list[complex], int]:
    return [], [], 0


@contextmanager
def bucket_by_bucket() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(walks, "_take_whole", _nothing_whole)
        yield


def activity(seed: int, capacity: int | None, around: Callable[[], Any]) -> list[Any]:
    """What one store shows under the activity of ``seed``: every sweep's take, every count."""
    rng = Random(seed)
    store, clock = MemoryStore(), SetClock()
    store.bind(Policy(ttl=TTL, max_conversations=capacity), clock)
    seen: list[Any] = []
    live: list[str] = []
    fresh = 0
    for _ in range(60):
        clock.t += rng.choice((0.0, 0.0, 0.5, 7.0, 30.0, TTL / 2, TTL + 1))
        with around():
            for _ in range(rng.choice((0, 5, 40, 300))):  # a burst, often at one reading
                cid = f"c{fresh}"
                fresh += 1
                _state, removed = store.register(cid, None, None)
                seen.append(("evicted", [s[0] for s in removed.states]))
                live.append(cid)
            for _ in range(rng.choice((0, 10, 100))):
                if live:
                    cid = rng.choice(live)
                    try:
                        store.touch(cid, True)
                    except (ConversationNotFoundError, ConversationExpiredError) as exc:
                        seen.append((type(exc).__name__, cid))
            for _ in range(rng.choice((0, 0, 5))):
                if live:
                    cid = live.pop(rng.randrange(len(live)))
                    seen.append(("ended", [s[0] for s in store.end(cid).states]))
            if rng.random() < 0.3:
                seen.append(("count", store.count()))
            limit = rng.choice((16, 100, 256, 1000))
            while True:
                sweep = store.claim(limit)
                states = sweep.departures.states
                seen.append(("swept", [(s[0], s[1], s[2]) for s in states]))
                if not sweep.more:
                    break
            seen.append(("count", store.count()))
    return seen


@pytest.mark.parametrize("capacity", [None, 500], ids=["no capacity", "capacity"])
@pytest.mark.parametrize("seed", range(12))
def test_whole_bucket_takes_agree_with_the_walk_bucket_by_bucket(
    seed: int, capacity: int | None
) -> None:
    took_whole: list[int] = []
    real = walks._take_whole

    def counting(*args: Any) -> tuple[list[str], list[complex], int]:
        got = real(*args)
        took_whole.append(got[2])
        return got

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(walks, "_take_whole", counting)
        fast = activity(seed, capacity, nullcontext)
    reference = activity(seed, capacity, bucket_by_bucket)
    assert any(took_whole), "the activity never took a bucket whole: it tests nothing"
    assert fast == reference
