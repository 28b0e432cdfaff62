"""The in-memory store's layout: lazy queueing, ties, stale entries, the inlined path, the GC.

These drive ``MemoryStore`` directly with a clock the test sets, and look at its chain
(``_buckets.Chain``) where the behaviour under test is the layout itself.
"""

from __future__ import annotations

import gc
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import SetClock

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationState,
    ManualClock,
    MemoryStore,
    Policy,
)
from conversation_expiry import _buckets as buckets
from conversation_expiry import _walks as walks
from conversation_expiry._buckets import CAP, Chain
from conversation_expiry._state import deadline_of

OFFSET = SetClock.OFFSET
TTL = 100.0


def bound(ttl: float = TTL, capacity: int | None = None) -> tuple[MemoryStore, SetClock]:
    store, clock = MemoryStore(), SetClock()
    store.bind(Policy(ttl=ttl, max_conversations=capacity), clock)
    return store, clock


def order(chain: Chain) -> list[list[tuple[str, float]]]:
    """Each bucket's ids with the time they were queued at."""
    return [[(cid, rec.real) for cid, rec in b.items()] for b in chain.bks[chain.head :]]


def entries(chain: Chain) -> int:
    return sum(map(len, chain.bks[chain.head :]))


def reference_touch(store: MemoryStore, cid: str, now: float) -> ConversationState:
    """What ``touch`` does, by ``Book``'s reference methods (no lock, no inlining)."""
    created, last, ttl = store._live(cid, now)
    last = store._activity(cid, created, ttl, ttl, now)
    return store._state(cid, created, last, ttl, OFFSET)


def test_a_touch_rewrites_the_record_and_leaves_the_id_where_it_is_queued() -> None:
    store, clock = bound()
    for cid in "abc":
        store.register(cid, None, None)
    before = order(store._fresh)
    clock.t = 5.0
    state = store.touch("a", True)
    assert state.last_activity.timestamp() == OFFSET + 5.0
    assert order(store._fresh) == before  # still queued at its registration
    assert store._last["a"] == complex(5.0, 0.0)


def test_a_sweep_queues_a_touched_id_again_and_expires_it_at_its_deadline() -> None:
    store, clock = bound(ttl=10.0)
    store.register("a", None, None)
    store.register("b", None, None)
    clock.t = 5.0
    store.touch("a", True)
    clock.t = 10.5
    assert [s.id for s in store.claim(100).departures.states] == ["b"]
    assert order(store._fresh)[-1] == [("a", 5.0)]  # queued again at its last activity
    clock.t = 15.0
    assert store.claim(100).departures.states == []
    clock.t = 15.5
    assert [s.id for s in store.claim(100).departures.states] == ["a"]


def test_count_walks_a_touched_id_once_and_counts_it_when_past_due() -> None:
    store, clock = bound(ttl=10.0)
    for i in range(50):
        store.register(f"c{i}", None, None)
    clock.t = 5.0
    for i in range(0, 50, 2):
        store.touch(f"c{i}", True)
    clock.t = 10.5
    assert store.count() == 25 and store.count() == 25  # the odd ones are past due
    clock.t = 15.5
    assert store.count() == 0
    assert len(store.claim(100).departures.states) == 50


def test_ids_active_at_one_reading_are_evicted_in_the_order_of_their_activity() -> None:
    store, clock = bound(capacity=3)
    for cid in "abc":
        store.register(cid, None, None)
    clock.t = 1.0
    store.touch("a", True)  # lazily, at a new reading ...
    store.touch("b", True)  # ... then at the same one: both queued now, a before b
    store.touch("c", True)
    evicted = []
    for cid in "xyz":
        evicted += [s.id for s in store.register(cid, None, None)[1].states]
    assert evicted == ["a", "b", "c"]


