"""Issue 12: a batch of removals is measured with one counter add per reason and one lag record.

``Telemetry.removed_batch`` is called directly with real snapshots (``deadline_of(state)`` is
the deadline in the clock's monotonic seconds) and compared with ``removed``, the
per-conversation method.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from telemetry_names import LAG, REMOVED

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationState,
    ExpiryReason,
    ManualClock,
)
from conversation_expiry._metrics import REASON
from conversation_expiry._state import deadline_of
from conversation_expiry._telemetry import Telemetry

START = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
TTL = 60.0
EXPIRED, MAX_AGE, ENDED = ExpiryReason.EXPIRED, ExpiryReason.MAX_AGE, ExpiryReason.ENDED


class Measured:
    """A manager's telemetry with its own meter provider and in-memory reader."""

    def __init__(self, clock: ManualClock) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.manager = ConversationExpiryManager(
            TTL, 3600, clock=clock, autostart=False, meter_provider=self.provider
        )
        self.telemetry: Telemetry = self.manager._telemetry

    def points(self, name: str) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        found: dict[str, Any] = {}
        for rm in data.resource_metrics if data is not None else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            found[str((point.attributes or {})[REASON])] = point
        return found

    def close(self) -> None:
        self.manager.stop()
        self.provider.shutdown()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def measured(clock: ManualClock) -> Iterator[Measured]:
    m = Measured(clock)
    yield m
    m.close()


@pytest.fixture
def per_conversation(clock: ManualClock) -> Iterator[Measured]:
    m = Measured(clock)
    yield m
    m.close()


def snapshots(clock: ManualClock, count: int, spacing: float = 1.0) -> list[ConversationState]:
    """``count`` snapshots whose deadlines are ``spacing`` seconds apart, oldest first."""
    m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False)
    states = []
    for i in range(count):
        states.append(m.register_conversation(f"c{i}"))
        clock.advance(spacing)
    m.stop()
    return states


class Calls:
    """Wraps an instrument and counts its calls."""

    def __init__(self, instrument: Any) -> None:
        self.instrument = instrument
        self.calls: list[tuple[float, dict[str, Any]]] = []

    def add(self, amount: float, attributes: Any = None) -> None:
        self.calls.append((amount, dict(attributes or {})))
        self.instrument.add(amount, attributes)

    def record(self, amount: float, attributes: Any = None) -> None:
        self.calls.append((amount, dict(attributes or {})))
        self.instrument.record(amount, attributes)


def spy(monkeypatch: pytest.MonkeyPatch, measured: Measured) -> tuple[Calls, Calls]:
    instruments = measured.telemetry._instruments
    removed, lag = Calls(instruments.removed), Calls(instruments.lag)
    monkeypatch.setattr(instruments, "removed", removed)
    monkeypatch.setattr(instruments, "lag", lag)
    return removed, lag


def test_batch_totals_equal_per_conversation_totals(
    measured: Measured, per_conversation: Measured, clock: ManualClock
) -> None:
    states = snapshots(clock, 10)
    reasons = [EXPIRED] * 4 + [MAX_AGE] * 3 + [ENDED] * 2 + [ExpiryReason.EVICTED]
    clock.advance(TTL)
    now = clock.monotonic()
    measured.telemetry.removed_batch(states, reasons, now)
    for state, reason in zip(states, reasons, strict=True):
        lag = now - deadline_of(state) if reason in (EXPIRED, MAX_AGE) else None
        per_conversation.telemetry.removed(reason, lag)
    batch = {k: p.value for k, p in measured.points(REMOVED).items()}
    each = {k: p.value for k, p in per_conversation.points(REMOVED).items()}
    assert batch == each == {"expired": 4, "max_age": 3, "ended": 2, "evicted": 1}


def test_a_batch_of_one_reason_is_one_add_and_one_lag_record(
    monkeypatch: pytest.MonkeyPatch, measured: Measured, clock: ManualClock
) -> None:
    removed, lag = spy(monkeypatch, measured)
    states = snapshots(clock, 256)
    clock.advance(TTL + 5)
    measured.telemetry.removed_batch(states, [EXPIRED] * 256, clock.monotonic())
    assert removed.calls == [(256, {REASON: "expired"})]
    assert len(lag.calls) == 1


def test_a_mixed_batch_is_one_add_per_reason_and_one_lag_record_per_expiry_reason(
    monkeypatch: pytest.MonkeyPatch, measured: Measured, clock: ManualClock
) -> None:
    removed, lag = spy(monkeypatch, measured)
    states = snapshots(clock, 6)
    reasons = [EXPIRED, MAX_AGE, EXPIRED, ENDED, MAX_AGE, EXPIRED]
    clock.advance(TTL)
    measured.telemetry.removed_batch(states, reasons, clock.monotonic())
    assert sorted((a, r[REASON]) for a, r in removed.calls) == [
        (1, "ended"), (2, "max_age"), (3, "expired"),
    ]
    assert sorted(r[REASON] for _, r in lag.calls) == ["expired", "max_age"]


