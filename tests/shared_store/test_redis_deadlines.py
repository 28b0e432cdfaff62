"""The deadline index a touch leaves behind (lib_due.lua): what it holds, and who puts it right.

A touch writes only the record; the index D keeps the deadline it had, which is earlier. The
contract suite checks every view against the real deadlines; these tests check the index itself,
the operator views, and that each call's work stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from support import START, at

from conversation_expiry import ExpiryReason, ManualClock
from conversation_expiry._store import Policy

pytest.importorskip("redis")

TTL = 10.0
RESOLVE = 256  # lib_due.lua
SHIFT = 2**54  # lib_due.lua: a confirmed past-due index is deadline - SHIFT


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def make(redis_store: Callable[..., Any], clock: ManualClock) -> Callable[..., Any]:
    def factory(**policy: Any) -> Any:
        store = redis_store()
        policy.setdefault("ttl", TTL)
        store.bind(Policy(**policy), clock)
        return store

    return factory


def us(seconds: float) -> float:
    return (START.timestamp() + seconds) * 1e6


def index(store: Any, cid: str) -> float | None:
    return store._client.zscore(store.prefix + b"d", cid)


def calls_of(store: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the runs of one of the request path's scripts."""
    script = getattr(store._scripts, name)
    seen = [0]
    real = store._hot

    def counting(run: Any, *args: bytes) -> Any:
        seen[0] += run is script
        return real(run, *args)

    monkeypatch.setattr(store, "_hot", counting)
    return seen


def test_a_touch_leaves_the_index_and_count_puts_it_right(make: Any, clock: ManualClock) -> None:
    store = make()
    store.register("a", None, None)
    store.register("b", None, None)
    clock.advance(5)
    assert store.touch("a", True).expires_at == at(15)
    assert index(store, "a") == us(10)  # the deadline it had
    clock.advance(5.5)
    assert store.count() == 1
    assert index(store, "a") == us(15)  # live: its deadline
    assert index(store, "b") == us(10) - SHIFT  # past due: confirmed, for every later call
    assert store.stats()["due"] == 1 and store.stats()["live"] == 1


def test_next_deadlines_go_by_the_records(make: Any, clock: ManualClock) -> None:
    store = make()
    for cid in "abc":
        store.register(cid, None, None)
        clock.advance(1)
    store.touch("a", True)  # a: 13 (its index 10), b: 11, c: 12
    assert store.next_deadlines(2) == [("b", at(11)), ("c", at(12))]
    clock.advance(1)
    store.touch("a", True)  # 14, its index 13
    clock.advance(9.5)  # 13.5: b and c past due; a's index is below now, but a is live
    assert store.next_deadlines(5) == [("a", at(14))]
    assert store.stats()["live"] == 1 and store.stats()["due"] == 2


def test_each_call_puts_right_a_bounded_number(
    make: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make()
    ids = [f"c{i:04d}" for i in range(2 * RESOLVE + 10)]
    for cid in ids:
        store.register(cid, None, None)
    clock.advance(5)
    for cid in ids[::2]:
        store.touch(cid, True)
    clock.advance(6)  # 11: half are past due, half live with their index behind
    counts = calls_of(store, "count", monkeypatch)
    assert store.count() == len(ids) // 2
    assert counts[0] == 3  # 522 indexes below now, at most 256 a call
    assert store.count() == len(ids) // 2 and counts[0] == 4  # nothing left to put right
    assert store.next_deadlines(1) == [(ids[0], at(15))]


def test_a_sweep_puts_right_what_it_does_not_claim(make: Any, clock: ManualClock) -> None:
    store = make()
    for cid in "abc":
        store.register(cid, None, None)
    clock.advance(5)
    store.touch("b", True)
    clock.advance(5.5)
    sweep = store.claim(10)
    assert sorted(s.id for s in sweep.departures.states) == ["a", "c"]
    store.ack(sweep.departures)
    assert index(store, "b") == us(15) and not sweep.more
    clock.advance(5)
    sweep = store.claim(10)
    assert [(s.id, r) for s, r in zip(sweep.departures.states, sweep.departures.reasons,
                                      strict=True)] == [("b", ExpiryReason.EXPIRED)]  # fmt: skip
    store.ack(sweep.departures)


def test_eviction_puts_right_a_bounded_number_then_makes_room(
    make: Any, clock: ManualClock
) -> None:
    cap = RESOLVE + 20
    store = make(max_conversations=cap)
    ids = [f"c{i:04d}" for i in range(cap)]
    for cid in ids:
        store.register(cid, None, None)
    clock.advance(1)
    for cid in ids[: RESOLVE + 10]:  # the lowest indexes all behind their deadlines
        store.touch(cid, True)
    clock.advance(1)
    _, deps = store.register("new", None, None)
    # RESOLVE indexes put right, then the lowest index taken as it is: room is made.
    assert [s.id for s in deps.states] == [ids[RESOLVE]] and deps.reasons == [
        ExpiryReason.EVICTED
    ]
    store.ack(deps)
    _, deps = store.register("newer", None, None)  # the nearest deadline again
    assert [s.id for s in deps.states] == [ids[RESOLVE + 10]]
    store.ack(deps)
    assert store.count() == cap
