"""The ConversationStore contract, for every store implementation.

Each store is bound to a :class:`SetClock`, a clock the test sets to any reading (the Redis store
is then driven by it instead of the server's clock), so these tests say "at time t" with plain
numbers and run without a manager. Stores come from ``STORE_FACTORIES``: the in-memory store and,
where ``redis-server`` is installed, Redis on one node and on a 3-node cluster (``redis_servers``).

Times are multiples of 0.5 s so every expected timestamp is exact.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
from redis_servers import redis_store_factories
from support import SetClock

from conversation_expiry import (
    ClockError,
    ConversationExpiredError,
    ConversationNotFoundError,
    ConversationState,
    ExpiryReason,
    MemoryStore,
    Policy,
)
from conversation_expiry._state import encode_metadata


@contextmanager
def memory_stores() -> Iterator[type[MemoryStore]]:
    yield MemoryStore


# Context managers, each giving a factory of fresh, empty, unbound stores (closed at its end).
STORE_FACTORIES = [pytest.param(memory_stores, id="memory"), *redis_store_factories()]

OFFSET = SetClock.OFFSET
TTL = 10.0
EXPIRED, MAX_AGE = ExpiryReason.EXPIRED, ExpiryReason.MAX_AGE
ENDED, EVICTED, SHUTDOWN = ExpiryReason.ENDED, ExpiryReason.EVICTED, ExpiryReason.SHUTDOWN


class Bound:
    """A store under test with its clock: ``s.at(t).touch(...)`` calls the store at time t."""

    def __init__(self, store, clock: SetClock) -> None:
        self.store = store
        self.clock = clock

    def at(self, t: float):
        self.clock.t = float(t)
        return self.store


def wall(seconds: float) -> datetime:
    return datetime.fromtimestamp(OFFSET + seconds, timezone.utc)


def state(cid, created, last, expires, active=True, warned=False, meta=None) -> ConversationState:
    return ConversationState(cid, wall(created), wall(last), wall(expires), active, warned, meta)


def left(departures) -> list[tuple[str, ExpiryReason]]:
    """(id, reason) of each conversation in a ``Departures``, checking its shape on the way."""
    assert len(departures.states) == len(departures.reasons)
    assert all(not s.active for s in departures.states)
    assert set(departures.tokens) <= {s.id for s in departures.states}
    return [(s.id, r) for s, r in zip(departures.states, departures.reasons, strict=True)]


def done(store, departures) -> list[tuple[str, ExpiryReason]]:
    """Acknowledge ``departures`` as the manager would; returns their (id, reason)."""
    out = left(departures)
    store.ack(departures)
    return out


@pytest.fixture(params=STORE_FACTORIES)
def new_store(request):
    with request.param() as make:

        def factory(**policy) -> Bound:
            store = make()
            clock = SetClock()
            store.bind(Policy(ttl=policy.pop("ttl", TTL), **policy), clock)
            return Bound(store, clock)

        yield factory


@pytest.fixture
def s(new_store) -> Bound:
    return new_store()


# -- register ---------------------------------------------------------------------------------


def test_register_starts_a_conversation(s):
    st, removed = s.at(1).register("a", None, None)
    assert st == state("a", 1, 1, 11)
    assert left(removed) == []
    assert s.at(1).get("a") == st
    assert s.at(1).is_live("a") and s.at(1).count() == 1


def test_register_with_a_ttl(s):
    st, _ = s.at(0).register("a", 2.5, None)
    assert st.expires_at == wall(2.5)
    assert s.at(2.5).is_live("a") and not s.at(3).is_live("a")


def test_register_of_a_live_conversation_counts_as_activity_and_keeps_its_incarnation(s):
    s.at(0).register("a", None, None)
    token = s.at(1).hold("a")
    st, removed = s.at(10).register("a", None, None)  # exactly at its deadline: live
    assert st == state("a", 0, 10, 20) and left(removed) == []
    assert s.at(10).hold("a") == token
    assert s.at(10).end("a").tokens == {"a": token}


def test_register_of_a_live_conversation_with_a_ttl_replaces_it(s):
    s.at(0).register("a", 30.0, None)
    st, _ = s.at(5).register("a", 2.0, None)
    assert st == state("a", 0, 5, 7)
    assert s.at(6).touch("a", True) == state("a", 0, 6, 8)


def test_register_of_a_past_due_conversation_starts_a_new_incarnation(s):
    s.at(0).register("a", None, None)
    token = s.at(0).hold("a")
    st, removed = s.at(10.5).register("a", None, None)
    assert st == state("a", 10.5, 10.5, 20.5)
    assert done(s.store, removed) == [("a", EXPIRED)]
    assert removed.states[0] == state("a", 0, 0, 10, active=False)
    assert removed.tokens == {"a": token}
    assert s.at(11).hold("a") != token
    assert s.at(11).end("a").tokens != {"a": token}


def test_metadata_is_kept_replaced_and_returned(s):
    meta = encode_metadata({"user": "u1", "n": [1, 2]})
    st, _ = s.at(0).register("a", None, meta)
    assert st.metadata == {"n": [1, 2], "user": "u1"}
    assert s.at(1).register("a", None, None)[0].metadata == {"n": [1, 2], "user": "u1"}
    assert s.at(2).touch("a", True).metadata == {"n": [1, 2], "user": "u1"}
    assert s.at(3).register("a", None, encode_metadata({"v": 2}))[0].metadata == {"v": 2}
    assert s.at(3).get("a").metadata == {"v": 2}
    assert s.at(4).end("a").states[0].metadata == {"v": 2}
    assert s.at(5).register("a", None, None)[0].metadata == {}  # a new incarnation


def test_metadata_reaches_the_states_a_sweep_claims(s):
    s.at(0).register("a", None, encode_metadata({"k": "v"}))
    s.at(0).register("b", None, None)
    sweep = s.at(10.5).claim(10)
    by_id = {st.id: st for st in sweep.departures.states}
    assert by_id["a"].metadata == {"k": "v"} and by_id["b"].metadata == {}
    s.store.ack(sweep.departures)


# -- store time --------------------------------------------------------------------------------


def test_a_stale_reading_never_moves_activity_back(s):
    """Readings can arrive out of order (a thread preempted after it read the clock)."""
    s.at(0).register("a", None, None)
    assert s.at(6).touch("a", True).expires_at == wall(16)
    assert s.at(5).touch("a", True).expires_at == wall(16)
    assert s.at(4).register("a", None, None)[0].expires_at == wall(16)
    assert s.at(16).is_live("a")


def test_a_stale_reading_cannot_revive_what_was_seen_expired(s):
    s.at(0).register("a", None, None)
    assert not s.at(10.5).is_live("a")
    with pytest.raises(ConversationExpiredError):
        s.at(9).touch("a", True)  # read before 10.5, applied after
    assert s.at(9).get("a") is None
    assert s.at(9).count() == 0
    with pytest.raises(ConversationExpiredError):
        s.at(9).hold("a")
    assert done(s.store, s.at(9).end("a")) == [("a", EXPIRED)]


def test_a_stale_registration_cannot_keep_a_seen_expired_incarnation(s):
    s.at(0).register("a", None, None)
    token = s.at(0).hold("a")
    assert s.at(10.5).count() == 0
    st, removed = s.at(3).register("a", None, None)
    assert done(s.store, removed) == [("a", EXPIRED)] and removed.tokens == {"a": token}
    assert st.created_at == wall(10.5)


@pytest.mark.parametrize("reading", [float("nan"), float("inf"), "soon", None])
def test_a_reading_that_is_not_a_finite_number_fails_that_call_alone(s, reading):
    s.at(0).register("a", None, None)
    s.clock.t = reading
    with pytest.raises(ClockError):
        s.store.touch("a", True)
    with pytest.raises(ClockError):
        s.store.register("b", None, None)
    assert s.at(1).touch("a", True) == state("a", 0, 1, 11)
    assert s.at(1).get("b") is None and s.at(1).count() == 1
    assert done(s.store, s.at(11.5).claim(10).departures) == [("a", EXPIRED)]


# -- touch, get, is_live, count ---------------------------------------------------------------


def test_touch(s):
    s.at(0).register("a", None, None)
    assert s.at(4).touch("a", True) == state("a", 0, 4, 14)
    assert s.at(6).touch("a", False) == state("a", 0, 4, 14)
    assert s.at(14).touch("a", False) == state("a", 0, 4, 14)  # exactly at its deadline
    with pytest.raises(ConversationExpiredError):
        s.at(14.5).touch("a", True)
    with pytest.raises(ConversationExpiredError):  # never revived
        s.at(14.5).touch("a", False)
    with pytest.raises(ConversationNotFoundError) as info:
        s.at(14.5).touch("b", True)
    assert not isinstance(info.value, ConversationExpiredError)


def test_views_of_live_and_past_due_conversations(s):
    s.at(0).register("a", None, None)
    s.at(5).register("b", None, None)
    s.at(5).register("c", 25.0, None)
    assert s.at(10).count() == 3
    assert s.at(10.5).get("a") is None and not s.at(10.5).is_live("a")
    assert s.at(10.5).get("b") == state("b", 5, 5, 15)
    assert s.at(10.5).count() == 2
    assert s.at(15.5).count() == 1
    assert s.at(15.5).get("zz") is None and not s.at(15.5).is_live("zz")


def test_count_follows_ends_and_sweeps_of_past_due_conversations(s):
    for i in range(6):
        s.at(i).register(f"c{i}", None, None)
    assert s.at(13.5).count() == 2  # c0..c3 past due
    assert done(s.store, s.at(13.5).end("c1")) == [("c1", EXPIRED)]
    assert s.at(13.5).count() == 2
    assert done(s.store, s.at(13.5).claim(2).departures) == [("c0", EXPIRED), ("c2", EXPIRED)]
    assert s.at(13.5).count() == 2
    assert s.at(14.5).count() == 1
    s.at(14.5).register("c9", None, None)
    assert s.at(14.5).count() == 2
    assert done(s.store, s.at(16).claim(10).departures) == [
        ("c3", EXPIRED), ("c4", EXPIRED), ("c5", EXPIRED)
    ]
    assert s.at(16).count() == 1


def test_views_with_max_age(new_store):
    s = new_store(max_age=12.0)
    s.at(0).register("a", None, None)
    s.at(4).register("b", None, None)
    assert s.at(8).touch("a", True) == state("a", 0, 8, 12)
    assert s.at(12).is_live("a") and s.at(12).count() == 2
    assert not s.at(12.5).is_live("a") and s.at(12.5).count() == 1
    with pytest.raises(ConversationExpiredError):
        s.at(12.5).touch("a", True)


# -- hold and end -------------------------------------------------------------------------------


def test_hold(s):
    s.at(0).register("a", None, None)
    token = s.at(1).hold("a")
    assert isinstance(token, int)
    assert s.at(10).hold("a") == token
    with pytest.raises(ConversationExpiredError):
        s.at(10.5).hold("a")
    with pytest.raises(ConversationNotFoundError) as info:
        s.at(10.5).hold("b")
    assert not isinstance(info.value, ConversationExpiredError)
    removed = s.at(10.5).end("a")
    assert done(s.store, removed) == [("a", EXPIRED)]
    assert removed.tokens == {"a": token}


def test_incarnations_differ_across_ids_and_restarts(s):
    s.at(0).register("a", None, None)
    s.at(0).register("b", None, None)
    first = s.at(0).hold("a")
    assert s.at(0).hold("b") != first
    s.store.ack(s.at(0).end("a"))
    s.at(0).register("a", None, None)
    assert s.at(0).hold("a") != first


def test_end(s):
    s.at(0).register("a", None, None)
    s.at(0).register("b", None, None)
    removed = s.at(3).end("a")
    assert done(s.store, removed) == [("a", ENDED)] and removed.tokens == {}
    assert removed.states[0] == state("a", 0, 0, 10, active=False)
    assert left(s.at(3).end("a")) == []  # exactly once
    assert left(s.at(3).end("zz")) == []
    assert done(s.store, s.at(10.5).end("b")) == [("b", EXPIRED)]
    assert s.at(10.5).count() == 0


def test_a_claimed_conversation_is_gone_before_it_is_acknowledged(s):
    s.at(0).register("a", None, None)
    token = s.at(0).hold("a")
    claimed = s.at(1).end("a")
    assert left(claimed) == [("a", ENDED)]
    assert not s.at(1).is_live("a") and s.at(1).get("a") is None and s.at(1).count() == 0
    assert left(s.at(1).end("a")) == []
    with pytest.raises(ConversationNotFoundError):
        s.at(1).touch("a", True)
    st, removed = s.at(2).register("a", None, None)  # a new incarnation beside the claimed one
    assert st.created_at == wall(2) and left(removed) == []
    assert s.at(2).hold("a") != token
    s.store.ack(claimed)
    s.store.ack(claimed)  # twice: no effect
    assert s.at(3).get("a") == state("a", 2, 2, 12)


def test_end_after_max_age(new_store):
    s = new_store(max_age=5.0)
    s.at(0).register("a", None, None)
    s.at(4).touch("a", True)
    assert done(s.store, s.at(5.5).end("a")) == [("a", MAX_AGE)]


# -- claim --------------------------------------------------------------------------------------


def claim_all(s: Bound, t: float, limit: int):
    """Claim in batches until the store says nothing remains; returns (departed, warned)."""
    departed, warned = [], []
    for _ in range(1000):
        sweep = s.at(t).claim(limit)
        ids = done(s.store, sweep.departures)
        assert len(ids) + len(sweep.warned) <= limit
        departed += ids
        warned += sweep.warned
        if not sweep.more:
            return departed, warned
    raise AssertionError("claim never said it was done")


def test_claim_in_batches(s):
    for i in sorted(range(25), key=lambda i: i % 5):  # store time never runs back
        s.at(float(i % 5) / 2).register(f"old{i}", None, None)
    for i in range(10):
        s.at(5).register(f"new{i}", None, None)
    departed, warned = claim_all(s, 12.5, limit=7)
    assert sorted(departed) == sorted((f"old{i}", EXPIRED) for i in range(25))
    assert warned == []
    assert s.at(12.5).count() == 10
    assert all(s.at(12.5).is_live(f"new{i}") for i in range(10))
    assert claim_all(s, 12.5, limit=7) == ([], [])


def test_claim_is_strictly_after_the_deadline(s):
    s.at(0).register("a", None, None)
    assert claim_all(s, 10, limit=5) == ([], [])
    sweep = s.at(10.5).claim(5)
    assert sweep.departures.states == [state("a", 0, 0, 10, active=False)]
    assert sweep.departures.reasons == [EXPIRED]
    assert sweep.departures.now == pytest.approx(10.5 + (OFFSET if s.store.shared else 0))
    s.store.ack(sweep.departures)


def test_claim_names_the_incarnations_of_held_conversations(s):
    s.at(0).register("a", None, None)
    s.at(0).register("b", None, None)
    token = s.at(0).hold("a")
    sweep = s.at(11).claim(10)
    assert sorted(done(s.store, sweep.departures)) == [("a", EXPIRED), ("b", EXPIRED)]
    assert sweep.departures.tokens == {"a": token}


def test_claim_with_per_conversation_ttls_and_max_age(new_store):
    s = new_store(max_age=20.0)
    s.at(0).register("short", 2.0, None)
    s.at(0).register("long", 50.0, None)
    s.at(0).register("plain", None, None)
    assert claim_all(s, 2.5, limit=2) == ([("short", EXPIRED)], [])
    s.at(15).touch("long", True)
    assert claim_all(s, 15, limit=2) == ([("plain", EXPIRED)], [])
    assert s.at(20).count() == 1
    assert claim_all(s, 20.5, limit=2) == ([("long", MAX_AGE)], [])
    assert s.at(20.5).count() == 0


# -- warnings -----------------------------------------------------------------------------------


def test_warnings(new_store):
    s = new_store(warning_before=3.0)
    assert s.at(0).claim(5).next_warning_in is None
    s.at(0).register("a", None, None)
    s.at(2).register("b", None, None)
    assert s.at(2).claim(5).next_warning_in == 5.0
    assert claim_all(s, 6.5, limit=5) == ([], [])
    _, warned = claim_all(s, 7, limit=5)
    assert warned == [state("a", 0, 0, 10, warned=True)]
    assert s.at(7).get("a").warning_sent
    assert s.at(7).claim(5).next_warning_in == 2.0
    assert claim_all(s, 8, limit=5) == ([], [])  # once per idle period
    assert s.at(8).touch("a", False).warning_sent  # no extension: still warned
    assert not s.at(8.5).touch("a", True).warning_sent  # activity resets it
    _, warned = claim_all(s, 9, limit=5)
    assert warned == [state("b", 2, 2, 12, warned=True)]
    assert s.at(9).claim(5).next_warning_in == 6.5
    departed, warned = claim_all(s, 15.5, limit=5)
    assert departed == [("b", EXPIRED)] and warned == [state("a", 0, 8.5, 18.5, warned=True)]
    assert s.at(15.5).claim(5).next_warning_in is None


def test_warnings_in_batches(new_store):
    s = new_store(warning_before=3.0)
    for i in range(10):
        s.at(0).register(f"c{i}", None, None)
    _, warned = claim_all(s, 7, limit=4)
    assert sorted(st.id for st in warned) == [f"c{i}" for i in range(10)]


def test_warnings_for_max_age_and_per_conversation_ttls(new_store):
    s = new_store(warning_before=3.0, max_age=12.0)
    s.at(0).register("aged", None, None)
    s.at(0).register("long", 40.0, None)
    s.at(6).touch("aged", True)
    assert s.at(6).claim(5).next_warning_in == 3.0
    _, warned = claim_all(s, 9, limit=5)
    assert sorted(st.id for st in warned) == ["aged", "long"]  # both capped at 12
    assert s.at(10).touch("aged", True).warning_sent  # the cap cannot move
    assert sorted(claim_all(s, 12.5, limit=5)[0]) == [("aged", MAX_AGE), ("long", MAX_AGE)]


def test_no_warnings_unless_configured(s):
    s.at(0).register("a", None, None)
    assert s.at(0).claim(5).next_warning_in is None
    assert claim_all(s, 9.5, limit=5) == ([], [])
    assert not s.at(9.5).get("a").warning_sent


# -- capacity -----------------------------------------------------------------------------------


def test_capacity_evicts_one_to_make_room(new_store):
    s = new_store(max_conversations=3)
    for i, cid in enumerate("abc"):
        s.at(i).register(cid, None, None)
    s.at(3).touch("b", True)
    assert left(s.at(4).register("a", None, None)[1]) == []  # live: no room needed
    st, removed = s.at(5).register("d", None, None)
    assert st == state("d", 5, 5, 15)
    assert done(s.store, removed) == [("c", EVICTED)]
    assert removed.states[0] == state("c", 2, 2, 12, active=False)
    assert s.at(5).count() == 3


def test_capacity_takes_a_past_due_conversation_first(new_store):
    s = new_store(max_conversations=3)
    s.at(0).register("a", None, None)  # least recently active, live until 10
    s.at(1).register("b", 2.0, None)  # past due at 3
    s.at(2).register("c", None, None)
    assert s.at(5).count() == 2
    assert done(s.store, s.at(5).register("d", None, None)[1]) == [("b", EXPIRED)]
    assert s.at(5).count() == 3


def test_capacity_evicts_the_nearest_deadline_after_touches(new_store):
    s = new_store(max_conversations=3)
    for i, cid in enumerate("abc"):
        s.at(i).register(cid, None, None)  # deadlines 10, 11, 12
    s.at(3).touch("a", True)  # 13
    s.at(4).touch("b", True)  # 14
    assert done(s.store, s.at(5).register("d", None, None)[1]) == [("c", EVICTED)]
    assert done(s.store, s.at(6).register("e", None, None)[1]) == [("a", EVICTED)]
    assert s.at(6).count() == 3


# -- touched conversations past the deadline they had -------------------------------------------
# A store may write a touched conversation's deadline index late (RedisStore does: lib_due.lua):
# every view must still go by the deadline its last activity gave it.


def test_views_of_conversations_touched_past_their_first_deadline(s):
    s.at(0).register("a", None, None)
    s.at(1).register("b", None, None)
    s.at(2).register("c", None, None)
    s.at(8).touch("a", True)  # deadline 18
    s.at(9).touch("b", True)
    s.at(9.5).touch("b", True)  # 19.5
    assert s.at(12.5).count() == 2 and not s.at(12.5).is_live("c")
    assert s.at(18).count() == 2 and s.at(18).get("a") == state("a", 0, 8, 18)
    assert s.at(18.5).count() == 1
    with pytest.raises(ConversationExpiredError):
        s.at(18.5).touch("a", True)
    assert s.at(19.5).count() == 1 and s.at(20).count() == 0


def test_a_sweep_leaves_touched_conversations_until_their_deadline(s):
    for i in range(5):
        s.at(0).register(f"c{i}", None, None)
    s.at(5).touch("c1", True)
    s.at(6).touch("c3", True)
    assert sorted(claim_all(s, 12, limit=2)[0]) == [
        ("c0", EXPIRED), ("c2", EXPIRED), ("c4", EXPIRED)
    ]  # fmt: skip
    assert s.at(12).count() == 2
    assert claim_all(s, 15, limit=2) == ([], [])
    assert claim_all(s, 15.5, limit=2)[0] == [("c1", EXPIRED)]
    assert s.at(15.5).count() == 1
    assert claim_all(s, 16.5, limit=2)[0] == [("c3", EXPIRED)]


def test_many_conversations_touched_past_their_first_deadline(s):
    ids = [f"c{i:03d}" for i in range(700)]  # more than a Redis script puts right in one call
    for cid in ids:
        s.at(0).register(cid, None, None)
    for cid in ids[::2]:
        s.at(5).touch(cid, True)  # live until 15
    assert s.at(12).count() == 350
    departed, _ = claim_all(s, 12, limit=100)
    assert sorted(departed) == [(cid, EXPIRED) for cid in ids[1::2]]
    assert s.at(15).count() == 350 and claim_all(s, 15, limit=100) == ([], [])
    departed, _ = claim_all(s, 15.5, limit=100)
    assert sorted(departed) == [(cid, EXPIRED) for cid in ids[::2]]
    assert s.at(15.5).count() == 0


def test_a_stale_reading_cannot_revive_what_a_count_found_expired(s):
    s.at(0).register("a", None, None)
    s.at(1).register("b", None, None)
    s.at(5).touch("b", True)  # deadline 15
    assert s.at(10.5).count() == 1
    with pytest.raises(ConversationExpiredError):
        s.at(9).touch("a", True)  # read before 10.5, applied after
    assert s.at(9).touch("b", True).expires_at == wall(20.5)  # decided at 10.5, not 9
    assert s.at(9).count() == 1


# -- drain ----------------------------------------------------------------------------------------


def test_drain_in_batches(new_store):
    s = new_store(max_age=6.0)
    s.at(0).register("idle", 1.0, None)
    s.at(0).register("aged", None, None)
    for i in range(9):
        s.at(5).register(f"live{i}", None, None)
    token = s.at(5).hold("live3")
    seen, tokens = [], {}
    for _ in range(100):
        removed = s.at(6.5).drain(4)
        batch = done(s.store, removed)
        assert len(batch) <= 4
        if not batch:
            break
        seen += batch
        tokens.update(removed.tokens)
    if s.store.shared:  # other processes still serve them
        assert seen == [] and s.at(6.5).count() == 9
        return
    expected = [(f"live{i}", SHUTDOWN) for i in range(9)] + [("idle", EXPIRED), ("aged", MAX_AGE)]
    assert sorted(seen) == sorted(expected)
    assert tokens == {"live3": token}
    assert s.at(6.5).count() == 0 and s.at(6.5).get("live0") is None


def test_left_elsewhere_is_empty_for_an_unshared_store(s):
    s.at(0).register("a", None, None)
    s.at(0).hold("a")
    s.store.ack(s.at(1).end("a"))
    assert s.store.left_elsewhere() == [] or s.store.shared


def test_binding_a_store_twice_is_refused(s):
    with pytest.raises(RuntimeError):
        s.store.bind(Policy(ttl=TTL), SetClock())


# -- concurrency ----------------------------------------------------------------------------------


def test_each_conversation_leaves_exactly_once_whoever_claims_it(new_store):
    s = new_store()
    ids = [f"c{i}" for i in range(400)]
    for i in sorted(range(len(ids)), key=lambda i: i % 2):  # half past due at 10.5
        s.at(float(i % 2)).register(ids[i], None, None)
    s.clock.t = 10.5
    store = s.store
    out: list = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def keep(removed):
        with lock:
            out.extend(done(store, removed))

    def ender():
        start.wait()
        for cid in reversed(ids):
            keep(store.end(cid))

    def claimer():
        start.wait()
        while True:
            sweep = store.claim(16)
            keep(sweep.departures)
            if not sweep.more:
                return

    def drainer():
        start.wait()
        while left(removed := store.drain(16)):
            keep(removed)

    threads = [threading.Thread(target=f) for f in (ender, claimer, drainer, ender)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    counts = Counter(cid for cid, _ in out)
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    for cid, reason in out:
        assert reason in ({EXPIRED} if int(cid[1:]) % 2 == 0 else {ENDED, SHUTDOWN})


# -- ensure: touch or start, atomically -------------------------------------------------------


def test_ensure_starts_an_unknown_conversation(s):
    st, fresh, removed = s.at(1).ensure("a", True)
    assert fresh
    assert st == state("a", 1, 1, 11)
    assert left(removed) == []


def test_ensure_touches_a_live_conversation(s):
    s.at(0).register("a", None, None)
    st, fresh, _ = s.at(4).ensure("a", True)
    assert not fresh
    assert st == state("a", 0, 4, 14)


def test_ensure_without_extend_leaves_the_deadline(s):
    s.at(0).register("a", None, None)
    st, fresh, _ = s.at(4).ensure("a", False)
    assert not fresh
    assert st.expires_at == wall(10)


def test_ensure_starts_afresh_over_a_past_due_conversation(s):
    s.at(0).register("a", None, None)
    token = s.at(1).hold("a")
    st, fresh, removed = s.at(10.5).ensure("a", True)
    assert fresh
    assert st.created_at == wall(10.5)
    assert done(s.store, removed) == [("a", EXPIRED)]
    assert removed.tokens == {"a": token}
