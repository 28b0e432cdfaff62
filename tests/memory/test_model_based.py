"""Property-based tests (issue 3): random sequences of calls against a plain reference model.

The model is a dict of simple records whose deadlines are computed naively (no queues, no
batching). After every step the manager must agree with it on return values, exceptions, ``get``,
``is_expired``, ``len``, ``in``, the ids a sweep returns, and the exact multiset of
``on_expire`` / ``on_warning`` / cleanup calls, each exactly once.

All clock steps are multiples of 0.5 s, so every time the model computes is exact in binary
floating point and snapshots compare for equality.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from conversation_expiry import (
    ConversationExpiredError,
    ConversationExpiryManager,
    ConversationNotFoundError,
    ExpiryReason,
    ManualClock,
)
from conversation_expiry import _buckets as buckets
from conversation_expiry import _manager as manager_module
from conversation_expiry import _walks as walks

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
TTL = 10.0
WARN = 3.0
IDS = ("a", "b", "c", "d", "e")
ACTIVITIES = ("message", "heartbeat")  # only "message" is meaningful
STEPS = (0.5, 1.0, 2.0, WARN, 4.0, TTL - WARN, TTL, 15.0, 20.0)  # includes exactly-ttl steps
EXPIRIES = (ExpiryReason.EXPIRED, ExpiryReason.MAX_AGE)

SETTINGS = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def key(state) -> tuple:
    return (
        state.id,
        state.created_at,
        state.last_activity,
        state.expires_at,
        state.active,
        state.warning_sent,
    )


@dataclass
class Record:
    cid: str
    created: float
    last: float
    ttl: float
    seq: int  # order of the last meaningful activity, to break ties between equal times
    warned: bool = False
    cleanups: list[int] = field(default_factory=list)


class ExpiryMachine(RuleBasedStateMachine):
    """Subclasses choose the configuration; the rules and the model are shared."""

    MAX_AGE: float | None = None
    CAPACITY: int | None = None
    TTLS: tuple[float | None, ...] = (None,)  # per-conversation TTLs register may pass
    # At capacity a past-deadline conversation is removed if one is held (any of them), else the
    # least recently active one is evicted. Among conversations last active at the same clock
    # reading, TIES says which may go: "order" (the one whose activity came first, which is
    # what least recently active means) or "any"; "deadline" is the shared store's rule instead
    # (the nearest deadline first, any of those that share it).
    TIES = "order"
    STORE: Any = None  # a zero-argument factory of stores; None: the in-memory default
    WARN_BEFORE: float | None = WARN  # None: no warnings (with one TTL, the plain sweep path)

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(START)
        self.now = 0.0
        self.model: dict[str, Record] = {}
        self.actual: list[tuple] = []
        self.expected: list[tuple] = []
        self.next_token = 0
        self.seq = 0
        self.m = ConversationExpiryManager(
            TTL,
            60,
            clock=self.clock,
            autostart=False,
            on_expire=lambda s, r: self.actual.append(("expire", key(s), r)),
            on_warning=(
                None if self.WARN_BEFORE is None
                else lambda s: self.actual.append(("warn", key(s)))
            ),
            warning_before=self.WARN_BEFORE,
            max_age=self.MAX_AGE,
            max_conversations=self.CAPACITY,
            meaningful_activities={"message"},
            store=None if self.STORE is None else self.STORE(),
        )

    # -- the model --------------------------------------------------------------------------

    def deadline(self, r: Record) -> float:
        d = r.last + r.ttl
        if self.MAX_AGE is not None:
            d = min(d, r.created + self.MAX_AGE)
        return d

    def live(self, r: Record | None) -> bool:
        return r is not None and self.now <= self.deadline(r)

    def reason(self, r: Record) -> ExpiryReason:
        if self.MAX_AGE is not None and r.created + self.MAX_AGE < r.last + r.ttl:
            return ExpiryReason.MAX_AGE
        return ExpiryReason.EXPIRED

    def state(self, r: Record, active: bool = True) -> tuple:
        return (r.cid, at(r.created), at(r.last), at(self.deadline(r)), active, r.warned)

    def remove(self, r: Record, reason: ExpiryReason) -> None:
        del self.model[r.cid]
        self.expected.append(("expire", self.state(r, active=False), reason))
        self.expected.append(("cleanups", tuple(reversed(r.cleanups))))

    def tick(self) -> int:
        self.seq += 1
        return self.seq

    def activity(self, r: Record) -> None:
        r.last = self.now
        r.seq = self.tick()
        if r.warned and self.deadline(r) - WARN > self.now:
            r.warned = False

    def model_register(self, cid: str, ttl: float | None) -> tuple[Record, list[Record]]:
        """Returns the record and the candidates an eviction may pick from."""
        r = self.model.get(cid)
        if self.live(r):
            if ttl is not None:
                r.ttl = ttl
            self.activity(r)
            return r, []
        if r is not None:
            self.remove(r, self.reason(r))
        candidates: list[Record] = []
        if self.CAPACITY is not None and len(self.model) >= self.CAPACITY:
            held = list(self.model.values())
            dead = [x for x in held if not self.live(x)]
            if dead:
                candidates = dead
            elif self.TIES == "deadline":  # a shared store: the nearest deadline goes first
                nearest = min(self.deadline(x) for x in held)
                candidates = [x for x in held if self.deadline(x) == nearest]
            elif self.TIES == "order":
                candidates = [min(held, key=lambda x: (x.last, x.seq))]
            else:
                oldest = min(x.last for x in held)
                candidates = [x for x in held if x.last == oldest]
        r = Record(cid, self.now, self.now, TTL if ttl is None else ttl, self.tick())
        return r, candidates

    def check_registration(self, cid: str, ttl: float | None, state, before: int) -> None:
        """Apply a registration to the model and compare; ``before`` indexes ``self.actual``."""
        r, candidates = self.model_register(cid, ttl)
        if candidates:
            evicted = [e for e in self.actual[before:] if e[0] == "expire" and e[1][0] != cid]
            assert len(evicted) == 1, f"expected one eviction among {candidates}, saw {evicted}"
            victim = self.model.get(evicted[0][1][0])
            assert victim in candidates, f"evicted {evicted[0][1:]}, expected one of {candidates}"
            dead = not self.live(victim)
            self.remove(victim, self.reason(victim) if dead else ExpiryReason.EVICTED)
        self.model[cid] = r
        assert key(state) == self.state(r)

    # -- rules -------------------------------------------------------------------------------

    @rule(cid=st.sampled_from(IDS), data=st.data())
    def register(self, cid, data):
        ttl = data.draw(st.sampled_from(self.TTLS), label="ttl")
        before = len(self.actual)
        if ttl is None:
            state = self.m.register_conversation(cid)
        else:
            state = self.m.register_conversation(cid, ttl=ttl)
        self.check_registration(cid, ttl, state, before)

    @rule(cid=st.sampled_from(IDS), activity=st.sampled_from(ACTIVITIES))
    def update_activity(self, cid, activity):
        r = self.model.get(cid)
        if r is None:
            with pytest.raises(ConversationNotFoundError) as info:
                self.m.update_activity(cid, activity)
            assert not isinstance(info.value, ConversationExpiredError)
        elif not self.live(r):
            with pytest.raises(ConversationExpiredError):
                self.m.update_activity(cid, activity)
        else:
            state = self.m.update_activity(cid, activity)
            if activity == "message":
                self.activity(r)
            assert key(state) == self.state(r)

    @rule(cid=st.sampled_from(IDS), activity=st.sampled_from(ACTIVITIES))
    def ensure_conversation(self, cid, activity):
        r = self.model.get(cid)
        if self.live(r):
            state, fresh = self.m.ensure_conversation(cid, activity)
            if activity == "message":
                self.activity(r)
            assert (key(state), fresh) == (self.state(r), False)
        else:  # a fresh start: an ordinary registration, after the old one left
            before = len(self.actual)
            state, fresh = self.m.ensure_conversation(cid, activity)
            assert fresh is True
            self.check_registration(cid, None, state, before)

    @rule(step=st.sampled_from(STEPS))
    def advance(self, step):
        self.clock.advance(step)
        self.now += step

    @rule()
    def cleanup_expired(self):
        ids = self.m.cleanup_expired()
        expired = []
        for r in list(self.model.values()):
            if not self.live(r):
                expired.append(r.cid)
                self.remove(r, self.reason(r))
        for r in self.model.values():
            if self.WARN_BEFORE is None:
                break
            if not r.warned and self.now >= self.deadline(r) - WARN:
                r.warned = True
                self.expected.append(("warn", self.state(r)))
        assert sorted(ids) == sorted(expired)

    @rule(cid=st.sampled_from(IDS))
    def end_conversation(self, cid):
        result = self.m.end_conversation(cid)
        r = self.model.get(cid)
        if r is None:
            assert result is False
        elif not self.live(r):
            assert result is False
            self.remove(r, self.reason(r))
        else:
            assert result is True
            self.remove(r, ExpiryReason.ENDED)

    @rule(cid=st.sampled_from(IDS))
    def add_cleanup(self, cid):
        token = self.next_token
        self.next_token += 1
        r = self.model.get(cid)
        fn = lambda: self.actual.append(("cleanup", token))  # noqa: E731
        if r is None:
            with pytest.raises(ConversationNotFoundError) as info:
                self.m.add_cleanup(cid, fn)
            assert not isinstance(info.value, ConversationExpiredError)
        elif not self.live(r):
            with pytest.raises(ConversationExpiredError):
                self.m.add_cleanup(cid, fn)
        else:
            self.m.add_cleanup(cid, fn)
            r.cleanups.append(token)

    # -- comparisons ---------------------------------------------------------------------------

    @invariant()
    def views_agree(self):
        for cid in IDS:
            r = self.model.get(cid)
            live = self.live(r)
            got = self.m.get(cid)
            assert (key(got) if got is not None else None) == (self.state(r) if live else None)
            assert self.m.is_expired(cid) is (not live)
            assert (cid in self.m) is live
        assert len(self.m) == sum(1 for r in self.model.values() if self.live(r))

    @invariant()
    def callbacks_agree(self):
        actual, self.actual = self.actual, []
        expected, self.expected = self.expected, []
        expires = Counter(e[1:] for e in actual if e[0] == "expire")
        assert expires == Counter(e[1:] for e in expected if e[0] == "expire")
        warns = Counter(e[1] for e in actual if e[0] == "warn")
        assert warns == Counter(e[1] for e in expected if e[0] == "warn")
        ran = [e[1] for e in actual if e[0] == "cleanup"]
        assert Counter(ran) == Counter(t for e in expected if e[0] == "cleanups" for t in e[1])
        for e in expected:  # each conversation's cleanups ran last attached first
            if e[0] == "cleanups" and e[1]:
                mine = set(e[1])
                assert tuple(t for t in ran if t in mine) == e[1]

    def teardown(self):
        try:
            self.m.stop(cleanup_remaining=True)
            for r in list(self.model.values()):
                if self.m.store.shared:  # its conversations outlive a stopping process
                    self.m.end_conversation(r.cid)
                    self.remove(r, ExpiryReason.ENDED if self.live(r) else self.reason(r))
                else:
                    self.remove(r, ExpiryReason.SHUTDOWN if self.live(r) else self.reason(r))
            self.callbacks_agree()
            assert len(self.m) == 0
        finally:
            self.m.stop()


class UniformTTLMachine(ExpiryMachine):
    CAPACITY = 3


class MixedLifecycleMachine(ExpiryMachine):
    MAX_AGE = 12.0
    TTLS = (None, None, 4.0, TTL, 20.0)


class MixedCapacityMachine(ExpiryMachine):
    """Per-conversation TTLs, max_age and capacity; ties in time left open (see below)."""

    MAX_AGE = 12.0
    CAPACITY = 3
    TTLS = (None, None, 4.0, TTL, 20.0)
    TIES = "any"


class MixedCapacityStrictMachine(MixedCapacityMachine):
    TIES = "order"


class PlainMachine(ExpiryMachine):
    """One TTL, no max_age, no warnings: the in-memory store's plain sweep (``pop_due``)."""

    WARN_BEFORE = None


