"""RedisStore when Redis is gone, comes back, refuses, or may evict: the faults it reports."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_servers import RedisServer
from support import START

from conversation_expiry import ManualClock, StoreUnavailableError
from conversation_expiry._store import Policy

redis = pytest.importorskip("redis")
from redis import exceptions as rx  # noqa: E402
from redis.backoff import ConstantBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

from conversation_expiry.redis import RedisStore  # noqa: E402

TIMEOUT = 0.25
RETRIES = 2
# Each call gives up within its attempts' timeouts plus backoff; with slack for a loaded host.
BOUND = (RETRIES + 1) * (2 * TIMEOUT + 0.05) + 2.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    s = RedisServer(tmp_path / "aof", appendonly=True).start()
    yield s
    s.stop()


def make_store(server: RedisServer, clock: ManualClock, **kw: Any) -> RedisStore:
    client = server.client(
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        retry=Retry(ConstantBackoff(0.05), RETRIES),
    )
    store = RedisStore(client, namespace="outage", **kw)
    store.bind(Policy(ttl=10.0), clock)
    return store


def test_killed_server_raises_store_unavailable_then_recovers_with_data(
    server: RedisServer,
) -> None:
    clock = ManualClock(START)
    store = make_store(server, clock)
    store.register("kept", None, '{"k":1}')
    store.register("due", 1.0, None)
    server.kill()
    calls = [
        lambda: store.touch("kept", True),
        lambda: store.register("new", None, None),
        lambda: store.get("kept"),
        store.count,
        lambda: store.claim(10),
        lambda: store.end("kept"),
        lambda: store.hold("kept"),
        store.stats,
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            call()
        assert time.monotonic() - started < BOUND
        assert isinstance(info.value.__cause__, rx.ConnectionError | rx.TimeoutError)
    server.start()  # same port, the append-only file replayed; the script cache is empty
    state = store.get("kept")
    assert state is not None and state.metadata == {"k": 1}
    assert store.get("new") is None  # nothing reported done that was not
    clock.advance(2)
    sweep = store.claim(10)
    assert [s.id for s in sweep.departures.states] == ["due"]
    store.ack(sweep.departures)
    assert store.stats()["claimed"] == 0
    store.close()


def ack_lost_to_an_outage(server: RedisServer, clock: ManualClock, lease: float) -> Any:
    """A store whose claim of "a" could not be acknowledged while Redis was down; Redis is
    back. Returns the store and the claim's departures."""
    store = make_store(server, clock, lease=lease)
    store.register("a", 1.0, None)
    clock.advance(2)
    deps = store.claim(10).departures
    server.kill()
    with pytest.raises(StoreUnavailableError):
        store.ack(deps)
    server.start()
    return store, deps


def test_an_ack_lost_to_an_outage_is_retried_by_the_keeper(server: RedisServer) -> None:
    store, deps = ack_lost_to_an_outage(server, ManualClock(START), lease=0.6)
    deadline = time.monotonic() + 10
    while store.stats()["claimed"] != 0:  # the keeper acknowledges it once Redis is back
        assert time.monotonic() < deadline, "the failed ack was never retried"
        time.sleep(0.05)  # polling the server: the keeper has no event to wait on
    assert deps.claim.acked and store.late_acks == 0
    store.ack(deps)  # the manager may retry too: nothing more happens
    store.close()


def test_a_sweep_sends_the_acks_lost_to_an_outage_before_it_claims(server: RedisServer) -> None:
    # An outage longer than the lease: the claim lapsed meanwhile, and a claim that took it over
    # would run on_expire again for a conversation this process had finished.
    clock = ManualClock(START)
    store, deps = ack_lost_to_an_outage(server, clock, lease=30.0)  # keeper's retry: 10 s away
    clock.advance(31)  # the lease has lapsed
    assert store.claim(10).departures.states == []
    stats = store.stats()
    assert deps.claim.acked and stats["claimed"] == 0 and stats["takeovers"] == 0
    store.close()


