"""Several processes on one Redis: exactly once overall, crashes, stalls, outages, clock skew.

Every child is a real process (``multiprocessing`` with the ``spawn`` context) running its own
manager (see ``redis_agent``); the parent is one more process where that helps. What children
see is read from their record files, stamped with real wall time (the same clock for every
process of this host, and the one Redis reads with ``TIME``). Every wait is bounded, and
children are killed in ``finally``.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_servers import RedisServer

pytest.importorskip("redis")

from redis_agent import read_records, run_agent, run_churn

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationState,
    ExpiryReason,
    StoreUnavailableError,
)

SPAWN = multiprocessing.get_context("spawn")
START_TIMEOUT = 30.0  # a spawned child imports redis-py and the library: about a second
CALL_TIMEOUT = 10.0
LEASE = 1.0
INTERVAL = 0.1
SLACK = 0.75  # scheduling on a loaded 2-core machine, on top of every bound the API gives


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    return f"proc-{uuid.uuid4().hex[:12]}"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)  # a bounded poll


class Agent:
    """A child process with one manager, driven over a pipe (see ``redis_agent.run_agent``)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.records_path = config["records"]
        self.release_path = Path(config["release"])
        self._conn, child = SPAWN.Pipe()
        self.proc = SPAWN.Process(target=run_agent, args=(config, child), daemon=True)
        self.proc.start()
        child.close()
        if not self._conn.poll(START_TIMEOUT):
            raise AssertionError("agent did not start")
        kind, pid = self._conn.recv()
        assert kind == "ready"
        self.pid: int = pid

    def call(self, name: str, *args: Any, timeout: float = CALL_TIMEOUT) -> Any:
        self._conn.send((name, args))
        if not self._conn.poll(timeout):
            raise AssertionError(f"agent did not answer {name} within {timeout} s")
        reply = self._conn.recv()
        if reply[0] != "ok":
            raise AssertionError(f"agent {name}{args}: {reply[1]}: {reply[2]}")
        return reply[1]

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        return [r for r in read_records(self.records_path) if event is None or r["e"] == event]

    def release(self) -> None:
        """Let a blocked hook return."""
        self.release_path.touch()

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def close(self) -> None:
        """End the child: politely if it answers, else SIGKILL; always reaped."""
        self.release()  # a hook still blocked would hold up the child's stop()
        try:
            if self.proc.is_alive():
                try:
                    os.kill(self.pid, signal.SIGCONT)
                    self._conn.send(("quit", ()))
                    self._conn.poll(5)
                except (OSError, EOFError, BrokenPipeError):
                    pass
                self.proc.join(5)
        finally:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(5)
            self._conn.close()


@pytest.fixture
def agents(tmp_path: Path, url: str, namespace: str) -> Iterator[Callable[..., Agent]]:
    """Starts agents on the test's namespace; kills every one at the end."""
    made: list[Agent] = []

    def start(**config: Any) -> Agent:
        n = len(made)
        config = {
            "url": url,
            "namespace": namespace,
            "lease": LEASE,
            "interval": INTERVAL,
            "records": str(tmp_path / f"agent-{n}.jsonl"),
            "release": str(tmp_path / f"release-{n}"),
            **config,
        }
        agent = Agent(config)
        made.append(agent)
        return agent

    yield start
    for agent in made:
        agent.close()


class Local:
    """This process as one more worker: a manager whose callbacks are recorded with times."""

    def __init__(
        self, url: str, namespace: str, *, lease: float = LEASE, block: bool = False,
        **kwargs: Any,
    ) -> None:
        from conversation_expiry.redis import RedisStore

        self.expired: list[tuple[str, str, ExpiryReason, float]] = []  # id, created, reason, t
        self.cleanups: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        # With ``block``, on_expire waits (bounded) for ``release`` once it has recorded.
        self.block = block
        self.release = threading.Event()
        self.store = RedisStore.from_url(url, namespace=namespace, lease=lease)
        kwargs.setdefault("autostart", False)
        self.manager = ConversationExpiryManager(
            30, INTERVAL, store=self.store, on_expire=self._on_expire, **kwargs
        )

    def _on_expire(self, state: ConversationState, reason: ExpiryReason) -> None:
        with self._lock:
            self.expired.append((state.id, state.created_at.isoformat(), reason, time.time()))
        if self.block:
            self.release.wait(CALL_TIMEOUT)

    def cleanup(self, cid: str) -> Callable[[], None]:
        def fn() -> None:
            with self._lock:
                self.cleanups.append((cid, time.time()))

        return fn

    def expired_ids(self) -> list[str]:
        with self._lock:
            return [e[0] for e in self.expired]

    def close(self) -> None:
        self.release.set()
        self.manager.stop(5)
        self.store.close()


