"""The in-memory store's bucket layout: ties, the inlined request path, thinning, the GC.

These drive ``MemoryStore`` directly with a clock the test sets, and look at its chain
(``_buckets.Chain``) where the behaviour under test is the layout itself.
"""

from __future__ import annotations

import gc
import sys
from random import Random

import pytest
from support import SetClock

from conversation_expiry import ConversationState, MemoryStore, Policy
from conversation_expiry import _buckets as buckets
from conversation_expiry._buckets import CAP, Chain

OFFSET = SetClock.OFFSET
TTL = 100.0


def bound(ttl: float = TTL) -> tuple[MemoryStore, SetClock]:
    store, clock = MemoryStore(), SetClock()
    store.bind(Policy(ttl=ttl), clock)
    return store, clock


def order(chain: Chain) -> list[list[str]]:
    return [list(b) for b in chain.bks[chain.head :]]


def no_search(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Chain, cid: str) -> None:
        raise AssertionError(f"{cid} was not where its time says")

    monkeypatch.setattr(Chain, "_search", refuse)


def reference_touch(store: MemoryStore, cid: str, now: float) -> ConversationState:
    """What ``touch`` does, by ``Book``'s reference methods (no lock, no inlining)."""
    created, last, ttl = store._live(cid, now)
    last = store._activity(cid, last, ttl, ttl, now)
    return store._state(cid, created, last, ttl, OFFSET)


def test_ids_registered_at_one_reading_are_found_by_a_probe_not_a_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, clock = bound()
    n = 3 * CAP + 5  # several buckets opened at one clock reading
    for i in range(n):
        store.register(f"c{i}", None, None)
    chain = store._fresh
    assert len(chain.bks) == 4 and len(set(chain.los)) == 1  # all bounds tied
    no_search(monkeypatch)
    clock.t = 0.0  # still tied: touched at the same reading
    for i in range(0, n, 7):
        state = store.touch(f"c{i}", True)
        assert state.last_activity == state.created_at
    clock.t = 5.0
    for i in range(0, n, 3):
        assert store.touch(f"c{i}", True).last_activity.timestamp() == OFFSET + 5.0
    for i in range(n):
        got = store.get(f"c{i}")
        assert got is not None and got.created_at.timestamp() == OFFSET
        assert store.is_live(f"c{i}")
    for i in range(1, n, 2):
        assert store.end(f"c{i}").states[0].id == f"c{i}"
    assert store.count() == n - n // 2


def test_the_inlined_touch_and_get_agree_with_the_reference_methods() -> None:
    inline, iclock = bound()
    reference, rclock = bound()
    rng = Random(7)
    ids = [f"c{i}" for i in range(3 * CAP)]
    t = 0.0
    live: list[str] = []
    for step in range(40):
        t += rng.choice((0.0, 0.0, 0.001, 1.0, 7.5))  # ties are common, as with a hand clock
        iclock.t = rclock.t = t
        for cid in ids[step * 150 : (step + 1) * 150]:
            assert inline.register(cid, None, None)[0] == reference.register(cid, None, None)[0]
            live.append(cid)
        for cid in rng.sample(live, min(len(live), 400)):
            assert inline.touch(cid, True) == reference_touch(reference, cid, t)
            assert inline.get(cid) == reference._get(cid, t, OFFSET)
        for cid in rng.sample(ids, 50):
            assert inline.is_live(cid) == reference._is_live(cid, t)
        assert order(inline._fresh) == order(reference._fresh)
        assert inline._last == reference._last
    for cid in live:  # the same float object where it tells ties apart
        a, b = inline._last[cid], reference._last[cid]
        assert (a in inline._fresh.los) == (b in reference._fresh.los)


@pytest.mark.parametrize("thinning", [True, False])
def test_activity_far_from_the_head_thins_the_buckets_it_leaves(
    thinning: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not thinning:
        monkeypatch.setattr(buckets, "sparse", lambda b: False)
    store, clock = bound(ttl=1e6)
    n = 20 * CAP
    for i in range(n):
        store.register(f"c{i}", None, None)
    chain = store._fresh
    compact = sum(map(sys.getsizeof, chain.bks))
    rng = Random(3)
    ids = [f"c{i}" for i in range(n)]
    for _ in range(30):  # long random activity: ids leave old buckets one by one
        clock.t += 1.0
        for cid in rng.sample(ids, n // 4):
            store.touch(cid, True)
    assert store.count() == n
    held = sum(map(sys.getsizeof, chain.bks))
    if thinning:  # (measured: 1.9x; 8.5x without thinning)
        assert held < 2.5 * compact
    else:
        assert held > 5 * compact
    gc.collect()
    assert not any(gc.is_tracked(b) for b in chain.bks)


def test_counting_splits_a_tied_bucket_and_every_id_stays_findable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, clock = bound(ttl=10.0)
    for i in range(100):
        store.register(f"old{i}", None, None)  # one bucket: 100 ids at t=0 ...
    clock.t = 5.0
    for i in range(100):
        store.register(f"new{i}", None, None)  # ... and 100 at t=5, same bucket
    clock.t = 11.0
    assert store.count() == 100  # splits the bucket: the 100 past due counted, once
    chain = store._fresh
    assert [len(b) for b in chain.bks[chain.head :]] == [100, 100]
    no_search(monkeypatch)
    clock.t = 11.0
    for i in range(0, 100, 2):
        assert store.touch(f"new{i}", True).created_at.timestamp() == OFFSET + 5.0
    for i in range(1, 100, 2):
        got = store.get(f"new{i}")
        assert got is not None and got.last_activity.timestamp() == OFFSET + 5.0
    ended = store.end("old3")  # past due, out of the counted bucket
    assert [s.id for s in ended.states] == ["old3"] and store.count() == 100
    claimed = store.claim(1000)
    assert len(claimed.departures.states) == 99 and store.count() == 100


def test_a_search_for_an_unknown_id_finds_nothing() -> None:
    store, _clock = bound()
    store.register("a", None, None)
    chain = store._fresh
    assert chain.find("zz", store._last["a"]) is None
    assert chain._search("zz") is None
