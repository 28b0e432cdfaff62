"""The ConversationStore contract, for every store implementation.

A store never reads a clock: every call takes ``now`` (monotonic seconds) and, where it builds
snapshots, ``offset`` (added to get POSIX seconds). So these tests drive a store with plain
numbers, without a manager. To add a store (say Redis), append a factory to ``STORE_FACTORIES``:
a zero-argument callable returning a fresh, empty, unconfigured store. If the store has a
``close()`` method it is called after each test.

Times are multiples of 0.5 s so every expected timestamp is exact.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timezone

import pytest

from conversation_expiry import (
    ConversationExpiredError,
    ConversationNotFoundError,
    ConversationState,
    ExpiryReason,
    MemoryStore,
    Policy,
)

STORE_FACTORIES = [
    pytest.param(MemoryStore, id="memory"),
]

OFFSET = 1_700_000_000.0
TTL = 10.0
EXPIRED, MAX_AGE = ExpiryReason.EXPIRED, ExpiryReason.MAX_AGE
ENDED, EVICTED, SHUTDOWN = ExpiryReason.ENDED, ExpiryReason.EVICTED, ExpiryReason.SHUTDOWN


def wall(seconds: float) -> datetime:
    return datetime.fromtimestamp(OFFSET + seconds, timezone.utc)


def state(cid, created, last, expires, active=True, warned=False) -> ConversationState:
    return ConversationState(cid, wall(created), wall(last), wall(expires), active, warned)


def left(removed) -> list[tuple[str, ExpiryReason]]:
    """(id, reason) of each conversation in a ``Removed``, checking its shape on the way."""
    assert len(removed.states) == len(removed.reasons)
    assert all(not s.active for s in removed.states)
    assert set(removed.cleanups) <= {s.id for s in removed.states}
    return [(s.id, r) for s, r in zip(removed.states, removed.reasons, strict=True)]


@pytest.fixture(params=STORE_FACTORIES)
def new_store(request):
    made = []

    def factory(**policy):
        store = request.param()
        store.configure(Policy(ttl=policy.pop("ttl", TTL), **policy))
        made.append(store)
        return store

    yield factory
    for store in made:
        close = getattr(store, "close", None)
        if close is not None:
            close()


@pytest.fixture
def store(new_store):
    return new_store()


# -- register ---------------------------------------------------------------------------------


def test_register_starts_a_conversation(store):
    s, removed = store.register("a", 1.0, OFFSET, None)
    assert s == state("a", 1, 1, 11)
    assert left(removed) == [] and removed.cleanups == {}
    assert store.get("a", 1.0, OFFSET) == s
    assert store.is_live("a", 1.0) and store.count(1.0) == 1


def test_register_with_a_ttl(store):
    s, _ = store.register("a", 0.0, OFFSET, 2.5)
    assert s.expires_at == wall(2.5)
    assert store.is_live("a", 2.5) and not store.is_live("a", 3.0)


def test_register_of_a_live_conversation_counts_as_activity(store):
    store.register("a", 0.0, OFFSET, None)
    fn = object()
    store.add_cleanup("a", 1.0, fn)
    s, removed = store.register("a", 10.0, OFFSET, None)  # exactly at its deadline: live
    assert s == state("a", 0, 10, 20) and left(removed) == []
    assert store.end("a", 10.0, OFFSET).cleanups == {"a": [fn]}


def test_register_of_a_live_conversation_with_a_ttl_replaces_it(store):
    store.register("a", 0.0, OFFSET, 30.0)
    s, _ = store.register("a", 5.0, OFFSET, 2.0)
    assert s == state("a", 0, 5, 7)
    assert store.touch("a", 6.0, OFFSET, True) == state("a", 0, 6, 8)


def test_register_of_a_past_due_conversation_starts_afresh(store):
    store.register("a", 0.0, OFFSET, None)
    fn = object()
    store.add_cleanup("a", 0.0, fn)
    s, removed = store.register("a", 10.5, OFFSET, None)
    assert s == state("a", 10.5, 10.5, 20.5)
    assert left(removed) == [("a", EXPIRED)]
    assert removed.states[0] == state("a", 0, 0, 10, active=False)
    assert removed.cleanups == {"a": [fn]}
    assert store.end("a", 11.0, OFFSET).cleanups == {}  # the old cleanups are gone


def test_a_stale_reading_never_moves_activity_back(store):
    """Threads read the clock before taking the store's lock, so readings arrive out of order."""
    store.register("a", 0.0, OFFSET, None)
    assert store.touch("a", 6.0, OFFSET, True).expires_at == wall(16)
    assert store.touch("a", 5.0, OFFSET, True).expires_at == wall(16)
    assert store.register("a", 4.0, OFFSET, None)[0].expires_at == wall(16)
    assert store.is_live("a", 16.0)