def test_ids_active_at_one_reading_over_several_buckets_keep_their_order() -> None:
    n, m = 3 * CAP + 5, 2 * CAP + 10
    store, clock = bound(capacity=n + m)
    for i in range(n):
        store.register(f"c{i}", None, None)
    clock.t = 1.0
    store.touch("c0", True)  # the first activity at this reading: lazily
    for i in range(m):
        store.register(f"d{i}", None, None)  # then more than a bucket at the same reading
    chain = store._fresh
    assert chain.los == sorted(chain.los) and chain.los.count(1.0) > 1
    clock.t = 2.0
    evicted = []
    for i in range(n + 3):
        evicted += [s.id for s in store.register(f"e{i}", None, None)[1].states]
    assert evicted == [f"c{i}" for i in range(1, n)] + ["c0", "d0", "d1", "d2"]


def test_a_bucket_takes_at_most_cap_activities_touches_included() -> None:
    store, clock = bound(ttl=1e6)
    ids = [f"c{i}" for i in range(CAP)]
    for cid in ids:
        store.register(cid, None, None)
    chain = store._fresh
    for k in range(3 * CAP):  # every touch at a new reading
        clock.t = 1.0 + k
        store.touch(ids[k % CAP], True)
    assert len(chain.bks) == 4  # the first, then one per CAP touches
    assert entries(chain) == CAP


def test_an_ended_id_leaves_a_stale_entry_that_a_walk_drops() -> None:
    store, clock = bound(ttl=1e4)
    for i in range(CAP + 1):  # c0 ends up in a bucket that is not the current one
        clock.t = float(i)
        store.register(f"c{i}", None, None)
    chain = store._fresh
    assert [s.id for s in store.end("c0").states] == ["c0"]
    assert entries(chain) == CAP + 1  # left where it was
    clock.t = CAP + 1.0
    store.register("c0", None, None)  # a new incarnation, queued anew
    clock.t = 1e4 + CAP + 0.5
    gone = [s.id for s in store.claim(10 * CAP).departures.states]
    assert gone == [f"c{i}" for i in range(1, CAP + 1)]  # not the new c0
    assert store.get("c0") is not None and entries(chain) == 1


def test_a_new_ttl_moves_the_id_and_the_copy_left_behind_is_stale() -> None:
    store, clock = bound(ttl=10.0)
    store.register("a", None, None)
    clock.t = 1.0
    store.register("a", 50.0, None)  # same reading as nothing else: moved to the 50 s queue
    clock.t = 2.0
    store.register("a", 10.0, None)  # and back
    clock.t = 12.5
    assert store.count() == 0
    assert [s.id for s in store.claim(100).departures.states] == ["a"]
    assert store.count() == 0 and store.get("a") is None


@pytest.mark.parametrize("capacity", [None, 10**6], ids=["no capacity", "capacity: ties stamped"])
def test_the_inlined_touch_and_get_agree_with_the_reference_methods(capacity: int | None) -> None:
    inline, iclock = bound(capacity=capacity)
    reference, rclock = bound(capacity=capacity)
    # Touched by the manager's update_activity, which writes the touch out (_fused_update).
    fused, fclock = MemoryStore(), SetClock()
    manager = ConversationExpiryManager(
        TTL, 3600, autostart=False, clock=fclock, store=fused, max_conversations=capacity
    )
    assert manager._inline is not None and not manager._telemetry.tracing
    update = manager.update_activity
    rng = Random(7)
    ids = [f"c{i}" for i in range(3 * CAP)]
    t = 0.0
    live: list[str] = []
    for step in range(40):
        t += rng.choice((0.0, 0.0, 0.001, 1.0, 7.5))  # ties are common, as with a hand clock
        iclock.t = rclock.t = fclock.t = t
        for cid in ids[step * 150 : (step + 1) * 150]:
            assert inline.register(cid, None, None)[0] == reference.register(cid, None, None)[0]
            fused.register(cid, None, None)
            live.append(cid)
        for cid in rng.sample(live, min(len(live), 400)):
            state = inline.touch(cid, True)
            assert state == reference_touch(reference, cid, t)
            assert tuple(update(cid)) == tuple(state)  # touch's very layout
            assert inline.get(cid) == reference._get(cid, t, OFFSET)
        for cid in rng.sample(ids, 50):
            assert inline.is_live(cid) == reference._is_live(cid, t)
        assert order(inline._fresh) == order(reference._fresh) == order(fused._fresh)
        assert inline._last == reference._last == fused._last
        assert inline._moved == reference._moved == fused._moved
        assert inline._seq == reference._seq == fused._seq
        assert inline._fresh.room == fused._fresh.room
        if step % 10 == 9:
            assert inline.claim(500).departures.states == reference.claim(500).departures.states
    manager.stop()


