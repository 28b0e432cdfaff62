"""RedisStore against the store protocol, on a real redis-server, driven by a ManualClock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from support import START, at

from conversation_expiry import (
    ConversationExpiredError,
    ConversationNotFoundError,
    ExpiryReason,
    ManualClock,
    SystemClock,
)
from conversation_expiry._store import Policy

pytest.importorskip("redis")

TTL = 10.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def make(redis_store: Callable[..., Any], clock: ManualClock) -> Callable[..., Any]:
    """``make(namespace=None, lease=30, **policy)``: a store bound with ``clock``."""

    def factory(namespace: str | None = None, lease: float = 30.0, **policy: Any) -> Any:
        store = redis_store(namespace=namespace, lease=lease)
        policy.setdefault("ttl", TTL)
        store.bind(Policy(**policy), clock)
        return store

    return factory


@pytest.fixture
def store(make: Callable[..., Any]) -> Any:
    return make()


def test_register_starts_a_conversation(store: Any) -> None:
    state, deps = store.register("a", None, '{"k":1}')
    assert (state.id, state.created_at, state.last_activity) == ("a", at(0), at(0))
    assert state.expires_at == at(TTL) and state.active and not state.warning_sent
    assert state.metadata == {"k": 1}
    assert deps.states == [] and deps.claim is None
    assert store.shared is True


def test_register_live_is_activity_keeping_created_incarnation_and_metadata(
    store: Any, clock: ManualClock
) -> None:
    store.register("a", None, '{"k":1}')
    inc = store.hold("a")
    clock.advance(4)
    state, deps = store.register("a", None, None)
    assert (state.created_at, state.last_activity, state.expires_at) == (at(0), at(4), at(14))
    assert state.metadata == {"k": 1} and deps.states == []
    assert store.hold("a") == inc
    state, _ = store.register("a", 30.0, '{"k":2}')  # a ttl and metadata given replace them
    assert state.expires_at == at(34) and state.metadata == {"k": 2}
    clock.advance(20)
    assert store.touch("a", True).expires_at == at(54)  # the new ttl stays with it


def test_register_past_due_claims_the_old_incarnation_and_starts_afresh(
    store: Any, clock: ManualClock
) -> None:
    store.register("a", None, '{"old":true}')
    old = store.hold("a")
    clock.advance(TTL + 1)
    state, deps = store.register("a", None, None)
    assert state.created_at == at(TTL + 1) and state.metadata == {}
    assert [s.id for s in deps.states] == ["a"] and deps.reasons == [ExpiryReason.EXPIRED]
    assert deps.states[0].active is False and deps.states[0].metadata == {"old": True}
    assert deps.tokens == {"a": old}
    assert store.hold("a") != old
    store.ack(deps)


def test_ensure(store: Any, clock: ManualClock) -> None:
    state, started, deps = store.ensure("a", True)
    assert started and state.expires_at == at(TTL) and deps.states == []
    clock.advance(3)
    state, started, _ = store.ensure("a", False)
    assert not started and state.last_activity == at(0)
    state, started, _ = store.ensure("a", True)
    assert not started and state.last_activity == at(3)


def test_touch_slides_and_raises(store: Any, clock: ManualClock) -> None:
    store.register("a", None, None)
    clock.advance(TTL)  # expired means strictly after the deadline
    assert store.touch("a", False).last_activity == at(0)
    assert store.touch("a", True).expires_at == at(2 * TTL)
    clock.advance(TTL + 0.000001)
    with pytest.raises(ConversationExpiredError):
        store.touch("a", True)
    with pytest.raises(ConversationNotFoundError) as info:
        store.touch("nobody", True)
    assert not isinstance(info.value, ConversationExpiredError)


def test_get_is_live_count(store: Any, clock: ManualClock) -> None:
    store.register("a", None, None)
    store.register("b", 20.0, None)
    assert store.count() == 2 and store.is_live("a") and store.get("a").id == "a"
    assert store.get("zz") is None and not store.is_live("zz")
    clock.advance(TTL + 1)
    assert store.count() == 1 and store.get("a") is None and not store.is_live("a")
    assert store.is_live("b")


def test_end(store: Any, clock: ManualClock) -> None:
    store.register("a", None, None)
    store.register("b", None, None)
    deps = store.end("a")
    assert [s.id for s in deps.states] == ["a"] and deps.reasons == [ExpiryReason.ENDED]
    assert store.end("a").states == [] and store.end("nobody").states == []
    store.ack(deps)
    clock.advance(TTL + 1)
    deps = store.end("b")
    assert deps.reasons == [ExpiryReason.EXPIRED]
    store.ack(deps)
    assert store.stats()["claimed"] == 0


def test_claim_in_batches_then_ack(store: Any, clock: ManualClock) -> None:
    for n in range(25):
        store.register(f"c{n}", None, None)
        clock.advance(0.01)
    store.register("late", 100.0, None)
    clock.advance(TTL)
    sweep = store.claim(10)
    assert sweep.more and len(sweep.departures.states) == 10
    assert [s.id for s in sweep.departures.states] == [f"c{n}" for n in range(10)]
    assert all(r is ExpiryReason.EXPIRED for r in sweep.departures.reasons)
    got = list(sweep.departures.states)
    store.ack(sweep.departures)
    store.ack(sweep.departures)  # twice: nothing more happens
    while sweep.more:
        sweep = store.claim(10)
        got += sweep.departures.states
        store.ack(sweep.departures)
    assert sorted(s.id for s in got) == sorted(f"c{n}" for n in range(25))
    assert store.count() == 1 and store.stats()["claimed"] == 0 and store.late_acks == 0


def test_max_age_reason(make: Callable[..., Any], clock: ManualClock) -> None:
    store = make(max_age=15.0)
    store.register("a", None, None)
    clock.advance(8)
    assert store.touch("a", True).expires_at == at(15)  # capped by max_age, not 18
    clock.advance(8)
    sweep = store.claim(10)
    assert sweep.departures.reasons == [ExpiryReason.MAX_AGE]
    store.ack(sweep.departures)


def test_warnings(make: Callable[..., Any], clock: ManualClock) -> None:
    store = make(warning_before=3.0)
    store.register("a", None, None)
    sweep = store.claim(10)
    assert sweep.warned == [] and sweep.next_warning_in == pytest.approx(7.0)
    clock.advance(7)
    sweep = store.claim(10)
    assert [s.id for s in sweep.warned] == ["a"] and sweep.warned[0].warning_sent
    assert store.claim(10).warned == []  # once
    assert store.get("a").warning_sent
    assert not store.touch("a", True).warning_sent  # activity moved it out of the window
    clock.advance(7)
    assert [s.id for s in store.claim(10).warned] == ["a"]


def test_capacity_evicts_nearest_deadline_past_due_first(
    make: Callable[..., Any], clock: ManualClock
) -> None:
    store = make(max_conversations=2)
    store.register("short", 1.0, None)
    store.register("long", 100.0, None)
    _, deps = store.register("new", None, None)
    assert [s.id for s in deps.states] == ["short"] and deps.reasons == [ExpiryReason.EVICTED]
    store.ack(deps)
    clock.advance(TTL + 1)  # "new" is past due now
    _, deps = store.register("newer", None, None)
    assert [s.id for s in deps.states] == ["new"] and deps.reasons == [ExpiryReason.EXPIRED]
    store.ack(deps)
    assert store.count() == 2


def test_hold_and_tokens(store: Any, clock: ManualClock) -> None:
    store.register("a", None, None)
    store.register("b", None, None)
    inc = store.hold("a")
    assert isinstance(inc, int) and store.hold("a") == inc
    with pytest.raises(ConversationNotFoundError):
        store.hold("nobody")
    clock.advance(TTL + 1)
    with pytest.raises(ConversationExpiredError):
        store.hold("b")
    sweep = store.claim(10)
    assert sweep.departures.tokens == {"a": inc}
    store.ack(sweep.departures)
    assert store.left_elsewhere() == []  # this process finished it itself


def test_left_elsewhere_reports_held_conversations_finished_by_another_process(
    make: Callable[..., Any], clock: ManualClock
) -> None:
    here = make()
    there = make(namespace=here.namespace)
    here.register("a", None, None)
    here.register("b", None, None)
    inc = here.hold("a")
    assert here.left_elsewhere() == []
    deps = there.end("a")
    assert deps.tokens == {"a": inc}
    # Reported once claimed: however long the claimant's on_expire takes (guarantee 11).
    assert here.left_elsewhere() == [("a", inc, ExpiryReason.ENDED)]
    there.ack(deps)
    there.ack(deps)
    assert here.left_elsewhere() == []
    assert there.left_elsewhere() == []  # it holds nothing


def test_drain_claims_nothing(store: Any) -> None:
    store.register("a", None, None)
    deps = store.drain(100)
    assert deps.states == [] and deps.claim is None and store.count() == 1


def test_bind_once_and_server_clock(redis_store: Callable[..., Any]) -> None:
    store = redis_store()
    store.bind(Policy(ttl=TTL), SystemClock())
    with pytest.raises(RuntimeError):
        store.bind(Policy(ttl=TTL), SystemClock())
    state, _ = store.register("a", None, None)
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    assert abs((state.created_at - now).total_seconds()) < 5  # the server's clock
    assert store.count() == 1


def test_unbound_store_reads_but_does_not_register(redis_store: Callable[..., Any]) -> None:
    store = redis_store()
    assert store.count() == 0 and store.get("a") is None and store.next_deadlines(3) == []
    with pytest.raises(RuntimeError, match="bind"):
        store.register("a", None, None)


def test_arguments_are_checked(redis_server: Any) -> None:
    from conversation_expiry.redis import RedisStore

    client = redis_server.client()
    with pytest.raises(TypeError, match="client"):
        RedisStore(object())
    with pytest.raises(ValueError, match="decode_responses"):
        RedisStore(redis_server.client(decode_responses=True))
    for bad in ["", "a{b", "b}"]:
        with pytest.raises(ValueError, match="namespace"):
            RedisStore(client, namespace=bad)
    with pytest.raises(TypeError, match="namespace"):
        RedisStore(client, namespace=3)  # type: ignore[arg-type]
    for bad_lease in [0, -1, float("inf"), float("nan")]:
        with pytest.raises(ValueError, match="lease"):
            RedisStore(client, lease=bad_lease)
    with pytest.raises(TypeError, match="lease"):
        RedisStore(client, lease="30")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="url"):
        RedisStore.from_url("http://localhost")
    with pytest.raises(ValueError, match="namespace"):
        RedisStore.from_url(redis_server.url, namespace="")
    client.close()


def test_from_url(redis_server: Any) -> None:
    from conversation_expiry.redis import RedisStore

    store = RedisStore.from_url(redis_server.url, namespace="from-url", lease=5)
    try:
        pool = store._client.connection_pool.connection_kwargs
        assert pool["socket_timeout"] == 2.0 and pool["health_check_interval"] == 15
        assert store.count() == 0
    finally:
        store.close()
    custom = RedisStore.from_url(redis_server.url, socket_timeout=0.5)
    assert custom._client.connection_pool.connection_kwargs["socket_timeout"] == 0.5
    custom.close()
    plain = RedisStore.from_url(redis_server.url, cluster=False)  # asks nothing
    assert type(plain._client) is type(store._client)
    plain.close()
    with pytest.raises(TypeError, match="cluster"):
        RedisStore.from_url(redis_server.url, cluster="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["/abc", "/1/2", "/0x1", "/\u0661"])
def test_from_url_refuses_a_database_that_is_not_a_number(path: str) -> None:
    from conversation_expiry.redis import RedisStore

    with pytest.raises(ValueError, match="database by number"):
        RedisStore.from_url(f"redis://127.0.0.1:6379{path}", cluster=False)


def test_the_database_check_does_not_show_the_password() -> None:
    from conversation_expiry.redis import RedisStore

    with pytest.raises(ValueError, match="database by number") as info:
        RedisStore.from_url("redis://user:s3cret@127.0.0.1:6379/abc", cluster=False)
    assert "s3cret" not in str(info.value)


def test_from_url_of_an_unreachable_server() -> None:
    from redis_servers import free_port

    from conversation_expiry import StoreUnavailableError
    from conversation_expiry.redis import RedisStore

    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreUnavailableError, match="cluster=False"):
        RedisStore.from_url(url, socket_connect_timeout=0.2, retry=None)
    store = RedisStore.from_url(url, cluster=False)  # connects at its first call
    store.close()


def test_operator_helpers(store: Any, clock: ManualClock) -> None:
    for n, ttl in enumerate([30.0, 10.0, 20.0]):
        store.register(f"c{n}", ttl, None)
    assert store.next_deadlines(2) == [("c1", at(10)), ("c2", at(20))]
    stats = store.stats()
    assert {k: stats[k] for k in ("live", "claimed", "dead", "late_acks")} == {
        "live": 3, "claimed": 0, "dead": 0, "late_acks": 0,
    }  # fmt: skip
    clock.advance(15)
    assert store.stats()["live"] == 2 and store.stats()["due"] == 1
    sweep = store.claim(10)
    stats = store.stats()  # the namespace's counts only; this process's claims apart
    assert stats["claimed"] == 1 and store.outstanding == 1 and "outstanding" not in stats
    store.ack(sweep.departures)
    assert store.outstanding == 0 and store.stats()["claimed"] == 0


def test_from_url_unix_socket(tmp_path: Any) -> None:
    from redis_servers import RedisServer

    from conversation_expiry.redis import RedisStore

    sock = tmp_path / "redis.sock"
    server = RedisServer(tmp_path / "unix", extra=["--unixsocket", str(sock)]).start()
    try:
        store = RedisStore.from_url(f"unix://{sock}", namespace="unix")
        store.bind(Policy(ttl=TTL), ManualClock(START))
        store.register("a", None, None)
        assert store.count() == 1
        store.close()
    finally:
        server.stop()


def test_a_huge_ttl_is_capped_not_wrapped(store: Any) -> None:
    state, _ = store.register("forever", 1e12, None)  # 31,000 years
    years = (state.expires_at - state.created_at).days / 365.25
    assert 140 < years < 143 and store.is_live("forever")