# -- touch, get, is_live, count ---------------------------------------------------------------


def test_touch(store):
    store.register("a", 0.0, OFFSET, None)
    assert store.touch("a", 4.0, OFFSET, True) == state("a", 0, 4, 14)
    assert store.touch("a", 6.0, OFFSET, False) == state("a", 0, 4, 14)
    assert store.touch("a", 14.0, OFFSET, False) == state("a", 0, 4, 14)  # exactly at deadline
    with pytest.raises(ConversationExpiredError):
        store.touch("a", 14.5, OFFSET, True)
    with pytest.raises(ConversationExpiredError):  # never revived
        store.touch("a", 14.5, OFFSET, False)
    with pytest.raises(ConversationNotFoundError) as info:
        store.touch("b", 0.0, OFFSET, True)
    assert not isinstance(info.value, ConversationExpiredError)


def test_views_of_live_and_past_due_conversations(store):
    store.register("a", 0.0, OFFSET, None)
    store.register("b", 5.0, OFFSET, None)
    store.register("c", 0.0, OFFSET, 30.0)
    assert store.count(10.0) == 3
    assert store.get("a", 10.5, OFFSET) is None and not store.is_live("a", 10.5)
    assert store.get("b", 10.5, OFFSET) == state("b", 5, 5, 15)
    assert store.count(10.5) == 2
    assert store.count(15.5) == 1
    assert store.get("zz", 0.0, OFFSET) is None and not store.is_live("zz", 0.0)


def test_views_with_max_age(new_store):
    store = new_store(max_age=12.0)
    store.register("a", 0.0, OFFSET, None)
    store.register("b", 4.0, OFFSET, None)
    assert store.touch("a", 8.0, OFFSET, True) == state("a", 0, 8, 12)
    assert store.is_live("a", 12.0) and store.count(12.0) == 2
    assert not store.is_live("a", 12.5) and store.count(12.5) == 1
    with pytest.raises(ConversationExpiredError):
        store.touch("a", 12.5, OFFSET, True)


# -- add_cleanup and end ----------------------------------------------------------------------


def test_add_cleanup(store):
    store.register("a", 0.0, OFFSET, None)
    f1, f2 = object(), object()
    store.add_cleanup("a", 1.0, f1)
    store.add_cleanup("a", 10.0, f2)
    with pytest.raises(ConversationExpiredError):
        store.add_cleanup("a", 10.5, object())
    with pytest.raises(ConversationNotFoundError) as info:
        store.add_cleanup("b", 0.0, object())
    assert not isinstance(info.value, ConversationExpiredError)
    removed = store.end("a", 10.5, OFFSET)
    assert left(removed) == [("a", EXPIRED)]
    assert removed.cleanups == {"a": [f1, f2]}  # in the order attached