class PlainCapacityMachine(PlainMachine):
    CAPACITY = 3


TestUniformTTL = UniformTTLMachine.TestCase
TestUniformTTL.settings = SETTINGS
TestMixedLifecycle = MixedLifecycleMachine.TestCase
TestMixedLifecycle.settings = SETTINGS
TestMixedCapacity = MixedCapacityMachine.TestCase
TestMixedCapacity.settings = SETTINGS


def test_capacity_strict_model():
    run_state_machine_as_test(
        MixedCapacityStrictMachine,
        settings=settings(SETTINGS, max_examples=300, derandomize=True, phases=[Phase.generate]),
    )


@pytest.mark.parametrize(
    "machine",
    [PlainMachine, PlainCapacityMachine, UniformTTLMachine, MixedCapacityStrictMachine],
    ids=lambda m: m.__name__,
)
def test_the_model_holds_with_buckets_of_two(
    machine: type[ExpiryMachine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buckets of two and batches of three: activity at one reading fills buckets, sweeps end
    batches before buckets all due that do not fit and pop records in bulk after an all-due
    batch (ids active since must get theirs back), counts and evictions walk many small
    buckets, and a review reads one entry before the rest (the probe of a bucket due in part)."""
    monkeypatch.setattr(buckets, "CAP", 2)
    monkeypatch.setattr(walks, "_PROBE", 1)
    monkeypatch.setattr(manager_module, "SWEEP_BATCH", 3)
    run_state_machine_as_test(
        machine,
        settings=settings(SETTINGS, max_examples=200, derandomize=True, phases=[Phase.generate]),
    )


@pytest.mark.redis
@pytest.mark.parametrize(
    "machine", [UniformTTLMachine, MixedCapacityMachine], ids=lambda m: m.__name__
)
def test_the_model_holds_on_redis(machine, redis_store):
    """The same rules and model against the Redis store, whose capacity rule is the nearest
    deadline first (in id order among equal ones)."""
    machine_on_redis = type(
        machine.__name__, (machine,), {"STORE": redis_store, "TIES": "deadline"}
    )
    run_state_machine_as_test(
        machine_on_redis,
        settings=settings(SETTINGS, max_examples=40, derandomize=True, phases=[Phase.generate]),
    )