def test_a_batch_records_its_largest_lag(measured: Measured, clock: ManualClock) -> None:
    states = snapshots(clock, 5, spacing=2.0)  # deadlines at 60, 62, ... 68 s after START
    clock.advance(TTL + 3)  # now 73 s after START: lags 13, 11, 9, 7, 5 s
    measured.telemetry.removed_batch(states, [EXPIRED] * 5, clock.monotonic())
    point = measured.points(LAG)["expired"]
    assert isinstance(point, HistogramDataPoint)
    assert point.count == 1
    assert point.max == pytest.approx(13.0)


def test_a_batch_whose_store_knew_its_oldest_deadline_records_that_lag(
    measured: Measured, clock: ManualClock
) -> None:
    states = snapshots(clock, 5, spacing=2.0)  # deadlines at 60, 62, ... 68 s after START
    clock.advance(TTL + 3)
    now = clock.monotonic()
    oldest = now - 20.0  # what the store said: used as it is, the states are not read
    measured.telemetry.removed_batch(states, [EXPIRED] * 5, now, oldest)
    assert measured.points(LAG)["expired"].max == pytest.approx(20.0)


def test_a_batch_of_several_reasons_reads_each_groups_deadlines_whatever_the_store_said(
    measured: Measured, clock: ManualClock
) -> None:
    states = snapshots(clock, 2, spacing=2.0)
    clock.advance(TTL + 3)
    now = clock.monotonic()
    measured.telemetry.removed_batch(states, [EXPIRED, MAX_AGE], now, now - 20.0)
    lags = {k: p.max for k, p in measured.points(LAG).items()}
    assert lags == {
        "expired": pytest.approx(now - deadline_of(states[0])),
        "max_age": pytest.approx(now - deadline_of(states[1])),
    }
    assert lags["expired"] < 20.0


def test_a_batch_of_reasons_that_are_no_expiry_records_no_lag(
    measured: Measured, clock: ManualClock
) -> None:
    states = snapshots(clock, 3)
    measured.telemetry.removed_batch(states, [ENDED, ExpiryReason.SHUTDOWN, ENDED], 0.0)
    assert measured.points(LAG) == {}
    assert {k: p.value for k, p in measured.points(REMOVED).items()} == {
        "ended": 2, "shutdown": 1,
    }


def test_a_deadline_read_after_now_records_no_negative_lag(
    measured: Measured, clock: ManualClock
) -> None:
    states = snapshots(clock, 1)
    measured.telemetry.removed_batch(states, [EXPIRED], clock.monotonic())  # before its deadline
    assert measured.points(LAG)["expired"].max == 0.0


def test_another_snapshot_layout_passes_its_deadline(measured: Measured) -> None:
    rows: list[Any] = [("a", 100.0), ("b", 90.0)]
    measured.telemetry.removed_batch(rows, [EXPIRED, EXPIRED], 120.0, deadline=lambda r: r[1])
    assert measured.points(LAG)["expired"].max == pytest.approx(30.0)


def test_an_empty_batch_records_nothing(
    monkeypatch: pytest.MonkeyPatch, measured: Measured
) -> None:
    removed, lag = spy(monkeypatch, measured)
    measured.telemetry.removed_batch([], [], 0.0)
    assert removed.calls == lag.calls == []


def test_without_a_meter_provider_a_batch_touches_no_instrument(clock: ManualClock) -> None:
    m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False)
    try:
        assert m._telemetry.measuring is False
        instruments = m._telemetry._instruments
        before = instruments.removed, instruments.lag
        instruments.removed = instruments.lag = None  # type: ignore[assignment]
        try:
            m._telemetry.removed_batch(snapshots(clock, 2), [EXPIRED, EXPIRED], 0.0)
        finally:
            instruments.removed, instruments.lag = before
    finally:
        m.stop()


# -- through the manager, once Callbacks.finish calls removed_batch ---------------------------


@pytest.fixture
def batched(monkeypatch: pytest.MonkeyPatch, measured: Measured) -> list[int]:
    """Sizes of the batches the manager hands to ``removed_batch``; skips until it does."""
    sizes: list[int] = []
    real = Telemetry.removed_batch

    def spy(self: Telemetry, states: Any, reasons: Any, *args: Any, **kwargs: Any) -> None:
        sizes.append(len(reasons))
        real(self, states, reasons, *args, **kwargs)

    monkeypatch.setattr(Telemetry, "removed_batch", spy)
    m = measured.manager
    m.register_conversation("probe")
    m.end_conversation("probe")
    if not sizes:
        pytest.skip("Callbacks.finish does not call Telemetry.removed_batch yet")
    sizes.clear()
    return sizes


def test_a_sweep_measures_once_per_batch(
    monkeypatch: pytest.MonkeyPatch, measured: Measured, clock: ManualClock, batched: list[int]
) -> None:
    m = measured.manager
    for i in range(600):
        m.register_conversation(f"s{i}")
    clock.advance(TTL + 1)
    removed, lag = spy(monkeypatch, measured)
    assert len(m.cleanup_expired()) == 600
    assert sum(batched) == 600 and len(batched) == len(removed.calls) == len(lag.calls) > 1
    assert sum(amount for amount, _ in removed.calls) == 600
