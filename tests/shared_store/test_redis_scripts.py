"""RedisStore's scripts: safe to run twice, on a clock that never runs back, one round trip
per touch, and short enough never to stall the server's other clients."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from support import START, at

from conversation_expiry import ConversationExpiredError, ExpiryReason, ManualClock, SystemClock
from conversation_expiry._store import Policy
from conversation_expiry.redis._codec import encode_id

pytest.importorskip("redis")

TTL = 10.0


class SteppingClock:
    """A clock that can be set anywhere, backwards too (a server clock step, a failover)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.base = START.timestamp()

    def monotonic(self) -> float:
        return self.now

    def wall_offset(self) -> float:
        return self.base


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def store(redis_store: Callable[..., Any], clock: ManualClock) -> Any:
    s = redis_store()
    s.bind(Policy(ttl=TTL), clock)
    return s


def run_twice(store: Any, name: str, args: list[Any], request: bool = False) -> tuple[Any, Any]:
    """One script sent twice with the same arguments (and request key), as a retry would."""
    script = getattr(store._scripts, name)
    keys = list(store.keys) + ([store.prefix + b"r:test-request"] if request else [])
    argv = [store._now_arg(), store.owner, store._lease_us, *args]
    return script(keys, argv), script(keys, argv)


def start_args(store: Any, cid: str, mode: bytes = b"r") -> list[Any]:
    return [encode_id(cid), mode, b"1", b"", *store._policy, b"0", b""]


def test_start_twice_is_one_start(store: Any) -> None:
    first, second = run_twice(store, "start", start_args(store, "a"), request=True)
    assert first[0] == 1 and second[0] == 0  # a start, then an activity at the same time
    assert first[1] == second[1] and store.count() == 1


def test_start_replacing_a_past_due_one_twice_claims_it_once(
    store: Any, clock: ManualClock
) -> None:
    store.register("a", None, None)
    clock.advance(TTL + 1)
    first, second = run_twice(store, "start", start_args(store, "a"), request=True)
    assert first == second and len(first[3]) == 1  # the retry gets the first reply
    assert store.stats()["claimed"] == 1 and store.count() == 1


def test_end_twice_is_one_end(store: Any) -> None:
    store.register("a", None, None)
    first, second = run_twice(store, "end", [encode_id("a")], request=True)
    assert first == second and len(first[1]) == 1
    assert store.stats()["claimed"] == 1


def test_touch_hold_ack_renew_twice(store: Any, clock: ManualClock) -> None:
    store.register("a", None, None)
    clock.advance(1)
    touch = store._scripts.touch  # keys C and W, then id, extend and time (touch.lua)
    argv = [encode_id("a"), b"1", store._now_arg()]
    first, second = touch(store.keys[:2], argv), touch(store.keys[:2], argv)
    assert first == second and isinstance(first, bytes)  # the same record, written once
    first, second = run_twice(store, "hold", [encode_id("a")])
    assert first == second and isinstance(first, int)
    clock.advance(TTL + 1)
    deps = store.claim(10).departures
    inc = deps.claim.incarnations
    assert run_twice(store, "renew", inc) == ([], [])
    assert run_twice(store, "ack", inc) == (0, 0)  # the retry is neither late nor harmful
    assert store.stats()["claimed"] == 0 and store.stats()["late_acks"] == 0


def test_claim_twice_orphans_nothing_for_good(
    redis_store: Callable[..., Any], store: Any, clock: ManualClock
) -> None:
    store.register("a", None, None)
    clock.advance(TTL + 1)
    first, second = run_twice(store, "claim", [10])
    assert len(first[3]) == 1 and second[3] == []  # the retry claims nothing more
    # The first reply was lost: its claim is nobody's known work, so it lapses and is taken over.
    other = redis_store(namespace=store.namespace, lease=30.0)
    other.bind(Policy(ttl=TTL), clock)
    clock.advance(store.lease + 1)
    taken = other.claim(10).departures
    assert [s.id for s in taken.states] == ["a"] and taken.reasons == [ExpiryReason.EXPIRED]
    other.ack(taken)


def test_time_never_runs_back(redis_store: Callable[..., Any]) -> None:
    stepping = SteppingClock()
    store = redis_store()
    store.bind(Policy(ttl=TTL), stepping)
    stepping.now = 100.0
    store.register("a", None, None)
    stepping.now = 50.0  # the clock stepped back by 50 s
    state = store.touch("a", True)
    assert state.last_activity == at(100) and state.expires_at == at(100 + TTL)
    state, _ = store.register("b", None, None)
    assert state.created_at == at(100)  # the store's time stood still instead
    stepping.now = 100 + TTL
    assert store.claim(10).departures.states == []  # never early
    stepping.now = 100 + TTL + 1
    assert sorted(s.id for s in store.claim(10).departures.states) == ["a", "b"]