@pytest.fixture
def local(url: str, namespace: str) -> Iterator[Callable[..., Local]]:
    made: list[Local] = []

    def make(**kwargs: Any) -> Local:
        made.append(Local(url, namespace, **kwargs))
        return made[-1]

    yield make
    for m in made:
        m.close()


# -- exactly once across processes ------------------------------------------------------------

CHURN_WORKERS = 4
CHURN_IDS = 10_000
CHURN_TTL = 0.5
CHURN_SECONDS = 3.0


def test_four_processes_expire_each_conversation_once_and_never_early(
    tmp_path: Path, url: str, namespace: str, local: Callable[..., Local]
) -> None:
    ready, go, done = SPAWN.Semaphore(0), SPAWN.Event(), SPAWN.Event()
    outs = [tmp_path / f"churn-{k}.json" for k in range(CHURN_WORKERS)]
    procs = [
        SPAWN.Process(
            target=run_churn,
            args=({"url": url, "namespace": namespace, "lease": 5.0, "ttl": CHURN_TTL,
                   "interval": INTERVAL, "ids": CHURN_IDS, "workers": CHURN_WORKERS,
                   "mine": k, "seconds": CHURN_SECONDS, "seed": k, "out": str(outs[k])},
                  ready, go, done),
            daemon=True,
        )
        for k in range(CHURN_WORKERS)
    ]
    observer = local()
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + START_TIMEOUT
        for _ in procs:  # each registered its share (the first may have expired already)
            assert ready.acquire(timeout=max(0.0, deadline - time.monotonic()))
        go.set()
        # After the churn every conversation expires within the ttl, and some worker sweeps it.
        wait_until(lambda: not any(p.exitcode is None for p in procs) or _drained(observer),
                   CHURN_SECONDS + START_TIMEOUT, "every conversation to expire and be acked")
        done.set()
        for p in procs:
            p.join(START_TIMEOUT)
        assert [p.exitcode for p in procs] == [0] * CHURN_WORKERS
    finally:
        done.set()
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(5)

    runs = [json.loads(o.read_text()) for o in outs]
    assert [r["errors"] for r in runs] == [[]] * CHURN_WORKERS
    last_activity: dict[tuple[str, str], float] = {}
    for r in runs:
        for cid, created, t in r["activity"]:
            key = (cid, created)
            last_activity[key] = max(t, last_activity.get(key, t))
    expiries = [(cid, created, reason, t) for r in runs for cid, created, reason, t in r["expired"]]
    counts = Counter((cid, created) for cid, created, _, _ in expiries)

    assert len(last_activity) > CHURN_IDS  # ids expired and started again during the churn
    assert {k for k, n in counts.items() if n > 1} == set(), "on_expire ran twice"
    assert set(last_activity) - set(counts) == set(), "incarnations that never got on_expire"
    assert set(counts) - set(last_activity) == set()
    assert {reason for _, _, reason, _ in expiries} == {"expired"}
    early = [(cid, t - last_activity[(cid, created)]) for cid, created, _, t in expiries
             if t - last_activity[(cid, created)] < CHURN_TTL]
    assert early == [], "expired less than its ttl after its last activity"
    by_process = [len(r["expired"]) for r in runs]
    assert all(n > 0 for n in by_process), f"some process never claimed: {by_process}"


def _drained(observer: Local) -> bool:
    """Nothing live, nothing past due waiting for a claim, nothing claimed and unacknowledged."""
    stats = observer.store.stats()
    return (stats["live"], stats["due"], stats["claimed"], stats["dead"]) == (0, 0, 0, 0)


# -- crashes and stalls --------------------------------------------------------------------------


def _claimed_by(holder: Agent, other: Local, ids: list[str]) -> None:
    """Make ``ids`` past due, have ``holder`` claim them all in one sweep, its hook blocked."""
    for cid in ids:
        holder.call("register", cid, 0.05)
    wait_until(lambda: all(other.manager.is_expired(c) for c in ids), 5, "all past due")
    holder.call("sweep_async")
    wait_until(lambda: len(holder.records("expire")) == 1, 10, "the holder's hook to start")
    assert other.store.stats()["claimed"] == len(ids)


