"""Durations and clocks stay within what a deadline can represent (API.md guarantee 6).

Every duration is at most 100 years, and a ManualClock never reads past WALL_HORIZON (100 years
and a day before ``datetime.max``), so ``reading + duration`` is always a ``datetime``: what
cannot be represented is refused at the door, with a ValueError naming the argument, and
nothing changes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import START, WAIT

from conversation_expiry import ConversationExpiryManager, ManualClock

MAX_DURATION = timedelta(days=36525)  # 100 years (README, "Decisions")
WALL_HORIZON = datetime(9899, 1, 1, tzinfo=timezone.utc)

HUGE = [
    pytest.param(timedelta.max, id="timedelta.max"),
    pytest.param(1e12, id="1e12s"),
    pytest.param(timedelta(days=3e6), id="3e6days"),
    pytest.param(MAX_DURATION + timedelta(microseconds=1), id="100y+1us"),
    pytest.param(10**30, id="10**30"),
]


def cleanup_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "conversation-expiry-cleanup")


@pytest.fixture
def made() -> Iterator[list[ConversationExpiryManager]]:
    managers: list[ConversationExpiryManager] = []
    yield managers
    for m in managers:
        m.stop(timeout=WAIT)


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("name", ["ttl", "cleanup_interval", "max_age", "warning_before"])
def test_a_duration_too_large_for_a_deadline_is_refused_naming_it(name: str, value: object) -> None:
    args: dict[str, object] = {"ttl": 10, "cleanup_interval": 60}
    if name == "warning_before":
        args["ttl"] = MAX_DURATION  # so that only the bound can refuse it
    args[name] = value
    before = cleanup_threads()
    with pytest.raises(ValueError, match=rf"^{name} must be at most 100 years"):
        ConversationExpiryManager(**args)  # type: ignore[arg-type]
    assert cleanup_threads() == before


@pytest.mark.parametrize("value", HUGE)
def test_a_per_conversation_ttl_too_large_is_refused_and_nothing_changes(
    made: list[ConversationExpiryManager], value: object
) -> None:
    m = ConversationExpiryManager(10, 60, clock=ManualClock(START), autostart=False)
    made.append(m)
    with pytest.raises(ValueError, match=r"^ttl must be at most 100 years"):
        m.register_conversation("a", ttl=value)  # type: ignore[arg-type]
    assert len(m) == 0 and m.get("a") is None


@pytest.mark.parametrize("value", HUGE)
def test_a_stop_timeout_too_large_is_refused_and_the_thread_runs_on(value: object) -> None:
    m = ConversationExpiryManager(10, 60)
    try:
        with pytest.raises(ValueError, match=r"^timeout must be at most 100 years"):
            m.stop(timeout=value)  # type: ignore[arg-type]
        assert m.running and not m.stopped
    finally:
        m.stop(timeout=WAIT)


def test_the_largest_durations_give_snapshots_that_work(
    made: list[ConversationExpiryManager],
) -> None:
    clock = ManualClock(START)
    m = ConversationExpiryManager(
        MAX_DURATION, MAX_DURATION, clock=clock, max_age=MAX_DURATION,
        warning_before=MAX_DURATION - timedelta(seconds=1),
    )
    made.append(m)
    state = m.register_conversation("a", ttl=MAX_DURATION)
    assert state.expires_at == START + MAX_DURATION
    assert repr(state) and state.to_dict()["expires_at"]
    assert m.get("a") == state
    m.stop(timeout=WAIT)  # the thread waited 100 years: stop() is still prompt
    assert not m.running


def test_a_deadline_from_the_latest_reading_is_representable_even_when_traced(
    made: list[ConversationExpiryManager],
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    clock = ManualClock(WALL_HORIZON - timedelta(days=1))
    m = ConversationExpiryManager(
        MAX_DURATION, 60, clock=clock, autostart=False, tracer_provider=provider
    )
    made.append(m)
    m.register_conversation("a")
    clock.advance(timedelta(days=1))  # exactly at the horizon
    assert clock.now() == WALL_HORIZON
    state = m.update_activity("a")
    assert state.expires_at == WALL_HORIZON + MAX_DURATION
    assert m.ensure_conversation("b")[0].expires_at == WALL_HORIZON + MAX_DURATION
    assert repr(state) and state.to_dict() and m.get("a") == state
    assert {s.name for s in exporter.get_finished_spans()} >= {
        "expiry_manager.register", "expiry_manager.update_activity", "expiry_manager.ensure"
    }


@pytest.mark.parametrize("amount", [1e12, 1e308, timedelta.max, timedelta(days=3e6)])
def test_an_advance_past_the_horizon_is_refused_and_the_clock_stays_usable(
    made: list[ConversationExpiryManager], amount: object
) -> None:
    clock = ManualClock(START)
    m = ConversationExpiryManager(10, 60, clock=clock, autostart=False)
    made.append(m)
    m.register_conversation("a")
    for _ in range(2):  # twice: the first refusal must not have moved it
        with pytest.raises(ValueError, match=r"^amount must not move the clock past"):
            clock.advance(amount)  # type: ignore[arg-type]
        assert clock.now() == START and clock.monotonic() == 0.0
    assert m.get("a") is not None and repr(m.get("a"))
    clock.advance(11)
    assert m.cleanup_expired() == ["a"]


def test_a_manual_clock_advances_up_to_the_horizon_and_no_further() -> None:
    clock = ManualClock(START)
    clock.advance(WALL_HORIZON - START)
    assert clock.now() == WALL_HORIZON
    with pytest.raises(ValueError, match="amount"):
        clock.advance(1)  # (a float of seconds this far out resolves about 30 us)
    assert clock.now() == WALL_HORIZON
    clock.advance(0)


def test_a_manual_clock_may_advance_more_than_a_duration_in_one_step() -> None:
    clock = ManualClock(START)
    clock.advance(MAX_DURATION * 3)  # a clock's move is not a duration: only the horizon binds
    assert clock.now() == START + MAX_DURATION * 3


@pytest.mark.parametrize(
    "start",
    [
        WALL_HORIZON + timedelta(microseconds=1),
        datetime.max.replace(tzinfo=timezone.utc),
        datetime(9999, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
    ],
    ids=["horizon+1us", "datetime.max", "9999-in-utc-5"],
)
def test_a_manual_clock_starting_past_the_horizon_is_refused(start: datetime) -> None:
    with pytest.raises(ValueError, match=r"^start must be at most"):
        ManualClock(start)


def test_the_horizon_leaves_room_for_the_longest_deadline() -> None:
    from conversation_expiry import _validation

    assert (_validation.MAX_DURATION, _validation.WALL_HORIZON) == (MAX_DURATION, WALL_HORIZON)
    latest = datetime.max.replace(tzinfo=timezone.utc)
    assert WALL_HORIZON + MAX_DURATION + timedelta(days=300) < latest
    assert MAX_DURATION.total_seconds() < threading.TIMEOUT_MAX


class TextClock:
    """A clock whose reading is text that float() would parse."""

    def __init__(self, reading: object) -> None:
        self.reading_value = reading

    def monotonic(self) -> object:
        return self.reading_value

    def wall_offset(self) -> float:
        return 1.7e9


@pytest.mark.parametrize("reading", ["1000", b"1000", " 1e3 "])
def test_a_reading_given_as_text_is_a_clock_error_and_nothing_changes(reading: object) -> None:
    from conversation_expiry import ClockError

    clock: Any = TextClock(reading)
    with pytest.raises(ClockError, match="not a number"):
        m = ConversationExpiryManager(60, 60, clock=clock, autostart=False)
        try:
            m.register_conversation("a")
        finally:
            m.stop()


def test_a_freeze_past_the_horizon_is_a_clock_error_and_nothing_changes() -> None:
    from freezegun import freeze_time

    from conversation_expiry import ClockError

    m = ConversationExpiryManager(3600, 60, autostart=False)
    with freeze_time("9999-12-31 23:00"), pytest.raises(ClockError, match="9899"):
        m.register_conversation("a")
    assert "a" not in m and m.get("a") is None
    m.stop()