def test_close_sends_the_acks_lost_to_an_outage(server: RedisServer) -> None:
    # A sweep from cron: no keeper period and no next sweep before the process ends.
    clock = ManualClock(START)
    store, deps = ack_lost_to_an_outage(server, clock, lease=30.0)
    store.close()
    assert deps.claim.acked
    other = make_store(server, clock)
    assert other.stats()["claimed"] == 0
    other.close()


def test_close_names_the_acks_it_could_not_send(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(START)
    store, _deps = ack_lost_to_an_outage(server, clock, lease=30.0)
    server.kill()
    with caplog.at_level(logging.WARNING, logger="conversation_expiry"):
        store.close()
    (record,) = [r for r in caplog.records if "unsent" in r.getMessage()]
    assert record.levelno == logging.WARNING and "'a'" in record.getMessage()
    server.start()


def test_an_exit_out_of_time_asks_nothing_of_a_shared_store(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # EXIT_TIMEOUT spent (waiting for a thread blocked on a Redis that is gone): the exit must
    # not call Redis again, which would raise or add its timeouts.
    from conversation_expiry import ConversationExpiryManager

    client = server.client(socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    store = RedisStore(client, namespace="exit")
    m = ConversationExpiryManager(
        10, 3600, clock=ManualClock(START), store=store, autostart=False
    )
    m.register_conversation("a")
    m.add_cleanup("a", lambda: None)
    server.kill()
    with caplog.at_level(logging.WARNING, logger="conversation_expiry"):
        m._stop(None, True, cleanup_for=0.0)
    assert any("1 conversations' cleanups held here left" in r.getMessage() for r in caplog.records)
    store.close()


def test_maxmemory_policy_that_can_evict_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cases = [
        ("allkeys-lru", 1),
        ("volatile-lru", 0),  # the store's keys have no TTL: volatile-* never evicts them
        ("noeviction", 0),
    ]
    for policy, warnings in cases:
        s = RedisServer(tmp_path / policy, extra=["--maxmemory-policy", policy]).start()
        try:
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="conversation_expiry"):
                store = RedisStore(s.client(), namespace="mm")
                store.bind(Policy(ttl=10.0), ManualClock(START))
                store.register("a", None, None)
                store.count()
            got = [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
            assert len(got) == warnings, policy
            assert store.maxmemory_warned == bool(warnings)
            store.close()
        finally:
            s.stop()


def test_refused_config_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = RedisServer(tmp_path / "managed", extra=["--rename-command", "CONFIG", ""]).start()
    try:
        with caplog.at_level(logging.WARNING, logger="conversation_expiry"):
            store = RedisStore(s.client(), namespace="managed")
            store.bind(Policy(ttl=10.0), ManualClock(START))
            store.register("a", None, None)
        assert caplog.records == [] and store.count() == 1
        store.close()
    finally:
        s.stop()


class _Failing:
    """A client whose every script raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def register_script(self, source: str) -> Any:
        def run(keys: Any, args: Any) -> Any:
            raise self.error

        return run


@pytest.mark.parametrize(
    "error",
    [
        rx.ConnectionError("refused"),
        rx.TimeoutError("timed out"),
        rx.BusyLoadingError("LOADING Redis is loading the dataset in memory"),
        rx.ReadOnlyError("READONLY You can't write against a read only replica."),
        rx.ClusterDownError("CLUSTERDOWN The cluster is down"),
        rx.MasterDownError("MASTERDOWN Link with MASTER is down"),
        rx.TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
        rx.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'."),
        rx.ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's failing"),
        rx.ResponseError("NOREPLICAS Not enough good replicas to write."),
        rx.ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL"),
        rx.SlotNotCoveredError("slot not covered"),
        rx.MaxConnectionsError("Too many connections"),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:10],
)
def test_unavailable_errors_become_store_unavailable(error: Exception) -> None:
    store = RedisStore(_Failing(error), namespace="x")
    with pytest.raises(StoreUnavailableError) as info:
        store.count()
    assert info.value.__cause__ is error


def test_other_errors_are_not_disguised() -> None:
    error = rx.ResponseError("ERR Error running script: a bug")
    store = RedisStore(_Failing(error), namespace="x")
    with pytest.raises(rx.ResponseError):
        store.count()
