"""Contract tests (API.md guarantee 6, "Errors"): ttl and cleanup_interval validation."""

from __future__ import annotations

import math
import threading
from datetime import timedelta

import pytest
from support import START

from conversation_expiry import (
    ConversationExpiryManager,
    ManualClock,
)


def _snapshot(m: ConversationExpiryManager, ids: list[str]) -> tuple:
    return (len(m), tuple(m.get(cid) for cid in ids))


# ---------------------------------------------------------------------------------------------
# ttl / cleanup_interval
# ---------------------------------------------------------------------------------------------

WRONG_TYPES = [
    pytest.param(True, id="True"),
    pytest.param(False, id="False"),
    pytest.param("10", id="str"),
    pytest.param(None, id="None"),
    pytest.param([10], id="list"),
    pytest.param(b"10", id="bytes"),
    pytest.param(10j, id="complex"),
]
BAD_VALUES = [
    pytest.param(0, id="zero-int"),
    pytest.param(0.0, id="zero-float"),
    pytest.param(-1, id="negative-int"),
    pytest.param(-0.5, id="negative-float"),
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param(timedelta(0), id="zero-timedelta"),
    pytest.param(timedelta(seconds=-1), id="negative-timedelta"),
]


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


@pytest.mark.parametrize("value", WRONG_TYPES)
def test_ttl_of_wrong_type_raises_type_error_naming_ttl(value: object) -> None:
    before = _threads()
    with pytest.raises(TypeError) as info:
        ConversationExpiryManager(value, 1)  # type: ignore[arg-type]
    assert "ttl" in str(info.value)
    assert _threads() == before  # no thread started


@pytest.mark.parametrize("value", WRONG_TYPES)
def test_cleanup_interval_of_wrong_type_raises_type_error_naming_it(value: object) -> None:
    before = _threads()
    with pytest.raises(TypeError) as info:
        ConversationExpiryManager(10, value)  # type: ignore[arg-type]
    assert "cleanup_interval" in str(info.value)
    assert _threads() == before


@pytest.mark.parametrize("value", BAD_VALUES)
def test_ttl_not_positive_finite_raises_value_error_naming_ttl(value: object) -> None:
    before = _threads()
    with pytest.raises(ValueError) as info:
        ConversationExpiryManager(value, 1)  # type: ignore[arg-type]
    assert "ttl" in str(info.value)
    assert _threads() == before


@pytest.mark.parametrize("value", BAD_VALUES)
def test_cleanup_interval_not_positive_finite_raises_value_error_naming_it(value: object) -> None:
    before = _threads()
    with pytest.raises(ValueError) as info:
        ConversationExpiryManager(10, value)  # type: ignore[arg-type]
    assert "cleanup_interval" in str(info.value)
    assert _threads() == before


def test_bad_cleanup_interval_with_autostart_calls_no_callback_and_leaves_no_thread() -> None:
    calls: list[object] = []
    before = _threads()
    with pytest.raises(ValueError):
        ConversationExpiryManager(10, -1, on_expire=lambda s, r: calls.append(s), autostart=True)
    assert _threads() == before
    assert calls == []


@pytest.mark.parametrize(
    ("ttl", "interval"),
    [
        (10, 1),
        (10.5, 0.25),
        (timedelta(seconds=10), timedelta(milliseconds=250)),
        (1e-3, 1e-3),
    ],
)
def test_positive_numbers_and_timedeltas_are_accepted(ttl: object, interval: object) -> None:
    m = ConversationExpiryManager(ttl, interval, autostart=False)  # type: ignore[arg-type]
    try:
        assert len(m) == 0
    finally:
        m.stop(timeout=5)


def test_ttl_as_timedelta_means_the_same_as_seconds() -> None:
    clock = ManualClock(START)
    m = ConversationExpiryManager(timedelta(seconds=90), 3600, clock=clock, autostart=False)
    try:
        state = m.register_conversation("a")
        assert state.expires_at - state.last_activity == timedelta(seconds=90)
        clock.advance(90)
        assert not m.is_expired("a")
        clock.advance(0.001)
        assert m.is_expired("a")
    finally:
        m.stop(timeout=5)


# ---------------------------------------------------------------------------------------------
# seams: clock, tracer_provider, meter_provider (an instance with the methods, or None)
# ---------------------------------------------------------------------------------------------


class _Tracers:
    def get_tracer(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("never called: the constructor refused first")


class _Meters:
    def get_meter(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("never called: the constructor refused first")


NOT_A_PROVIDER = [
    pytest.param("x", id="str"),
    pytest.param(42, id="int"),
    pytest.param(object(), id="object"),
    pytest.param(ManualClock(START), id="a-clock"),
]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        *[pytest.param("tracer_provider", *p.values, id=f"tracer-{p.id}") for p in NOT_A_PROVIDER],
        *[pytest.param("meter_provider", *p.values, id=f"meter-{p.id}") for p in NOT_A_PROVIDER],
        pytest.param("tracer_provider", _Meters(), id="tracer-a-meter-provider"),
        pytest.param("meter_provider", _Tracers(), id="meter-a-tracer-provider"),
        pytest.param("tracer_provider", _Tracers, id="tracer-the-class"),
        pytest.param("meter_provider", _Meters, id="meter-the-class"),
        pytest.param("clock", ManualClock, id="clock-the-class"),
        pytest.param("clock", "x", id="clock-str"),
        pytest.param("clock", _Tracers(), id="clock-without-readings"),
    ],
)
def test_a_seam_of_the_wrong_kind_raises_type_error_naming_it(name: str, value: object) -> None:
    calls: list[object] = []
    before = _threads()
    with pytest.raises(TypeError, match=rf"^{name} must"):
        ConversationExpiryManager(
            10, 1, on_expire=lambda s, r: calls.append(s), **{name: value}  # type: ignore[arg-type]
        )
    assert _threads() == before  # refused in the constructor: nothing built, no thread
    assert calls == []


def test_the_class_instead_of_a_clock_says_what_was_meant() -> None:
    with pytest.raises(TypeError, match=r"the class ManualClock; did you mean ManualClock\(\)"):
        ConversationExpiryManager(10, 1, clock=ManualClock, autostart=False)  # type: ignore[arg-type]


def test_providers_with_the_methods_are_accepted() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    tracer_provider, meter_provider = TracerProvider(), MeterProvider()
    m = ConversationExpiryManager(
        10, 1, autostart=False, tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    try:
        assert m.register_conversation("a").id == "a"
    finally:
        m.stop(timeout=5)
        tracer_provider.shutdown()
        meter_provider.shutdown()
