"""Issue 4: what the ``conversation_expiry`` logger writes.

One DEBUG line per sweep; callback failures at ERROR with the conversation id and traceback,
rate-limited so a callable failing on every sweep cannot flood the log; nothing on the hot path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from opentelemetry.sdk.trace import TracerProvider

import conversation_expiry._faults as faults_module
from conversation_expiry import (
    ConversationExpiryManager,
    ConversationNotFoundError,
    ConversationState,
    ExpiryReason,
    ManualClock,
)

START = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
TTL = 60.0
LOGGER = "conversation_expiry"
BURST = faults_module._BURST
WINDOW = faults_module._WINDOW


class FakeTime:
    """Stands in for the real monotonic clock the fault log windows are measured on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    real_wall = faults_module._REAL[1]
    monkeypatch.setattr(faults_module, "_REAL", (fake.monotonic, real_wall))
    return fake


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


@pytest.fixture
def manager(clock: ManualClock) -> Iterator[ConversationExpiryManager]:
    m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False)
    yield m
    m.stop()


def ours(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records
        if r.name.startswith(LOGGER) and (level is None or r.levelno == level)
    ]


def boom() -> None:
    raise RuntimeError("store is gone")


# -- sweeps ------------------------------------------------------------------------------------


def test_one_debug_line_per_sweep(
    logs: pytest.LogCaptureFixture, manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    for cid in ("a", "b", "c"):
        manager.register_conversation(cid)
    manager.cleanup_expired()
    clock.advance(TTL + 1)
    manager.cleanup_expired()
    manager.cleanup_expired()
    records = ours(logs)
    assert [r.levelno for r in records] == [logging.DEBUG] * 3
    messages = [r.getMessage() for r in records]
    assert "expired 0 conversations" in messages[0]
    assert "expired 3 conversations" in messages[1]
    assert "expired 0 conversations" in messages[2]


def test_sweep_line_counts_the_remaining_when_tracing(
    logs: pytest.LogCaptureFixture, clock: ManualClock
) -> None:
    tp = TracerProvider()
    m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False, tracer_provider=tp)
    try:
        m.register_conversation("a")
        m.cleanup_expired()
    finally:
        m.stop()
        tp.shutdown()
    [record] = ours(logs)
    assert "1 remaining" in record.getMessage()


def test_no_debug_line_when_debug_is_off(
    caplog: pytest.LogCaptureFixture, manager: ConversationExpiryManager
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    manager.cleanup_expired()
    assert ours(caplog) == []


def test_the_cleanup_thread_logs_one_line_per_sweep(
    logs: pytest.LogCaptureFixture, clock: ManualClock
) -> None:
    expired = threading.Event()
    m = ConversationExpiryManager(
        TTL, 0.01, clock=clock, autostart=False, on_expire=lambda s, r: expired.set()
    )
    m.register_conversation("x")
    clock.advance(TTL + 1)
    m.start()
    try:
        assert expired.wait(10)
    finally:
        m.stop()
    records = ours(logs)
    assert records and all(r.levelno == logging.DEBUG for r in records)
    assert all(r.threadName == "conversation-expiry-cleanup" for r in records)
    assert sum("expired 1 conversations" in r.getMessage() for r in records) == 1


# -- the hot path ------------------------------------------------------------------------------


@pytest.mark.parametrize("tracing", [False, True])
def test_request_calls_log_nothing(
    logs: pytest.LogCaptureFixture, clock: ManualClock, tracing: bool
) -> None:
    tp = TracerProvider() if tracing else None
    m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False, tracer_provider=tp)
    try:
        m.register_conversation("a")
        m.register_conversation("a")
        m.update_activity("a")
        m.add_cleanup("a", lambda: None)
        m.get("a")
        m.is_expired("a")
        assert "a" in m and len(m) == 1
        with pytest.raises(ConversationNotFoundError):
            m.update_activity("zzz")
        with pytest.raises(ValueError):
            m.register_conversation("")
        m.end_conversation("a")
        m.end_conversation("a")
    finally:
        m.stop()
        if tp is not None:
            tp.shutdown()
    assert ours(logs) == []


# -- callback failures -------------------------------------------------------------------------


def test_a_failing_callable_is_logged_at_error_with_its_conversation(
    logs: pytest.LogCaptureFixture, clock: ManualClock
) -> None:
    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        raise ValueError(f"cannot expire {state.id}")

    m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False, on_expire=on_expire)
    try:
        m.register_conversation("conv-1")
        m.add_cleanup("conv-1", boom)
        assert m.end_conversation("conv-1") is True  # no exception reaches the caller
    finally:
        m.stop()
    errors = ours(logs, logging.ERROR)
    assert len(errors) == 2
    by_kind = {r.getMessage().split()[0]: r for r in errors}
    assert set(by_kind) == {"cleanup", "on_expire"}
    for record in errors:
        assert "'conv-1'" in record.getMessage()
        assert record.conversation_id == "conv-1"  # type: ignore[attr-defined]
        assert record.exc_info is not None
    assert by_kind["cleanup"].exc_info is not None
    assert by_kind["cleanup"].exc_info[0] is RuntimeError
    assert "boom" in by_kind["cleanup"].getMessage()
    assert "store is gone" in logs.text
    assert "cannot expire conv-1" in logs.text