def test_claims_held_by_a_live_process_are_not_taken_over(
    agents: Callable[..., Agent], local: Callable[..., Local]
) -> None:
    holder = agents(hook="block", autostart=False)
    other = local()
    _claimed_by(holder, other, [f"slow-{i}" for i in range(5)])
    other.manager.start()
    # Three leases pass while the holder's hook runs: it renews, so nobody takes over.
    deadline = time.monotonic() + 3 * LEASE
    while time.monotonic() < deadline:
        assert other.expired_ids() == []
        time.sleep(0.05)  # a bounded watch
    assert other.store.stats()["claimed"] == 5
    assert len(holder.records("expire")) == 1


def test_claims_of_a_killed_process_are_taken_over_within_the_lease(
    agents: Callable[..., Agent], local: Callable[..., Local]
) -> None:
    holder = agents(hook="block", autostart=False)
    other = local()
    ids = [f"crash-{i}" for i in range(20)]
    _claimed_by(holder, other, ids)
    other.manager.start()
    holder.signal(signal.SIGKILL)
    killed = time.time()
    holder.proc.join(5)
    wait_until(lambda: len(other.expired) >= len(ids), LEASE + INTERVAL + 5, "the takeover")
    took = max(t for _, _, _, t in other.expired) - killed
    assert sorted(other.expired_ids()) == sorted(ids)  # each once
    assert {reason for _, _, reason, _ in other.expired} == {ExpiryReason.EXPIRED}
    assert took <= LEASE + INTERVAL + SLACK, f"takeover took {took:.2f} s"
    assert other.store.stats()["claimed"] == 0


def test_late_ack_of_a_stalled_process_has_no_effect_and_is_counted(
    agents: Callable[..., Agent], local: Callable[..., Local]
) -> None:
    stalled = agents(hook="block", autostart=False)
    taker = local(block=True)  # its on_expire holds the taken-over claim until released
    _claimed_by(stalled, taker, ["x"])
    before = taker.store.stats()
    stalled.signal(signal.SIGSTOP)
    try:
        taker.manager.start()
        wait_until(lambda: taker.expired_ids() == ["x"], LEASE + INTERVAL + 5, "the takeover")
        fresh = taker.manager.register_conversation("x")  # a new incarnation meanwhile
        stalled.release()
    finally:
        stalled.signal(signal.SIGCONT)
    wait_until(lambda: bool(stalled.records("released")), 10, "the stalled hook to return")
    wait_until(lambda: taker.store.stats()["late_acks"] > before["late_acks"], 10,
               "the late ack")
    during = taker.store.stats()
    assert during["late_acks"] == before["late_acks"] + 1
    assert during["claimed"] == 1  # the taker's claim stands
    assert taker.manager.get("x") == fresh  # and the new incarnation is untouched
    taker.release.set()
    wait_until(lambda: taker.store.stats()["claimed"] == 0, 5, "the taker's ack")
    after = taker.store.stats()
    assert after["late_acks"] == during["late_acks"]  # the taker's ack was on time
    assert taker.manager.get("x") == fresh
    assert taker.expired_ids() == ["x"]


# -- cleanups where they were attached, and a process leaving --------------------------------


def test_cleanup_attached_in_one_process_runs_there_when_ended_in_another(
    agents: Callable[..., Agent], local: Callable[..., Local]
) -> None:
    a = agents()
    b = local()
    for cid in ("ended", "marker"):
        b.manager.register_conversation(cid)
        a.call("add_cleanup", cid, "a")
    b.manager.add_cleanup("ended", b.cleanup("ended"))
    ended_at = time.time()
    assert b.manager.end_conversation("ended")
    assert [cid for cid, _ in b.cleanups] == ["ended"]  # B's own, here, at once
    wait_until(lambda: bool(a.records("cleanup")), 5, "A's cleanup")
    ran = a.records("cleanup")[0]["t"] - ended_at
    assert ran <= 2 * INTERVAL + SLACK, f"A's cleanup came {ran:.2f} s after the end"
    # A processes departures in order: once the marker's cleanup ran, a second run of the
    # first would have shown.
    b.manager.end_conversation("marker")
    wait_until(lambda: len(a.records("cleanup")) == 2, 5, "A's cleanup of the marker")
    assert [r["id"] for r in a.records("cleanup")] == ["ended", "marker"]
    assert a.records("expire") == []
    assert [(cid, reason) for cid, _, reason, _ in b.expired] == [
        ("ended", ExpiryReason.ENDED), ("marker", ExpiryReason.ENDED)
    ]


