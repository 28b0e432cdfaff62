"""Keys of RedisStore: one prefix and one Cluster slot per namespace; any id string is safe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from support import START

from conversation_expiry import ExpiryReason, ManualClock
from conversation_expiry._store import Policy

redis = pytest.importorskip("redis")
from redis.crc import key_slot  # noqa: E402

HOSTILE = [
    "{", "}", "{}", "}{", "a{b}c", ":", "::", "ce:{x}:c", "*", "?", "[", "\\",
    "\x00", "a\x00b", "\n", "\r\n", " ", "\t", "\u200b", "\ufeff", "\u00a0", "\u0301",
    "\ud800", "\udfff", "é", "e\u0301", "💬", "x" * 100_000, "1", "1.0", "-1", "nil", "false",
    "ce:{t-0}:c", "\xff", "%d", "%s%s",
]  # fmt: skip


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def store(redis_store: Callable[..., Any], clock: ManualClock) -> Any:
    s = redis_store()
    s.bind(Policy(ttl=10.0), clock)
    return s


def all_keys(client: Any) -> list[bytes]:
    return list(client.scan_iter(count=1000))


def exercise(store: Any, clock: ManualClock) -> None:
    """Touch every structure the store has: live, warned, claimed, stream, requests."""
    store.register("a", None, '{"k":"v"}')
    store.hold("a")
    store.register("b", 1.0, None)
    clock.advance(2)
    store.ack(store.claim(10).departures)
    store.ack(store.end("a"))
    store.register("live", None, None)  # C, D and W stay
    store.register("claimed", 1.0, None)
    clock.advance(2)
    store.claim(10)  # K and L stay (not acknowledged)


def test_every_key_under_the_prefix_and_in_one_slot(
    redis_store: Callable[..., Any], clock: ManualClock
) -> None:
    namespaces = ["plain", "with:colons", "ünïcödé", "a b", "x" * 200]
    for ns in namespaces:
        store = redis_store(namespace=ns)
        store.bind(Policy(ttl=10.0, warning_before=5.0), clock)
        exercise(store, clock)
        keys = [k for k in all_keys(store._client) if k.startswith(store.prefix)]
        assert {k[len(store.prefix) :][:1] for k in keys} >= {bytes([c]) for c in b"cdwklmsr"}
        assert len(keys) >= 7
        assert {key_slot(k) for k in keys} == {key_slot(store.prefix)}
        assert store.prefix == f"ce:{{{ns}}}:".encode()
    # Nothing outside a store's prefix on the server the Redis tests share.
    client = redis_store(namespace="probe")._client
    assert [k for k in all_keys(client) if not k.startswith(b"ce:{")] == []


def test_hostile_ids_round_trip_without_collision(store: Any, clock: ManualClock) -> None:
    for n, cid in enumerate(HOSTILE):
        state, deps = store.register(cid, None, f'{{"n":{n}}}')
        assert state.id == cid and deps.states == []
    assert store.count() == len(HOSTILE)
    for n, cid in enumerate(HOSTILE):
        state = store.get(cid)
        assert state is not None and state.id == cid and state.metadata == {"n": n}
        assert store.touch(cid, True).id == cid
    assert {cid for cid, _ in store.next_deadlines(len(HOSTILE))} == set(HOSTILE)
    held = {cid: store.hold(cid) for cid in HOSTILE}
    assert len(set(held.values())) == len(HOSTILE)  # one incarnation each
    clock.advance(11)
    got: dict[str, Any] = {}
    while True:
        sweep = store.claim(16)
        for s, r in zip(sweep.departures.states, sweep.departures.reasons, strict=True):
            assert r is ExpiryReason.EXPIRED
            got[s.id] = s
        assert all(held[c] == i for c, i in sweep.departures.tokens.items())
        store.ack(sweep.departures)
        if not sweep.more:
            break
    assert set(got) == set(HOSTILE) and store.count() == 0


def test_ids_never_reach_another_namespace(
    redis_store: Callable[..., Any], clock: ManualClock
) -> None:
    a = redis_store(namespace="ns")
    b = redis_store(namespace="ns:c")
    for s in (a, b):
        s.bind(Policy(ttl=10.0), clock)
    for cid in HOSTILE[:12]:
        a.register(cid, None, None)
    assert b.count() == 0 and all(b.get(cid) is None for cid in HOSTILE[:12])