@given(
    created=st.floats(-1e9, 1e9),
    idle=st.lists(st.floats(0.0, 1e6), min_size=1, max_size=3),
)
def test_the_inlined_touch_writes_exactly_the_record_of_the_reference(
    created: float, idle: list[float]
) -> None:
    # The hot path makes the record by arithmetic on the old one (``v - last + now``), not by
    # complex(now, created): the two must be equal floats, no rounding, at any magnitude (a
    # created time of -0.0 may come back as 0.0, the same time).
    store, clock = MemoryStore(), SetClock()
    store.bind(Policy(ttl=2e6), clock)
    clock.t = created
    store.register("a", None, None)
    for gap in idle:
        clock.t += gap
        store.touch("a", True)
        record = store._last["a"]
        assert record.real == clock.t and record.imag == created


def test_a_sweeps_oldest_deadline_is_the_earliest_of_its_states() -> None:
    # ``Departures.oldest`` (for the lag metric) comes from the first record of each review, not
    # from every state: it must still be the earliest, touches and ties included.
    store, clock = bound(ttl=10.0)
    rng = Random(3)
    ids = [f"c{i}" for i in range(4 * CAP)]
    for cid in ids:
        clock.t += rng.choice((0.0, 0.0, 0.01))
        store.register(cid, None, None)
    for cid in rng.sample(ids, CAP):
        clock.t += rng.choice((0.0, 0.01))
        store.touch(cid, True)
    batches = 0
    while store.count():
        clock.t += 0.5
        departures = store.claim(rng.choice((3, 100, CAP + 7))).departures
        if departures.states:
            batches += 1
            assert departures.oldest == min(map(deadline_of, departures.states))
        else:
            assert departures.oldest is None
    assert batches > 5


def test_a_sweeps_oldest_deadline_counts_an_id_taken_after_a_later_one() -> None:
    # "x" is queued at 0 and active at 1, "a" queued at 2 in the same bucket: the batch takes
    # "a" first, then "x" queued again at 1, so its first record is not its earliest.
    store, clock = bound(ttl=10.0)
    store.register("x", None, None)
    clock.t = 1.0
    store.touch("x", True)
    clock.t = 2.0
    store.register("a", None, None)
    clock.t = 12.5
    departures = store.claim(CAP).departures
    assert [s.id for s in departures.states] == ["a", "x"]
    assert departures.oldest == 11.0 == min(map(deadline_of, departures.states))