def test_end(store):
    store.register("a", 0.0, OFFSET, None)
    store.register("b", 0.0, OFFSET, None)
    removed = store.end("a", 3.0, OFFSET)
    assert left(removed) == [("a", ENDED)] and removed.cleanups == {}
    assert removed.states[0] == state("a", 0, 0, 10, active=False)
    assert left(store.end("a", 3.0, OFFSET)) == []  # exactly once
    assert left(store.end("zz", 3.0, OFFSET)) == []
    assert left(store.end("b", 10.5, OFFSET)) == [("b", EXPIRED)]
    assert store.count(3.0) == 0


def test_end_after_max_age(new_store):
    store = new_store(max_age=5.0)
    store.register("a", 0.0, OFFSET, None)
    store.touch("a", 4.0, OFFSET, True)
    assert left(store.end("a", 5.5, OFFSET)) == [("a", MAX_AGE)]


# -- collect ------------------------------------------------------------------------------------


def collect_all(store, now, limit):
    """Collect in batches until the store says nothing remains; returns (removed, warned)."""
    removed, warned = [], []
    for _ in range(1000):
        batch, w, more = store.collect(now, OFFSET, limit)
        ids = left(batch)
        assert len(ids) + len(w) <= limit
        removed += ids
        warned += w
        if not more:
            return removed, warned
    raise AssertionError("collect never said it was done")


def test_collect_in_batches(store):
    for i in range(25):
        store.register(f"old{i}", float(i % 5) / 2, OFFSET, None)
    for i in range(10):
        store.register(f"new{i}", 5.0, OFFSET, None)
    removed, warned = collect_all(store, 12.5, limit=7)
    assert sorted(removed) == sorted((f"old{i}", EXPIRED) for i in range(25))
    assert warned == []
    assert store.count(12.5) == 10
    assert all(store.is_live(f"new{i}", 12.5) for i in range(10))
    assert collect_all(store, 12.5, limit=7) == ([], [])


def test_collect_is_strictly_after_the_deadline(store):
    store.register("a", 0.0, OFFSET, None)
    assert collect_all(store, 10.0, limit=5) == ([], [])
    batch, _, _ = store.collect(10.5, OFFSET, 5)
    assert batch.states == [state("a", 0, 0, 10, active=False)]
    assert batch.reasons == [EXPIRED]


def test_collect_hands_over_the_cleanups(store):
    store.register("a", 0.0, OFFSET, None)
    store.register("b", 0.0, OFFSET, None)
    f = object()
    store.add_cleanup("a", 0.0, f)
    batch, _, _ = store.collect(11.0, OFFSET, 10)
    assert sorted(left(batch)) == [("a", EXPIRED), ("b", EXPIRED)]
    assert batch.cleanups == {"a": [f]}


def test_collect_with_per_conversation_ttls_and_max_age(new_store):
    store = new_store(max_age=20.0)
    store.register("short", 0.0, OFFSET, 2.0)
    store.register("long", 0.0, OFFSET, 50.0)
    store.register("plain", 0.0, OFFSET, None)
    assert collect_all(store, 2.5, limit=2) == ([("short", EXPIRED)], [])
    store.touch("long", 15.0, OFFSET, True)
    assert collect_all(store, 15.0, limit=2) == ([("plain", EXPIRED)], [])
    assert store.count(20.0) == 1
    assert collect_all(store, 20.5, limit=2) == ([("long", MAX_AGE)], [])
    assert store.count(20.5) == 0


# -- warnings -----------------------------------------------------------------------------------


def test_warnings(new_store):
    store = new_store(warning_before=3.0)
    assert store.next_warning_at() is None
    store.register("a", 0.0, OFFSET, None)
    store.register("b", 2.0, OFFSET, None)
    assert store.next_warning_at() == 7.0
    assert collect_all(store, 6.5, limit=5) == ([], [])
    _, warned = collect_all(store, 7.0, limit=5)
    assert warned == [state("a", 0, 0, 10, warned=True)]
    assert store.get("a", 7.0, OFFSET).warning_sent
    assert store.next_warning_at() == 9.0
    assert collect_all(store, 8.0, limit=5) == ([], [])  # once per idle period
    assert store.touch("a", 8.0, OFFSET, False).warning_sent  # no extension: still warned
    assert not store.touch("a", 8.5, OFFSET, True).warning_sent  # activity resets it
    _, warned = collect_all(store, 9.0, limit=5)
    assert warned == [state("b", 2, 2, 12, warned=True)]
    assert store.next_warning_at() == 15.5
    removed, warned = collect_all(store, 15.5, limit=5)
    assert removed == [("b", EXPIRED)] and warned == [state("a", 0, 8.5, 18.5, warned=True)]
    assert store.next_warning_at() is None