def test_a_callable_failing_on_every_sweep_does_not_flood_the_log(
    logs: pytest.LogCaptureFixture,
    fake_time: FakeTime,
    manager: ConversationExpiryManager,
    clock: ManualClock,
) -> None:
    def sweep_with_failures(count: int, prefix: str) -> None:
        for i in range(count):
            manager.register_conversation(f"{prefix}-{i}")
            manager.add_cleanup(f"{prefix}-{i}", boom)
        clock.advance(TTL + 1)
        manager.cleanup_expired()

    def errors() -> list[str]:
        return [r.getMessage() for r in ours(logs, logging.ERROR)]

    # 50 failures in the first sweep: BURST tracebacks, then one line saying the rest are counted
    sweep_with_failures(50, "s0")
    assert len(errors()) == BURST + 1
    assert "keeps raising RuntimeError" in errors()[-1]
    assert sum("failed for conversation" in m for m in errors()) == BURST

    # a sweep every 10 s, 10 failures each: nothing more within the first minute
    for n in range(1, 6):
        fake_time.advance(10)
        sweep_with_failures(10, f"s{n}")
    assert len(errors()) == BURST + 1

    # from then on, while it keeps failing: one summary and one traceback a minute
    for minute in range(1, 6):
        for n in range(6):
            fake_time.advance(10)
            sweep_with_failures(10, f"m{minute}-{n}")
        new = errors()[BURST + 1 + 2 * (minute - 1):]
        assert len(new) == 2, new
        assert "more times" in new[0] and "failed for conversation" in new[1]
        assert ours(logs, logging.ERROR)[-1].exc_info is not None
    first_summary = errors()[BURST + 1]
    assert f"{50 - BURST + 50} more times" in first_summary
    assert "'s5-9'" in first_summary  # the last failure not logged

    # stop() logs the summary still pending
    before = len(errors())
    manager.stop()
    new = errors()[before:]
    assert len(new) == 1
    assert "more times" in new[0] and "'m5-5-9'" in new[0]


@pytest.mark.parametrize("failures", [BURST + 10, BURST + faults_module._LISTED + 5])
def test_the_summary_names_the_conversations_not_logged_in_full(
    logs: pytest.LogCaptureFixture,
    fake_time: FakeTime,
    manager: ConversationExpiryManager,
    clock: ManualClock,
    failures: int,
) -> None:
    ids = [f"c{i:03d}" for i in range(failures)]
    for cid in ids:
        manager.register_conversation(cid)
        manager.add_cleanup(cid, boom)
    clock.advance(TTL + 1)
    manager.cleanup_expired()
    manager.stop()
    messages = [r.getMessage() for r in ours(logs, logging.ERROR)]
    (summary,) = [m for m in messages if "more times" in m]
    unlogged = sorted(ids)[BURST:]  # (a sweep takes them in the order of their activity)
    listed = unlogged[: faults_module._LISTED]
    assert f"{len(unlogged)} more times" in summary
    assert ", ".join(map(repr, listed)) in summary
    if len(unlogged) > len(listed):
        others = len(unlogged) - len(listed)
        assert f"and {others} more (the last {unlogged[-1]!r})" in summary


def test_after_a_quiet_minute_a_failing_callable_gets_a_full_burst_again(
    logs: pytest.LogCaptureFixture,
    fake_time: FakeTime,
    manager: ConversationExpiryManager,
    clock: ManualClock,
) -> None:
    def fail(n: int, prefix: str) -> None:
        for i in range(n):
            manager.register_conversation(f"{prefix}-{i}")
            manager.add_cleanup(f"{prefix}-{i}", boom)
            manager.end_conversation(f"{prefix}-{i}")

    fail(BURST, "first")
    assert len(ours(logs, logging.ERROR)) == BURST + 1
    fake_time.advance(2 * WINDOW)
    fail(BURST, "again")
    assert len(ours(logs, logging.ERROR)) == 2 * (BURST + 1)


def test_callables_are_limited_separately(
    logs: pytest.LogCaptureFixture, fake_time: FakeTime, clock: ManualClock
) -> None:
    def close_store() -> None:
        raise OSError("closed")

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        raise ValueError("nope")

    count = BURST + 15
    m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False, on_expire=on_expire)
    try:
        for i in range(count):
            m.register_conversation(f"c{i}")
            m.add_cleanup(f"c{i}", boom)
            m.add_cleanup(f"c{i}", close_store)
        clock.advance(TTL + 1)
        m.cleanup_expired()
        assert len(ours(logs, logging.ERROR)) == 3 * (BURST + 1)
    finally:
        m.stop()
    messages = [r.getMessage() for r in ours(logs, logging.ERROR)]
    summaries = [m for m in messages if "more times" in m]
    assert len(summaries) == 3
    assert all(f"{count - BURST} more times" in s for s in summaries)


def test_a_callable_failing_on_every_background_sweep(
    logs: pytest.LogCaptureFixture, clock: ManualClock
) -> None:
    rounds = BURST + 15
    expired = threading.Semaphore(0)
    ids = iter(range(1, rounds + 1))

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        nxt = next(ids, None)
        if nxt is not None:
            m.register_conversation(f"c{nxt}")  # the next victim, registered from the callback
        expired.release()
        raise RuntimeError(f"cannot clean {state.id}")

    m = ConversationExpiryManager(TTL, 0.005, clock=clock, autostart=False, on_expire=on_expire)
    m.register_conversation("c0")
    m.start()
    try:
        for _ in range(rounds):
            clock.advance(TTL + 1)
            assert expired.acquire(timeout=10)
    finally:
        m.stop()
    errors = [r.getMessage() for r in ours(logs, logging.ERROR)]
    # BURST tracebacks, the "keeps raising" notice, and stop()'s summary of the rest
    assert len(errors) == BURST + 2
    assert f"{rounds - BURST} more times" in errors[-1]
