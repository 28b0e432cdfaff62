"""Contract tests (API.md guarantee 7 and "Clocks"): ManualClock, SystemClock, wall-clock steps."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from support import TTL, WAIT

from conversation_expiry import (
    ConversationState,
    ExpiryReason,
    ManualClock,
    SystemClock,
)

UTC = timezone.utc

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


def assert_utc(value: datetime) -> None:
    assert isinstance(value, datetime)
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


# ---------------------------------------------------------------------------------------------
# ManualClock
# ---------------------------------------------------------------------------------------------


def test_manual_clock_default_start_is_now(make_manager) -> None:
    before = datetime.now(UTC)
    clock = ManualClock()
    after = datetime.now(UTC)
    state = make_manager(clock=clock, autostart=False).register_conversation("a")
    assert before - timedelta(seconds=1) <= state.created_at <= after + timedelta(seconds=1)
    assert_utc(state.created_at)


def test_manual_clock_rejects_naive_start() -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        ManualClock(datetime(2024, 1, 1))
    assert "start" in str(info.value) or "aware" in str(info.value)


@pytest.mark.parametrize("start", ["2024-01-01T00:00:00+00:00", 1704067200, 1704067200.0])
def test_manual_clock_rejects_a_start_that_is_not_a_datetime(start: object) -> None:
    with pytest.raises(TypeError):
        ManualClock(start)  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", [-1, -0.001, timedelta(seconds=-1), timedelta(microseconds=-1)])
def test_manual_clock_advance_negative_raises_value_error(make_manager, amount: object) -> None:
    clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    m = make_manager(clock=clock, autostart=False)
    m.register_conversation("a")
    with pytest.raises(ValueError):
        clock.advance(amount)  # type: ignore[arg-type]
    # the clock did not move
    assert m.register_conversation("a").last_activity == datetime(2024, 1, 1, tzinfo=UTC)


def test_manual_clock_advance_accepts_timedelta_and_seconds(make_manager) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    clock = ManualClock(start)
    m = make_manager(clock=clock, autostart=False)
    m.register_conversation("a")
    clock.advance(timedelta(seconds=2, milliseconds=500))
    assert m.update_activity("a").last_activity == start + timedelta(seconds=2.5)
    clock.advance(3)
    assert m.update_activity("a").last_activity == start + timedelta(seconds=5.5)
    clock.advance(0.25)
    assert m.update_activity("a").last_activity == start + timedelta(seconds=5.75)


def test_manual_clock_advance_by_timedelta_expires(make_manager) -> None:
    clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    m = make_manager(clock=clock, autostart=False)
    m.register_conversation("a")
    clock.advance(timedelta(seconds=TTL))
    assert not m.is_expired("a")
    clock.advance(timedelta(milliseconds=1))
    assert m.cleanup_expired() == ["a"]


FAR_DATES = [
    pytest.param(datetime(1971, 1, 1, 0, 0, 0, 123457, tzinfo=UTC), id="1971"),
    pytest.param(datetime(1990, 6, 1, 12, 0, 0, 654321, tzinfo=UTC), id="1990"),
    pytest.param(datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), id="2024"),
    pytest.param(datetime(2999, 12, 31, 23, 59, 58, 123457, tzinfo=UTC), id="2999"),
]


@pytest.mark.parametrize("start", FAR_DATES)
def test_manual_clock_reported_times_are_its_start_plus_advances(
    make_manager, start: datetime
) -> None:
    clock = ManualClock(start)
    m = make_manager(clock=clock, autostart=False)
    state = m.register_conversation("a")
    assert state.created_at == start
    assert state.expires_at == start + timedelta(seconds=TTL)
    clock.advance(timedelta(seconds=3, microseconds=7))
    state = m.update_activity("a")
    assert state.created_at == start
    assert state.last_activity == start + timedelta(seconds=3, microseconds=7)
    assert state.expires_at == start + timedelta(seconds=3 + TTL, microseconds=7)


# ---------------------------------------------------------------------------------------------
# SystemClock (the default)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("explicit", [False, True], ids=["default", "SystemClock()"])
def test_system_clock_reports_wall_clock_utc(make_manager, explicit: bool) -> None:
    kwargs = {"clock": SystemClock()} if explicit else {}
    m = make_manager(autostart=False, **kwargs)
    before = datetime.now(UTC)
    state = m.register_conversation("a")
    after = datetime.now(UTC)
    slack = timedelta(milliseconds=50)
    for value in (state.created_at, state.last_activity, state.expires_at):
        assert_utc(value)
    assert before - slack <= state.created_at <= after + slack
    assert state.expires_at - state.last_activity == timedelta(seconds=TTL)


def test_system_clock_background_thread_expires_after_ttl(make_manager) -> None:
    done = threading.Event()
    seen: list[tuple[str, ExpiryReason]] = []

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        seen.append((state.id, reason))
        done.set()

    m = make_manager(0.05, 0.01, on_expire=on_expire)
    started = time.monotonic()
    m.register_conversation("a")
    assert done.wait(WAIT)
    assert time.monotonic() - started >= 0.05  # never before its ttl
    assert seen == [("a", ExpiryReason.EXPIRED)]


# ---------------------------------------------------------------------------------------------
# a wall-clock step (guarantee 7): expiry uses a monotonic clock
# ---------------------------------------------------------------------------------------------


def _step_wall_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + seconds)
    real_ns = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() + int(seconds * 1e9))


def test_wall_clock_step_forward_does_not_expire_anything(make_manager, monkeypatch) -> None:
    expired = threading.Event()
    m = make_manager(60, 0.005, on_expire=lambda s, r: expired.set())
    m.register_conversation("a")
    _step_wall_clock(monkeypatch, 86400)  # a day forward
    assert m.cleanup_expired() == []
    assert not m.is_expired("a")
    assert "a" in m and len(m) == 1
    assert not expired.wait(0.2)  # ~40 background sweeps after the step
    m.update_activity("a")


def test_wall_clock_step_backward_does_not_prolong_anything(make_manager, monkeypatch) -> None:
    expired = threading.Event()
    m = make_manager(0.1, 0.005, on_expire=lambda s, r: expired.set())
    m.register_conversation("a")
    _step_wall_clock(monkeypatch, -86400)  # a day back
    assert expired.wait(WAIT), "a wall-clock step back kept the conversation alive"
    assert m.is_expired("a")


def test_wall_clock_step_forward_then_sync_sweep_after_ttl_expires(
    make_manager, monkeypatch
) -> None:
    m = make_manager(0.05, 3600)
    m.register_conversation("a")
    _step_wall_clock(monkeypatch, 86400)
    deadline = time.monotonic() + WAIT
    while not m.is_expired("a") and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for real time to pass the ttl, bounded
    assert m.cleanup_expired() == ["a"]