def test_warnings_in_batches(new_store):
    store = new_store(warning_before=3.0)
    for i in range(10):
        store.register(f"c{i}", 0.0, OFFSET, None)
    _, warned = collect_all(store, 7.0, limit=4)
    assert sorted(s.id for s in warned) == [f"c{i}" for i in range(10)]


def test_warnings_for_max_age_and_per_conversation_ttls(new_store):
    store = new_store(warning_before=3.0, max_age=12.0)
    store.register("aged", 0.0, OFFSET, None)
    store.register("long", 0.0, OFFSET, 40.0)
    store.touch("aged", 6.0, OFFSET, True)
    assert store.next_warning_at() == 9.0
    _, warned = collect_all(store, 9.0, limit=5)
    assert sorted(s.id for s in warned) == ["aged", "long"]  # both capped at 12
    assert store.touch("aged", 10.0, OFFSET, True).warning_sent  # the cap cannot move
    assert collect_all(store, 12.5, limit=5)[0] == [("aged", MAX_AGE), ("long", MAX_AGE)]


def test_no_warnings_unless_configured(store):
    store.register("a", 0.0, OFFSET, None)
    assert store.next_warning_at() is None
    assert collect_all(store, 9.5, limit=5) == ([], [])
    assert not store.get("a", 9.5, OFFSET).warning_sent


# -- capacity -----------------------------------------------------------------------------------


def test_capacity_evicts_the_least_recently_active(new_store):
    store = new_store(max_conversations=3)
    for i, cid in enumerate("abc"):
        store.register(cid, float(i), OFFSET, None)
    f = object()
    store.add_cleanup("a", 3.0, f)
    store.touch("b", 3.0, OFFSET, True)
    assert left(store.register("a", 4.0, OFFSET, None)[1]) == []  # live: no room needed
    s, removed = store.register("d", 5.0, OFFSET, None)
    assert s == state("d", 5, 5, 15)
    assert left(removed) == [("c", EVICTED)]
    assert removed.states[0] == state("c", 2, 2, 12, active=False)
    assert store.count(5.0) == 3
    assert left(store.register("e", 6.0, OFFSET, None)[1]) == [("b", EVICTED)]
    assert left(store.register("f", 7.0, OFFSET, None)[1]) == [("a", EVICTED)]


def test_capacity_takes_a_past_due_conversation_first(new_store):
    store = new_store(max_conversations=3)
    store.register("a", 0.0, OFFSET, None)  # least recently active, live until 10
    store.register("b", 1.0, OFFSET, 2.0)  # past due at 3
    store.register("c", 2.0, OFFSET, None)
    assert store.count(5.0) == 2
    assert left(store.register("d", 5.0, OFFSET, None)[1]) == [("b", EXPIRED)]
    assert store.count(5.0) == 3


def test_capacity_takes_a_conversation_past_its_max_age_first(new_store):
    store = new_store(max_conversations=2, max_age=8.0)
    store.register("old", 0.0, OFFSET, None)
    store.register("idle", 3.0, OFFSET, None)  # least recently active from 7, live until 11
    store.touch("old", 7.0, OFFSET, True)  # capped at 8
    assert store.count(8.5) == 1
    assert left(store.register("new", 8.5, OFFSET, None)[1]) == [("old", MAX_AGE)]
    assert store.is_live("idle", 8.5) and store.count(8.5) == 2