def test_cleanup_attached_in_one_process_runs_there_when_it_expires(
    agents: Callable[..., Agent], local: Callable[..., Local]
) -> None:
    a = agents()
    b = local()
    b.manager.start()
    state = b.manager.register_conversation("idle", ttl=0.3)
    a.call("add_cleanup", "idle", "a")
    wait_until(lambda: bool(a.records("cleanup")), 5, "A's cleanup")
    ran = a.records("cleanup")[0]["t"] - state.expires_at.timestamp()
    assert 0 <= ran <= 2 * INTERVAL + SLACK
    expiries = b.expired_ids() + [r["id"] for r in a.records("expire")]
    assert expiries == ["idle"]  # on_expire once, in whichever process claimed it


def test_stop_with_cleanup_remaining_releases_only_this_process(
    agents: Callable[..., Agent], local: Callable[..., Local]
) -> None:
    a = agents(autostart=False)
    b = local()
    created = a.call("register", "shared")["created"]
    a.call("add_cleanup", "shared", "a")
    b.manager.add_cleanup("shared", b.cleanup("shared"))
    before = b.store.stats()["live"]
    a.call("stop", True)
    assert [r["id"] for r in a.records("cleanup")] == ["shared"]
    assert a.records("expire") == []
    state = b.manager.get("shared")
    assert state is not None and state.created_at.isoformat() == created
    assert b.store.stats()["live"] == before
    assert b.cleanups == [] and b.expired == []
    # It leaves later like any other, once: B's hook and cleanup; A's ran at A's stop only.
    assert b.manager.end_conversation("shared")
    assert [(cid, reason) for cid, _, reason, _ in b.expired] == [("shared", ExpiryReason.ENDED)]
    assert [cid for cid, _ in b.cleanups] == ["shared"]
    assert len(a.records("cleanup")) == 1


# -- clocks ------------------------------------------------------------------------------------


def test_process_with_its_clock_an_hour_ahead_expires_nothing_early(
    agents: Callable[..., Agent], local: Callable[..., Local]
) -> None:
    ttl = 1.0
    b = local()
    skewed = agents(skew=3600.0)
    assert skewed.call("now") - time.time() > 3500  # the skew took
    started: dict[str, float] = {}
    for i in range(20):
        started[f"here-{i}"] = time.time()
        b.manager.register_conversation(f"here-{i}", ttl=ttl)
        started[f"there-{i}"] = time.time()
        skewed.call("register", f"there-{i}", ttl)
    wait_until(lambda: len(skewed.records("expire")) == len(started), ttl + 10,
               "the skewed process to expire them all")
    early = {r["id"]: r["t"] - started[r["id"]] for r in skewed.records("expire")
             if r["t"] - started[r["id"]] < ttl}
    assert early == {}
    late = {r["id"]: r["t"] - started[r["id"]] for r in skewed.records("expire")
            if r["t"] - started[r["id"]] > ttl + INTERVAL + 2 * SLACK}
    assert late == {}


# -- outages -----------------------------------------------------------------------------------


