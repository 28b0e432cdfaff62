"""RedisStore through ``redis.cluster.RedisCluster`` on a real 3-node cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from support import START, at

from conversation_expiry import ConversationExpiredError, ExpiryReason, ManualClock
from conversation_expiry._store import Policy

redis = pytest.importorskip("redis")
from redis.crc import key_slot  # noqa: E402

TTL = 10.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def make(redis_cluster_store: Callable[..., Any], clock: ManualClock) -> Callable[..., Any]:
    def factory(namespace: str | None = None, **policy: Any) -> Any:
        store = redis_cluster_store(namespace=namespace, lease=5.0)
        policy.setdefault("ttl", TTL)
        store.bind(Policy(**policy), clock)
        return store

    return factory


def test_protocol_through_redis_cluster(make: Callable[..., Any], clock: ManualClock) -> None:
    here = make(warning_before=2.0, max_conversations=100)
    there = make(namespace=here.namespace)
    state, _ = here.register("a{1}", None, '{"k":1}')
    assert state.expires_at == at(TTL) and state.metadata == {"k": 1}
    here.register("b", 3.0, None)
    _, started, _ = here.ensure("c", True)
    assert started
    inc = here.hold("a{1}")
    clock.advance(1)
    assert there.touch("a{1}", True).expires_at == at(TTL + 1)  # one lifecycle
    assert there.count() == 3 and there.get("b") is not None and there.is_live("c")
    assert there.next_deadlines(1) == [("b", at(3))]
    clock.advance(3)
    with pytest.raises(ConversationExpiredError):
        there.touch("b", True)
    sweep = there.claim(10)
    assert [s.id for s in sweep.departures.states] == ["b"]
    assert sweep.departures.reasons == [ExpiryReason.EXPIRED]
    there.ack(sweep.departures)
    clock.advance(5)
    assert {s.id for s in here.claim(10).warned} == {"a{1}", "c"}
    deps = there.end("a{1}")
    assert deps.tokens == {"a{1}": inc}
    there.ack(deps)
    assert here.left_elsewhere() == [("a{1}", inc, ExpiryReason.ENDED)]
    stats = here.stats()
    assert stats["live"] == 1 and stats["claimed"] == 0 and stats["dead"] == 0


def test_every_key_in_one_slot_on_one_node(make: Callable[..., Any], clock: ManualClock) -> None:
    store = make(warning_before=5.0)
    store.register("x", None, None)
    store.hold("x")
    store.register("y", 1.0, None)
    clock.advance(2)
    store.claim(10)
    store.ack(store.end("x"))
    store.register("z", None, None)
    slot = key_slot(store.prefix)
    client = store._client
    node = client.get_node_from_key(store.prefix)
    keys = list(client.scan_iter(match=store.prefix + b"*", target_nodes=node))
    assert len(keys) >= 5 and {key_slot(k) for k in keys} == {slot}


def test_scripts_reload_on_every_node(make: Callable[..., Any]) -> None:
    store = make()
    store.register("a", None, None)
    store._client.script_flush()  # to every primary: as after failovers or restarts
    assert store.touch("a", True).id == "a" and store.count() == 1


def _not_owning(redis_cluster: Any, prefix: bytes) -> Any:
    """A node of the cluster that does not own ``prefix``'s slot."""
    client = redis_cluster.client()
    try:
        owner = client.get_node_from_key(prefix).port
    finally:
        client.close()
    return next(s for s in redis_cluster.servers if s.port != owner)


def test_from_url_of_a_node_not_owning_the_slot_makes_a_cluster_client(
    redis_cluster: Any, clock: ManualClock
) -> None:
    from redis.cluster import RedisCluster

    from conversation_expiry.redis import RedisStore
    from conversation_expiry.redis._scripts import key_names

    namespace = "from-url-cluster"
    node = _not_owning(redis_cluster, key_names(namespace)[0])
    store = RedisStore.from_url(node.url, namespace=namespace)
    try:
        assert isinstance(store._client, RedisCluster)
        pool = store._client.get_default_node().redis_connection.connection_pool
        assert pool.connection_kwargs["socket_timeout"] == 2.0  # the defaults carried over
        store.bind(Policy(ttl=TTL), clock)
        store.register("a", None, None)
        assert store.touch("a", True).id == "a" and store.count() == 1
        clock.advance(TTL + 1)
        sweep = store.claim(10)
        assert [s.id for s in sweep.departures.states] == ["a"]
        store.ack(sweep.departures)
    finally:
        store.close()
    forced = RedisStore.from_url(node.url, namespace=namespace, cluster=True)
    assert isinstance(forced._client, RedisCluster)
    forced.close()


def test_from_url_forced_plain_on_a_cluster_node_gets_moved(
    redis_cluster: Any, clock: ManualClock
) -> None:
    from conversation_expiry.redis import RedisStore
    from conversation_expiry.redis._scripts import key_names

    namespace = "from-url-plain"
    node = _not_owning(redis_cluster, key_names(namespace)[0])
    store = RedisStore.from_url(node.url, namespace=namespace, cluster=False)
    try:
        assert not isinstance(store._client, redis.cluster.RedisCluster)
        with pytest.raises(redis.exceptions.MovedError):
            store.count()  # what detection is there for
    finally:
        store.close()


class SilentThenClusterNode:
    """A plain client whose server does not answer, then says it is a Cluster node."""

    def __init__(self) -> None:
        self.answers = False
        self.closed = False

    def info(self, section: str) -> dict[str, Any]:
        if not self.answers:
            from redis.exceptions import ConnectionError

            raise ConnectionError("refused")
        return {"cluster_enabled": 1}

    def close(self) -> None:
        self.closed = True

    def execute_command(self, *args: Any) -> str:
        return "plain"


def test_a_deferred_client_becomes_a_cluster_client_once_the_node_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conversation_expiry.redis import _deferred

    class Cluster:
        def execute_command(self, *args: Any) -> str:
            return "cluster"

    monkeypatch.setattr(_deferred, "cluster_client", lambda url, options: Cluster())
    monkeypatch.setattr(_deferred, "_ASK_EVERY", 0.0)
    plain = SilentThenClusterNode()
    client = _deferred.DeferredClient("redis://node:7000", {}, plain)  # type: ignore[arg-type]
    assert client.execute_command("PING") == "plain"  # not answering: calls fail on it
    plain.answers = True
    assert client.execute_command("PING") == "cluster"
    assert client.execute_command("PING") == "cluster"


def test_a_deferred_client_fails_a_moved_reply_as_unavailable_and_asks_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Between the first question and the next, the plain client may reach the node again:
    # a MOVED reply then is the store being unavailable, not an error of the call.
    from redis import exceptions as rx

    from conversation_expiry.redis import _deferred

    class MovedNode(SilentThenClusterNode):
        def execute_command(self, *args: Any) -> str:
            raise rx.MovedError("3999 127.0.0.1:7001")

    client = _deferred.DeferredClient("redis://node:7000", {}, MovedNode())  # type: ignore[arg-type]
    with pytest.raises(rx.ConnectionError):
        client.execute_command("EVALSHA", "x", 1, "k")
    assert client._ce_ask_at == 0.0