# -- drain ----------------------------------------------------------------------------------------


def test_drain_in_batches(new_store):
    store = new_store(max_age=6.0)
    for i in range(9):
        store.register(f"live{i}", 5.0, OFFSET, None)
    store.register("idle", 0.0, OFFSET, 1.0)
    store.register("aged", 0.0, OFFSET, None)
    f = object()
    store.add_cleanup("live3", 5.0, f)
    seen, cleanups = [], {}
    for _ in range(100):
        removed = store.drain(6.5, OFFSET, 4)
        batch = left(removed)
        assert len(batch) <= 4
        if not batch:
            break
        seen += batch
        cleanups.update(removed.cleanups)
    expected = [(f"live{i}", SHUTDOWN) for i in range(9)] + [("idle", EXPIRED), ("aged", MAX_AGE)]
    assert sorted(seen) == sorted(expected)
    assert cleanups == {"live3": [f]}
    assert store.count(6.5) == 0 and store.get("live0", 6.5, OFFSET) is None


# -- concurrency and fork -----------------------------------------------------------------------


def test_each_conversation_leaves_exactly_once_whoever_removes_it(store):
    ids = [f"c{i}" for i in range(800)]
    for i, cid in enumerate(ids):
        store.register(cid, float(i % 2), OFFSET, None)  # half past due at 10.5
    out: list = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def keep(removed):
        with lock:
            out.extend(left(removed))

    def ender():
        start.wait()
        for cid in reversed(ids):
            keep(store.end(cid, 10.5, OFFSET))

    def collector():
        start.wait()
        while True:
            removed, _, more = store.collect(10.5, OFFSET, 16)
            keep(removed)
            if not more:
                return

    def drainer():
        start.wait()
        while left(removed := store.drain(10.5, OFFSET, 16)):
            keep(removed)

    threads = [threading.Thread(target=f) for f in (ender, collector, drainer, ender)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    counts = Counter(cid for cid, _ in out)
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    for cid, reason in out:
        assert reason in ({EXPIRED} if int(cid[1:]) % 2 == 0 else {ENDED, SHUTDOWN})


def test_reinit_after_fork_keeps_the_data(store):
    store.register("a", 0.0, OFFSET, None)
    store.reinit_after_fork()
    assert store.get("a", 1.0, OFFSET) == state("a", 0, 0, 10)
    store.touch("a", 2.0, OFFSET, True)
    assert store.count(2.0) == 1


# -- ensure: touch or start, atomically -------------------------------------------------------


def test_ensure_starts_an_unknown_conversation(store):
    s, fresh, removed = store.ensure("a", 1.0, OFFSET, True)
    assert fresh
    assert s == state("a", 1.0, 1.0, 11.0)
    assert left(removed) == []


def test_ensure_touches_a_live_conversation(store):
    store.register("a", 0.0, OFFSET, None)
    s, fresh, _ = store.ensure("a", 4.0, OFFSET, True)
    assert not fresh
    assert s == state("a", 0.0, 4.0, 14.0)


def test_ensure_without_extend_leaves_the_deadline(store):
    store.register("a", 0.0, OFFSET, None)
    s, fresh, _ = store.ensure("a", 4.0, OFFSET, False)
    assert not fresh
    assert s.expires_at == wall(10)


def test_ensure_starts_afresh_over_a_past_due_conversation(store):
    store.register("a", 0.0, OFFSET, None)
    store.add_cleanup("a", 1.0, lambda: None)
    s, fresh, removed = store.ensure("a", 10.5, OFFSET, True)
    assert fresh
    assert s.created_at == wall(10.5)
    assert left(removed) == [("a", ExpiryReason.EXPIRED)]
    assert list(removed.cleanups) == ["a"]


def test_contended_is_false_without_waiters_and_resets(store):
    store.register("a", 0.0, OFFSET, None)
    assert store.contended() is False
    assert store.contended() is False