def test_long_random_activity_keeps_one_entry_per_id_and_nothing_tracked_by_the_gc() -> None:
    store, clock = bound(ttl=50.0)
    n = 8 * CAP
    ids = [f"c{i}" for i in range(n)]
    for cid in ids:
        store.register(cid, None, None)
    rng = Random(3)
    for _ in range(30):
        clock.t += 1.0
        for cid in rng.sample(ids, n // 4):
            store.touch(cid, True)
        store.count()
    clock.t += 40.0
    assert store.count() == n - len(store.claim(n).departures.states) == store.count()
    chain = store._fresh
    assert entries(chain) == len(store._last)
    gc.collect()
    assert not any(gc.is_tracked(b) for b in chain.bks)
    assert not gc.is_tracked(store._last) and not gc.is_tracked(store._moved)


def test_an_id_queued_before_the_head_gets_a_bucket_of_its_own_first() -> None:
    chain = Chain({}, {}, {}, TTL)
    for cid, t in (("b", 5.0), ("c", 6.0)):
        chain.last[cid] = complex(t, t)
        chain.put(cid, chain.last[cid])
    walks.advance(chain, TTL, 5.0 + TTL + 0.5)  # b counted past due
    assert chain.past == 1
    chain.last["a"] = complex(1.0, 1.0)
    chain.put("a", chain.last["a"])  # (no store path does this: warned ids arrive in order of time)
    assert order(chain)[0] == [("a", 1.0)] and chain.past == 0  # counted afresh
    assert walks.advance(chain, TTL, 5.0 + TTL + 0.5) and chain.past == 2
    assert chain.first() == "a"


def test_the_bucket_list_is_compacted_as_the_head_moves_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(buckets, "CAP", 4)
    store, clock = bound(ttl=10.0)
    for i in range(400):
        clock.t = i / 10
        store.register(f"c{i}", None, None)
    chain = store._fresh
    assert len(chain.bks) == 100
    clock.t = 10.0 + 29.95  # c0 .. c299 past due
    assert store.count() == 100
    assert len(store.claim(1000).departures.states) == 300
    assert chain.head < 64 and len(chain.bks) < 100  # the freed front was cut off
    assert store.count() == 100 and store.get("c300") is not None
    clock.t = 60.0
    assert len(store.claim(1000).departures.states) == 100


def test_a_warned_conversation_moved_between_ttls_at_one_reading_is_counted_once() -> None:
    store, clock = MemoryStore(), SetClock()
    store.bind(Policy(ttl=10.0, max_age=12.0, warning_before=3.0), clock)
    store.register("d", None, None)
    clock.t = 9.0
    assert [s.id for s in store.claim(100).warned] == ["d"]  # on its warned chain now
    store.register("d", 4.0, None)  # to the 4 s queue, still warned ...
    store.register("d", 10.0, None)  # ... and back, at the same reading
    clock.t = 11.5
    assert store.count() == 1
    clock.t = 12.5  # past max_age
    assert store.count() == 0
    assert [s.id for s in store.claim(100).departures.states] == ["d"]
    assert store.count() == 0 and store.claim(100).warned == []


def test_a_count_walks_in_steps_and_removals_between_them_keep_it_right() -> None:
    store, clock = bound(ttl=10.0)
    for i in range(5 * CAP):
        clock.t = i / 1000
        store.register(f"c{i}", None, None)
    clock.t = 25.0  # every one past due
    n, done = store._count(25.0, 1000)  # a first step: some counted, not done
    assert not done and n == 5 * CAP - 1000
    store.end("c0")  # counted already
    store.end(f"c{5 * CAP - 1}")  # not yet
    n, done = store._count(25.0, 1 << 62)
    assert done and n == 0
    assert store.count() == 0
    assert len(store.claim(10 * CAP).departures.states) == 5 * CAP - 2
    assert store.count() == 0


def test_count_lets_other_threads_in_between_its_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    store, clock = bound(ttl=10.0)
    for i in range(3 * CAP):
        store.register(f"c{i}", None, None)
    clock.t = 20.0
    steps: list[bool] = []
    count = store._count

    def stepping(now: float, budget: int = 1 << 62) -> tuple[int, bool]:
        assert store._guard.write.locked()
        result = count(now, budget)
        steps.append(result[1])
        return result

    monkeypatch.setattr(store, "_count", stepping)
    monkeypatch.setattr("conversation_expiry._memory._COUNT_STEP", CAP // 2)
    assert store.count() == 0
    assert steps[-1] and len(steps) > 3 and not any(steps[:-1])


def test_ids_touched_at_one_reading_and_queued_again_later_do_not_pile_into_one_bucket() -> None:
    store, clock = bound(ttl=100.0)
    n = 10 * CAP
    for i in range(n):
        store.register(f"c{i}", None, None)
    clock.t = 10.0
    for i in range(n):  # every id touched at one reading: buckets opened, none filled
        store.touch(f"c{i}", True)
    clock.t = 11.0
    for i in range(2 * CAP):  # time moves on past that reading, buckets open after it
        store.register(f"later{i}", None, None)
    clock.t = 100.5  # the first buckets are due for review: every id is queued again at 10.0
    assert store.count() == n + 2 * CAP
    chain = store._fresh
    assert max(map(len, chain.bks)) <= 2 * CAP
    assert entries(chain) == n + 2 * CAP and chain.los == sorted(chain.los)
    clock.t = 110.5
    assert len(store.claim(2 * n).departures.states) == n and store.count() == 2 * CAP


def test_a_batch_of_a_bucket_or_more_ends_before_an_all_due_bucket_that_does_not_fit() -> None:
    store, clock = bound(ttl=10.0)
    for i in range(2 * CAP):  # two full buckets
        store.register(f"c{i}", None, None)
    assert len(store._fresh.bks) == 2
    clock.t = 20.0
    first = store.claim(10)  # smaller than a bucket: exactly that many, a part of the first
    second = store.claim(CAP)  # the rest of the first bucket, not a part of the second
    third = store.claim(CAP)
    assert [len(s.departures.states) for s in (first, second, third)] == [10, CAP - 10, CAP]
    assert second.more  # stopped short of the limit with more due
    assert not store.claim(CAP).departures.states
    assert [s.id for s in second.departures.states] == [f"c{i}" for i in range(10, CAP)]
    assert store.count() == 0


def test_a_batch_takes_the_due_front_of_the_bucket_a_sweep_ends_in() -> None:
    # Where a sweep ends, the last bucket is due only in part: its due front goes in the same
    # batch when it fits, not in a claim of its own.
    store, clock = bound(ttl=10.0)
    for i in range(CAP + 5):  # a full bucket, and five ids at the front of the next
        store.register(f"c{i}", None, None)
    clock.t = 5.0
    for i in range(CAP + 5, 2 * CAP):
        store.register(f"c{i}", None, None)
    assert len(store._fresh.bks) == 2
    clock.t = 10.5
    sweep = store.claim(CAP + 50)  # room for the due five, not for the second bucket whole
    assert [s.id for s in sweep.departures.states] == [f"c{i}" for i in range(CAP + 5)]
    assert store.count() == CAP - 5 and store._fresh.size == CAP - 5


def test_an_id_active_since_in_a_batch_after_an_all_due_batch_keeps_its_record() -> None:
    # After a batch with every id past due, the next one pops the records in bulk; one that
    # was active since must get its record back, stay live, and expire at its own deadline.
    store, clock = bound(ttl=10.0)
    for i in range(2 * CAP):
        store.register(f"c{i}", None, None)
    clock.t = 5.0
    touched = f"c{CAP + 5}"
    store.touch(touched, True)
    clock.t = 12.0
    assert len(store.claim(CAP).departures.states) == CAP
    assert store._fresh.clean
    second = [s.id for s in store.claim(CAP).departures.states]
    assert touched not in second and len(second) == CAP - 1
    assert not store._fresh.clean
    assert store._last[touched] == complex(5.0, 0.0) and store.is_live(touched)
    assert store.count() == 1
    clock.t = 15.5
    assert [s.id for s in store.claim(CAP).departures.states] == [touched]
    assert store.count() == 0 and not store._last


def test_an_id_queued_again_at_a_shared_reading_during_a_count_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by the plain model (tests/memory/test_model_based.py) with buckets of two: during len(),
    # an id active since at a reading that later buckets share was queued again into a bucket
    # the count had already walked, so it was never counted as past due.
    monkeypatch.setattr(buckets, "CAP", 2)
    clock = ManualClock()
    m = ConversationExpiryManager(10, 60, clock=clock, autostart=False, max_conversations=3)
    clock.advance(1.0)
    m.register_conversation("e")
    clock.advance(3.0)
    m.register_conversation("e")
    m.register_conversation("a")
    clock.advance(10.0)
    for step in ("c", "d", "c", "c"):  # c: registered, then touched twice at one reading
        m.ensure_conversation(step)
    clock.advance(3.0)
    assert len(m) == 2  # a is past due; this count walks the bucket c was queued in
    m.register_conversation("e")
    m.ensure_conversation("d")
    clock.advance(10.0)  # c (last active at 14) is past due at 27; d and e (17) are not
    assert sorted(cid for cid in "acde" if cid in m) == ["d", "e"]
    assert len(m) == 2


def test_an_id_ended_and_started_again_at_one_reading_is_counted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by the plain model with buckets of two: activity at one reading filled a bucket,
    # so the ended incarnation's entry was not in the current one; left behind, it looked like
    # an entry of the new incarnation (created at that same reading) and was counted twice.
    monkeypatch.setattr(buckets, "CAP", 2)
    clock = ManualClock()
    m = ConversationExpiryManager(10, 60, clock=clock, autostart=False)
    m.register_conversation("a")
    m.register_conversation("d")
    m.update_activity("d")  # a third activity at the reading: a new bucket opens
    assert m.end_conversation("a")
    m.register_conversation("a")
    m.update_activity("a")
    assert len(m) == 2
    clock.advance(15.0)
    assert len(m) == 0
    assert sorted(m.cleanup_expired()) == ["a", "d"]


def test_eviction_keeps_the_order_of_calls_when_empty_buckets_end_the_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by the capacity model with buckets of two: an id queued again at the latest
    # reading was compared with the (empty) last buckets only, and went behind ids active
    # after it.
    monkeypatch.setattr(buckets, "CAP", 2)
    left: list[str] = []
    m = ConversationExpiryManager(
        10, 60, clock=ManualClock(), autostart=False, max_conversations=3,
        on_expire=lambda s, r: left.append(s.id),
    )
    for cid in "aada":
        m.register_conversation(cid)
    m.update_activity("d")
    for cid in "bc":
        m.register_conversation(cid)
    assert left == ["a"]  # the least recently active of a, d, b
    for cid in "bbb":
        m.register_conversation(cid)
    m.register_conversation("a")
    assert left == ["a", "d"]  # d (active before c and b) goes, not c


def test_a_sweep_takes_in_bulk_an_id_touched_at_the_reading_it_was_queued_at() -> None:
    # The touch made a new record equal to the queued one: the same times, the same deadline.
    store, clock = bound(ttl=10.0)
    for i in range(CAP):
        store.register(f"c{i}", None, None)
    store.touch("c7", True)
    assert store._last["c7"] == complex(0.0, 0.0)
    assert store._last["c7"] is not store._fresh.bks[0]["c7"]
    clock.t = 11.0
    sweep = store.claim(CAP)
    assert [s.id for s in sweep.departures.states] == [f"c{i}" for i in range(CAP)]
    assert store._fresh.clean and store._fresh.size == 0 and not store._last
    assert store.count() == 0



def test_a_bucket_due_in_part_gives_up_its_due_front_only() -> None:
    # Five due at the front of a full bucket: within the probe (read before the rest), and
    # again with more due than the probe holds.
    for due in (5, walks._PROBE + 3):
        store, clock = bound(ttl=10.0)
        for i in range(CAP):
            if i == due:
                clock.t = 5.0
            store.register(f"c{i}", None, None)
        assert len(store._fresh.bks) == 1
        clock.t = 10.5
        sweep = store.claim(CAP)
        assert [s.id for s in sweep.departures.states] == [f"c{i}" for i in range(due)]
        assert store.count() == CAP - due and store._fresh.size == CAP - due
        clock.t = 15.5
        assert len(store.claim(CAP).departures.states) == CAP - due
        assert store.count() == 0
