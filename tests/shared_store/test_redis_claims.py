"""Claims, leases, takeovers, dead letters and late acknowledgements of RedisStore."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from support import START, WAIT

from conversation_expiry import ExpiryReason, ManualClock, SystemClock
from conversation_expiry._store import Policy

pytest.importorskip("redis")

TTL = 10.0
LEASE = 5.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def make(redis_store: Callable[..., Any], clock: ManualClock) -> Callable[..., Any]:
    def factory(namespace: str | None = None, lease: float = LEASE, **policy: Any) -> Any:
        store = redis_store(namespace=namespace, lease=lease)
        policy.setdefault("ttl", TTL)
        store.bind(Policy(**policy), clock)
        return store

    return factory


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)  # polling the server: there is no event to wait on


def lease_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "conversation-expiry-lease"]


def test_lapsed_claim_is_taken_over_and_the_late_ack_counted(
    make: Callable[..., Any], clock: ManualClock
) -> None:
    a = make()
    b = make(namespace=a.namespace)
    a.register("x", None, '{"m":1}')
    clock.advance(TTL + 1)
    first = a.claim(10).departures
    assert [s.id for s in first.states] == ["x"]
    a.close()  # a process that died: its keeper renews nothing any more
    clock.advance(LEASE / 2)
    assert b.claim(10).departures.states == []  # the lease still holds
    clock.advance(LEASE)
    taken = b.claim(10).departures
    assert taken.states == first.states and taken.reasons == [ExpiryReason.EXPIRED]
    assert taken.states[0].metadata == {"m": 1}
    a.ack(first)  # late: b has it now; changes nothing
    assert a.late_acks == 1 and b.stats()["claimed"] == 1
    b.ack(taken)
    stats = b.stats()
    assert stats["claimed"] == 0 and stats["late_acks"] == 1 and stats["takeovers"] == 1
    assert b.late_acks == 0


def test_ack_after_the_takeover_was_acknowledged_is_late_too(
    make: Callable[..., Any], clock: ManualClock
) -> None:
    a = make()
    b = make(namespace=a.namespace)
    a.register("x", None, None)
    clock.advance(TTL + 1)
    first = a.claim(10).departures
    a.close()
    clock.advance(LEASE + 1)
    b.ack(b.claim(10).departures)
    a.ack(first)
    assert a.late_acks == 1 and b.stats()["late_acks"] == 1
    a.ack(first)  # the same Departures twice: acknowledged once
    assert a.late_acks == 1


def test_dead_letter_after_three_lapses(
    make: Callable[..., Any], clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    ns = make().namespace
    owners = []
    for _ in range(3):  # three processes each claim it, then die running its on_expire
        store = make(namespace=ns)
        if not owners:
            store.register("doomed", None, None)
            store.register("fine", 1000.0, None)
            clock.advance(TTL + 1)
        assert [s.id for s in store.claim(10).departures.states] == ["doomed"]
        store.close()
        owners.append(store)
        clock.advance(LEASE + 1)
    last = make(namespace=ns)
    with caplog.at_level(logging.ERROR, logger="conversation_expiry"):
        assert last.claim(10).departures.states == []
        clock.advance(LEASE + 1)
        assert last.claim(10).departures.states == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "doomed" in errors[0].getMessage()
    assert "dead-letter" in errors[0].getMessage()
    stats = last.stats()
    assert stats["dead"] == 1 and stats["claimed"] == 0 and stats["live"] == 1
    assert [s.id for s in last.dead_letters()] == ["doomed"]
    assert last.forget_dead_letters() == 1 and last.stats()["dead"] == 0


def test_dead_lettered_held_conversation_is_reported_to_its_holders(
    make: Callable[..., Any], clock: ManualClock
) -> None:
    holder = make()
    ns = holder.namespace
    holder.register("doomed", None, None)
    inc = holder.hold("doomed")
    clock.advance(TTL + 1)
    for _ in range(3):
        store = make(namespace=ns)
        store.claim(10)
        store.close()
        clock.advance(LEASE + 1)
    make(namespace=ns).claim(10)
    assert holder.left_elsewhere() == [("doomed", inc, ExpiryReason.EXPIRED)]


def test_the_keeper_renews_a_slow_claim(redis_store: Callable[..., Any]) -> None:
    lease = 0.3
    a = redis_store(lease=lease)
    b = redis_store(namespace=a.namespace, lease=lease)
    for s in (a, b):
        s.bind(Policy(ttl=0.001), SystemClock())  # the server's clock, in real time
    a.register("slow", None, None)
    wait_for(lambda: a.stats()["due"] == 1, "the conversation to fall due")
    deps = a.claim(10).departures
    assert [s.id for s in deps.states] == ["slow"] and a._keeper.running
    lease_key = a.prefix + b"l"
    client = a._client
    first = client.zscore(lease_key, deps.claim.incarnations[0])
    started = time.monotonic()
    # An on_expire slower than three leases: the lease keeps moving, nobody takes it over.
    while time.monotonic() - started < 3 * lease:
        assert b.claim(10).departures.states == []
        time.sleep(0.02)  # pacing the other process's sweeps
    assert client.zscore(lease_key, deps.claim.incarnations[0]) > first + 2 * lease * 1e6
    a.ack(deps)
    assert b.stats()["claimed"] == 0 and a.late_acks == 0
    wait_for(lambda: not a._keeper.running, "the keeper to stop with nothing outstanding")


def test_keeper_is_lazy_named_and_stopped_by_close(
    make: Callable[..., Any], clock: ManualClock
) -> None:
    store = make()
    before = len(lease_threads())
    store.register("x", None, None)
    assert not store._keeper.running and len(lease_threads()) == before
    clock.advance(TTL + 1)
    deps = store.claim(10).departures
    assert store._keeper.running and len(lease_threads()) == before + 1
    thread = store._keeper._thread
    assert thread is not None and thread.daemon
    store.close()
    assert not thread.is_alive()
    store.ack(deps)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# The keeper thread runs while forking: that is the case under test (Python 3.12+ warns).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_is_another_owner_with_its_own_keeper(
    make: Callable[..., Any], clock: ManualClock
) -> None:
    store = make()
    store.register("x", None, None)
    store.register("y", None, None)
    clock.advance(TTL + 1)
    parent_claim = store.claim(1).departures
    assert store._keeper.running
    parent_owner = store.owner
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        ok = (
            store.owner != parent_owner
            and store._keeper.outstanding == 0
            and not store._keeper.running
        )
        deps = store.claim(10).departures  # claims of its own start its own keeper
        ok = ok and [s.id for s in deps.states] == ["y"] and store._keeper.running
        store.ack(parent_claim)  # the parent's claim: late, no effect
        ok = ok and store.late_acks == 1
        store.ack(deps)
        store.close()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.stats()["claimed"] == 1  # the parent's claim is still the parent's
    store.ack(parent_claim)
    assert store.stats()["claimed"] == 0 and store.late_acks == 0


def test_a_stream_trimmed_past_the_cursor_is_reconciled(
    make: Callable[..., Any], clock: ManualClock
) -> None:
    holder = make()
    other = make(namespace=holder.namespace)
    for cid in ("ended", "kept", "claimed"):
        holder.register(cid, None, None)
    incs = {cid: holder.hold(cid) for cid in ("ended", "kept", "claimed")}
    assert holder.left_elsewhere() == []
    other.ack(other.end("ended"))
    pending = other.end("claimed")  # claimed, not yet acknowledged: it has left all the same
    # Trimmed before the holder read it (a busy namespace, a holder that polls rarely): the
    # scripts trim the oldest entries with XDEL.
    stream = holder.prefix + b"s"
    holder._client.xdel(stream, *[e[0] for e in holder._client.xrange(stream)])
    assert sorted(holder.left_elsewhere()) == [
        ("claimed", incs["claimed"], ExpiryReason.ENDED),  # its claim says why
        ("ended", incs["ended"], ExpiryReason.EXPIRED),  # no trace left: the reason is lost
    ]
    assert holder.left_elsewhere() == []
    other.ack(pending)
    assert holder.left_elsewhere() == []
    assert len(holder._held) == 1  # "kept" is still live


def test_a_claim_takes_at_most_one_bounded_batch(
    redis_store: Callable[..., Any], clock: ManualClock
) -> None:
    from conversation_expiry import ConversationExpiryManager
    from conversation_expiry._manager import SWEEP_BATCH
    from conversation_expiry.redis._store import CLAIM_BATCH

    assert CLAIM_BATCH < SWEEP_BATCH  # the manager asks for more than one script claims
    store = redis_store()
    expired: list[str] = []
    manager = ConversationExpiryManager(
        TTL, 3600, store=store, clock=clock, autostart=False,
        on_expire=lambda state, _reason: expired.append(state.id),
    )  # fmt: skip
    try:
        ids = [f"c{n}" for n in range(CLAIM_BATCH * 2 + 7)]
        for cid in ids:
            manager.register_conversation(cid)
        clock.advance(TTL + 1)
        sweep = store.claim(SWEEP_BATCH)
        assert len(sweep.departures.states) == CLAIM_BATCH and sweep.more
        store.ack(sweep.departures)
        first = {s.id for s in sweep.departures.states}
        rest = manager.cleanup_expired()  # the manager sweeps on while the store says more
        assert len(rest) == len(ids) - CLAIM_BATCH and set(rest) | first == set(ids)
        assert sorted(expired) == sorted(rest) and len(manager) == 0
    finally:
        manager.stop()


def test_a_keeper_that_keeps_failing_logs_once_and_says_when_it_works_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from conversation_expiry.redis._lease import LeaseKeeper

    renewed = threading.Event()
    attempts: list[int] = []

    def renew(incarnations: list[bytes]) -> list[bytes]:
        attempts.append(len(incarnations))
        if len(attempts) <= 5:
            raise RuntimeError("renew script broke")
        renewed.set()
        return []

    keeper = LeaseKeeper(renew, lambda: False, period=0.001, name="ce-test-keeper")
    with caplog.at_level(logging.WARNING, logger="conversation_expiry"):
        keeper.add([b"x"])
        assert renewed.wait(WAIT)
        keeper.close(WAIT)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("renewing claims failed" in text for text in messages) == 1
    assert any("works again after 5 failed renewals" in text for text in messages)


def test_a_keeper_whose_failure_report_raises_keeps_renewing() -> None:
    from support import logging_raises

    from conversation_expiry.redis._lease import LeaseKeeper

    renewed = threading.Event()
    attempts: list[int] = []

    def renew(incarnations: list[bytes]) -> list[bytes]:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("renew script broke")
        renewed.set()
        return []

    keeper = LeaseKeeper(renew, lambda: False, period=0.001, name="ce-test-keeper")
    with logging_raises("renewing claims failed") as raising:
        keeper.add([b"x"])
        assert renewed.wait(WAIT), "the keeper died: slow cleanups would run twice"
        keeper.close(WAIT)
    assert raising.left < 10**9


def test_the_keeper_keeps_an_ack_that_failed_while_it_retried_others() -> None:
    # An ack that fails (and asks for a retry) while the keeper retries the earlier ones must
    # not be forgotten when that retry ends: the keeper would renew its claim for ever.
    from conversation_expiry.redis._lease import LeaseKeeper

    keeper: LeaseKeeper

    def retry_acks() -> bool:
        keeper.acks_pending()  # another thread's ack failed just now
        return False  # the ones it retried went through

    keeper = LeaseKeeper(lambda incs: [], retry_acks, period=3600.0)
    try:
        keeper.acks_pending()
        keeper._tick([])
        assert keeper._acks_pending
    finally:
        keeper.close(timeout=WAIT)


def test_a_process_never_takes_over_a_claim_it_still_works_on(
    make: Callable[..., Any], clock: ManualClock
) -> None:
    # A ManualClock moved past the lease while this process's hook runs (on the cleanup
    # thread) and the test sweeps again: the claim is renewed, not claimed a second time.
    store = make()
    store.register("slow", None, None)
    clock.advance(TTL + 1)
    working = store.claim(10).departures
    assert [s.id for s in working.states] == ["slow"]
    store.register("next", None, None)
    clock.advance(LEASE + TTL + 1)
    again = store.claim(10).departures
    assert [s.id for s in again.states] == ["next"]
    store.ack(again)
    store.ack(working)
    assert store.stats()["takeovers"] == 0 and store.late_acks == 0


def test_another_process_still_takes_over_a_lapsed_claim(
    make: Callable[..., Any], clock: ManualClock
) -> None:
    a = make()
    b = make(namespace=a.namespace)
    a.register("x", None, None)
    clock.advance(TTL + 1)
    a.claim(10)
    a._keeper.close()  # a stalls: nothing renews its claim
    clock.advance(LEASE + 1)
    assert [s.id for s in b.claim(10).departures.states] == ["x"]


def test_a_departure_read_while_its_hold_is_under_way_is_reported_after_it(
    make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hold script has marked "v" held; before this process records that, another process
    # ends it and a sweep here reads the departure from the stream.
    holder = make()
    other = make(namespace=holder.namespace)
    holder.register("keep", None, None)
    holder.hold("keep")  # so that the sweep reads the stream
    holder.register("v", None, None)
    end_hold = holder._held.end_hold
    read_meanwhile: list[Any] = []

    def late_end_hold(inc: int | None, cid: str) -> None:
        other.ack(other.end("v"))
        read_meanwhile.append(holder.left_elsewhere())
        end_hold(inc, cid)

    monkeypatch.setattr(holder._held, "end_hold", late_end_hold)
    inc = holder.hold("v")
    assert read_meanwhile == [[]]
    assert holder.left_elsewhere() == [("v", inc, ExpiryReason.ENDED)]
    assert holder.left_elsewhere() == []


def test_departures_read_before_an_outage_cut_the_read_short_are_not_lost(
    make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from conversation_expiry import StoreUnavailableError
    from conversation_expiry.redis import _events

    holder = make()
    other = make(namespace=holder.namespace)
    incs = {}
    for cid in ("a", "b"):
        holder.register(cid, None, None)
        incs[cid] = holder.hold(cid)
    assert holder.left_elsewhere() == []
    for cid in ("a", "b"):
        other.ack(other.end(cid))
    monkeypatch.setattr(_events, "_READ", 1)  # one entry per page: "a", then the outage
    run = holder._run
    pages: list[int] = []

    def failing_second_page(script: Any, args: list[Any], request: bool = False) -> Any:
        if script is holder._scripts.events:
            pages.append(1)
            if len(pages) == 2:
                raise StoreUnavailableError("Redis is unavailable: gone mid-read")
        return run(script, args, request)

    monkeypatch.setattr(holder, "_run", failing_second_page)
    with pytest.raises(StoreUnavailableError):
        holder.left_elsewhere()
    monkeypatch.setattr(holder, "_run", run)
    ended = ExpiryReason.ENDED
    assert sorted(holder.left_elsewhere()) == [("a", incs["a"], ended), ("b", incs["b"], ended)]
    assert holder.left_elsewhere() == []


def test_a_sweep_between_a_hold_s_start_and_its_script_keeps_the_stream_read(
    make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = make()
    other = make(namespace=holder.namespace)
    holder.register("v", None, None)
    start_reading = holder._held.start_reading

    def then_a_sweep(run: Any, events: Any) -> None:
        start_reading(run, events)
        assert holder.left_elsewhere() == []  # the cleanup thread, at this very moment

    monkeypatch.setattr(holder._held, "start_reading", then_a_sweep)
    inc = holder.hold("v")
    other.ack(other.end("v"))
    assert holder.left_elsewhere() == [("v", inc, ExpiryReason.ENDED)]