OUTAGE_TIMEOUT = 0.25  # the client's socket timeouts in the outage test


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own (append-only file on), to kill and restart."""
    server = RedisServer(tmp_path / "aof", appendonly=True)
    server.start()
    yield server
    server.stop()


def _outage_store(url: str, namespace: str) -> Any:
    import redis
    from redis.backoff import ConstantBackoff
    from redis.retry import Retry

    from conversation_expiry.redis import RedisStore

    client = redis.Redis.from_url(
        url,
        socket_timeout=OUTAGE_TIMEOUT,
        socket_connect_timeout=OUTAGE_TIMEOUT,
        retry=Retry(ConstantBackoff(0.05), 2),
    )
    return RedisStore(client, namespace=namespace, lease=LEASE)


def test_outage_is_survived_reported_once_and_loses_nothing(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conversation_expiry")
    url = own_server.url
    namespace = f"outage-{uuid.uuid4().hex[:8]}"
    stores = [_outage_store(url, namespace) for _ in range(2)]
    expired: list[str] = []
    sweepers = [f"outage-sweeper-{k}" for k in range(2)]
    managers = [
        ConversationExpiryManager(60, INTERVAL, store=s, thread_name=name,
                                  on_expire=lambda st, r: expired.append(st.id))
        for s, name in zip(stores, sweepers, strict=True)
    ]
    ids = [f"kept-{i}" for i in range(200)]
    for cid in ids:
        managers[0].register_conversation(cid)
    touched: dict[str, ConversationState] = {}  # the last touch reported done before the kill
    failures: list[float] = []  # seconds each failed call took
    after_restart = [0]
    restarted = threading.Event()
    stop = threading.Event()
    unexpected: list[BaseException] = []

    def load() -> None:
        rng = random.Random(0)
        while not stop.is_set():
            cid = rng.choice(ids)
            t = time.monotonic()
            try:
                state = managers[1].update_activity(cid)
            except StoreUnavailableError as exc:
                if exc.__cause__ is None:
                    unexpected.append(exc)
                failures.append(time.monotonic() - t)
                continue
            except BaseException as exc:
                unexpected.append(exc)
                return
            if restarted.is_set():
                after_restart[0] += 1
            elif not failures:
                touched[cid] = state

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        wait_until(lambda: len(touched) > 50, 5, "load before the outage")
        own_server.kill()
        wait_until(lambda: len(failures) >= 5, 10, "calls failing during the outage")
        wait_until(lambda: all(_logged(caplog, n) for n in sweepers), 10,
                   "both managers to report the outage")
        restart_at = time.time()
        own_server.start()
        restarted.set()
        wait_until(lambda: after_restart[0] > 50, 10, "load after the restart")
        wait_until(lambda: all(_logged(caplog, n, since=restart_at) for n in sweepers), 10,
                   "both managers to report the recovery")
        # Resumed: a short conversation expires through the threads again.
        managers[0].register_conversation("after", ttl=0.2)
        wait_until(lambda: "after" in expired, 5, "a sweep after the outage")
        survived = [m.running for m in managers]
    finally:
        stop.set()
        loader.join(5)
        for m in managers:
            m.stop(5)
        for s in stores:
            s.close()
    assert unexpected == []
    assert max(failures) <= 3 * (2 * OUTAGE_TIMEOUT + 0.05) + SLACK  # within the timeouts
    assert survived == [True, True]
    for name in sweepers:  # once each way, per manager
        during = _logged(caplog, name, until=restart_at)
        assert [r.levelno >= logging.WARNING for r in during] == [True]
        assert len(_logged(caplog, name, since=restart_at)) == 1
    check = _outage_store(url, namespace)
    try:
        m = ConversationExpiryManager(60, 3600, store=check, autostart=False)
        states = {cid: m.get(cid) for cid in ids}
        assert [cid for cid, st in states.items() if st is None] == []  # nothing lost
        stale = [cid for cid, st in touched.items()
                 if st.last_activity > states[cid].last_activity]  # type: ignore[union-attr]
        assert stale == []  # no activity reported done was lost
        assert expired == ["after"]
    finally:
        check.close()


def _logged(
    caplog: pytest.LogCaptureFixture, thread: str, since: float = 0.0, until: float = math.inf
) -> list[logging.LogRecord]:
    """The library's log records from one cleanup thread, between two wall times."""
    return [r for r in caplog.records if r.name.startswith("conversation_expiry")
            and r.threadName == thread and since <= r.created < until]


def test_calls_to_a_hung_server_fail_within_the_client_timeouts(own_server: RedisServer) -> None:
    store = _outage_store(own_server.url, f"hung-{uuid.uuid4().hex[:8]}")
    manager = ConversationExpiryManager(60, 3600, store=store, autostart=False)
    try:
        manager.register_conversation("c")
        assert own_server.proc is not None
        own_server.proc.send_signal(signal.SIGSTOP)  # accepts nothing, answers nothing
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError) as caught:
                manager.update_activity("c")
            took = time.monotonic() - started
        finally:
            own_server.proc.send_signal(signal.SIGCONT)
        assert caught.value.__cause__ is not None
        assert OUTAGE_TIMEOUT <= took <= 3 * (OUTAGE_TIMEOUT + 0.05) + SLACK
        assert manager.update_activity("c").id == "c"  # and it works again when Redis does
    finally:
        manager.stop()
        store.close()