def test_server_time_stepped_back_is_guarded(redis_store: Callable[..., Any]) -> None:
    store = redis_store()
    store.bind(Policy(ttl=TTL), SystemClock())
    ahead = datetime.now(timezone.utc) + timedelta(hours=1)

    def mark(moment: datetime) -> None:
        us = (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
        store._client.hset(store.prefix + b"c", b"\xff", b"s%d" % us)  # the time mark

    # A failover to a server whose clock is an hour behind the last one: the mark stays.
    mark(ahead)
    state, _ = store.register("a", None, None)
    assert abs((state.created_at - ahead).total_seconds()) < 1
    assert store.is_live("a")
    state = store.touch("a", True)  # a touch writes no mark, but decides on it
    assert abs((state.last_activity - ahead).total_seconds()) < 1
    mark(ahead + timedelta(seconds=TTL + 1))  # as if that server's time had gone on
    with pytest.raises(ConversationExpiredError):
        store.touch("a", True)
    assert not store.is_live("a")


def test_touch_is_one_round_trip(
    store: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.register("a", None, None)
    client = store._client
    store.touch("a", True)  # the script is loaded now
    sent: list[Any] = []
    real = client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "execute_command", counting)
    client.config_resetstat()
    for _ in range(50):
        clock.advance(0.5)
        store.touch("a", True)
    monkeypatch.undo()
    calls = {k: v["calls"] for k, v in client.info("commandstats").items()}
    assert calls.pop("cmdstat_evalsha") == 50 and sent.count("EVALSHA") == 50
    # What is left ran inside the script (or is this test's own INFO / CONFIG): the record and
    # the time mark read together, the record written; not the deadline index (lib_due.lua).
    assert calls == {"cmdstat_hmget": 50, "cmdstat_hset": 50, "cmdstat_config|resetstat": 1}
    assert sent == ["CONFIG RESETSTAT"] + ["EVALSHA"] * 50


def test_scripts_reload_after_a_flush(store: Any) -> None:
    store.register("a", None, None)
    store._client.script_flush()  # as after a restart or a failover
    assert store.touch("a", True).id == "a" and store.count() == 1
    store._client.script_flush()
    assert store.get("a") is not None and store.claim(10).departures.states == []


def test_no_script_runs_longer_than_5ms(
    redis_store: Callable[..., Any], clock: ManualClock
) -> None:
    store = redis_store()
    store.bind(Policy(ttl=TTL, warning_before=2.0), clock)
    client = store._client
    pipe = client.pipeline(transaction=False)
    for n in range(3000):
        cid = f"conv-{n:06d}"
        args = [store._now_arg(), store.owner, store._lease_us, *start_args(store, cid, b"e")]
        pipe.evalsha(store._scripts.start.sha, len(store.keys) + 1, *store.keys,
                     store.prefix + b"r:bulk", *args)  # fmt: skip
    store.count()  # loads the scripts
    store.register("x", None, None)
    pipe.execute()
    old = client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    client.config_set("slowlog-log-slower-than", 5000)
    client.slowlog_reset()
    client.config_resetstat()
    try:
        clock.advance(TTL - 1)  # all in their warning window
        batches = 0
        while store.claim(256).more:
            batches += 1
        clock.advance(2)
        while True:
            sweep = store.claim(256)
            batches += 1
            store.ack(sweep.departures)
            if not sweep.more:
                break
        assert store.count() == 0
        evalsha = client.info("commandstats")["cmdstat_evalsha"]
        slow = client.slowlog_get(100)
    finally:
        client.config_set("slowlog-log-slower-than", old)
    # About 1 ms a batch (the store claims 128 of the 256 asked) on an idle 2-core host. A loaded
    # host (these tests run next to multi-process ones) can preempt the server mid-script, so
    # allow the odd one over 5 ms.
    assert evalsha["usec_per_call"] < 2500, evalsha
    assert len(slow) <= max(1, batches // 10), [(e["duration"], e["command"][:60]) for e in slow]


def test_the_stream_is_trimmed_in_a_way_readers_notice(store: Any) -> None:
    from conversation_expiry.redis._scripts import parts

    prelude = parts("stream")
    body = (
        "for n = 1, 10250 do publish('c' .. n, tostring(n), 1, 'o') end "
        "return redis.call('XLEN', S)"
    )
    client = store._client
    length = client.eval(prelude + "\n" + body, len(store.keys), *store.keys, b"", b"x" * 16, b"1")
    assert 10000 <= length <= 10100
    info = client.xinfo_stream(store.prefix + b"s")
    assert info["max-deleted-entry-id"] != b"0-0"  # what events.lua compares a cursor with


class LosesScripts:
    """A client whose server lost its scripts: EVALSHA fails once; records what is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def execute_command(self, *command: Any) -> Any:
        self.sent.append(command)
        if command[0] == "EVALSHA" and len(self.sent) == 1:
            from redis.exceptions import NoScriptError

            raise NoScriptError("NOSCRIPT No matching script")
        return b"ok"

    def script_load(self, text: str) -> None:  # (a Cluster sends it to every primary)
        raise AssertionError("SCRIPT LOAD is not routed by key")


def test_a_script_the_server_lost_is_sent_whole_to_where_its_keys_are() -> None:
    from conversation_expiry.redis._scripts import Script

    client = LosesScripts()
    script = Script(client, "read")
    assert script([b"k1", b"k2"], [b"a"]) == b"ok"
    evalsha, again = client.sent
    assert evalsha == ("EVALSHA", script.sha, 2, b"k1", b"k2", b"a")
    assert again == ("EVAL", script.text, 2, b"k1", b"k2", b"a")
