"""Issue 4: the spans, with the OpenTelemetry SDK and an in-memory exporter.

Providers are passed to the manager (``tracer_provider=``); the one test that needs the global
provider resets the API's globals around itself with monkeypatch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once
from telemetry_names import CLEANUP, END, REGISTER, SWEEP, UPDATE

import conversation_expiry._manager as manager_module
import conversation_expiry._telemetry as telemetry_module
from conversation_expiry import (
    ConversationExpiredError,
    ConversationExpiryManager,
    ConversationNotFoundError,
    ConversationState,
    ExpiryReason,
    ManualClock,
)

# Half a second past the second: RFC 3339 as Go writes it drops the fraction.
START = datetime(2024, 5, 6, 7, 8, 9, 500_000, tzinfo=timezone.utc)
TTL = 60.0



@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp
    tp.shutdown()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def manager(provider: TracerProvider, clock: ManualClock) -> Iterator[ConversationExpiryManager]:
    m = ConversationExpiryManager(
        TTL, 3600, clock=clock, autostart=False, tracer_provider=provider
    )
    yield m
    m.stop()


def spans(exporter: InMemorySpanExporter, name: str | None = None) -> list[ReadableSpan]:
    found = list(exporter.get_finished_spans())
    return found if name is None else [s for s in found if s.name == name]


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = spans(exporter, name)
    assert len(found) == 1, [s.name for s in spans(exporter)]
    return found[0]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def exceptions(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == "exception"]


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def assert_ok(span: ReadableSpan) -> None:
    assert span.status.status_code is StatusCode.OK, span.status
    assert exceptions(span) == []


def assert_failed(span: ReadableSpan, error: type[BaseException]) -> dict[str, Any]:
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description and error.__name__ in span.status.description
    [event] = exceptions(span)
    assert event["exception.type"].endswith(error.__name__)
    return event


# -- the scripted scenario ---------------------------------------------------------------------


def test_scripted_scenario(
    exporter: InMemorySpanExporter, provider: TracerProvider, clock: ManualClock
) -> None:
    seen: list[tuple[str, ExpiryReason]] = []

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        seen.append((state.id, reason))
        if state.id == "a":
            raise ValueError("on_expire broke")

    def broken_cleanup() -> None:
        raise RuntimeError("store is gone")

    m = ConversationExpiryManager(
        TTL, 3600, clock=clock, autostart=False, tracer_provider=provider, on_expire=on_expire
    )
    try:
        m.register_conversation("a")
        m.register_conversation("b")
        m.add_cleanup("b", broken_cleanup)
        clock.advance(30)
        m.register_conversation("c")
        m.register_conversation("d")
        m.update_activity("d")
        assert m.end_conversation("d") is True
        clock.advance(31)  # t=61: a and b past their deadline (t=60), c not (t=90)
        with pytest.raises(ConversationExpiredError):
            m.update_activity("a")
        with pytest.raises(ConversationNotFoundError):
            m.update_activity("never-seen")
        assert sorted(m.cleanup_expired()) == ["a", "b"]
    finally:
        m.stop()

    assert sorted(seen) == [("a", ExpiryReason.EXPIRED), ("b", ExpiryReason.EXPIRED),
                            ("d", ExpiryReason.ENDED)]
    names = [s.name for s in spans(exporter)]
    assert names.count(REGISTER) == 4
    assert names.count(UPDATE) == 3
    assert names.count(END) == 1
    assert names.count(SWEEP) == 1
    assert names.count(CLEANUP) == 3

    # register: Go's attributes, RFC 3339 in whole seconds, status OK
    registers = {attrs(s)["conversation_id"]: s for s in spans(exporter, REGISTER)}
    assert attrs(registers["a"]) == {
        "conversation_id": "a",
        "expires_at": "2024-05-06T07:09:09Z",
    }
    assert attrs(registers["c"])["expires_at"] == "2024-05-06T07:09:39Z"
    for span in registers.values():
        assert_ok(span)
        assert span.kind is SpanKind.INTERNAL
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "conversation_expiry"
        assert span.parent is None

    # update_activity: OK with new_expires_at; expired and not-found are errors, recorded
    ok_update, expired_update, missing_update = spans(exporter, UPDATE)
    assert attrs(ok_update) == {
        "conversation_id": "d",
        "new_expires_at": "2024-05-06T07:09:39Z",
        "extended": True,
    }
    assert_ok(ok_update)
    assert attrs(expired_update) == {"conversation_id": "a"}
    event = assert_failed(expired_update, ConversationExpiredError)
    assert "a" in event["exception.message"]
    assert attrs(missing_update) == {"conversation_id": "never-seen"}
    assert_failed(missing_update, ConversationNotFoundError)

    # end: OK, then the conversation's cleanup span with its reason
    end = only(exporter, END)
    assert attrs(end) == {"conversation_id": "d", "ended": True}
    assert_ok(end)
    cleanups = {attrs(s)["conversation_id"]: s for s in spans(exporter, CLEANUP)}
    assert attrs(cleanups["d"]) == {"conversation_id": "d", "reason": "ended"}
    assert_ok(cleanups["d"])

    # the sweep: counts, OK although callables failed; one child per expired conversation
    sweep = only(exporter, SWEEP)
    assert attrs(sweep) == {"expired_count": 2, "remaining_count": 1}
    assert_ok(sweep)
    assert sweep.parent is None
    for cid in ("a", "b"):
        assert attrs(cleanups[cid]) == {"conversation_id": cid, "reason": "expired"}
        assert parent_id(cleanups[cid]) == span_id(sweep)
        assert trace_id(cleanups[cid]) == trace_id(sweep)

    # callback exceptions are recorded on the conversation's cleanup span
    event = assert_failed(cleanups["a"], ValueError)
    assert event["callback"] == "on_expire"
    assert event["exception.message"] == "on_expire broke"
    assert "on_expire" in (cleanups["a"].status.description or "")
    event = assert_failed(cleanups["b"], RuntimeError)
    assert event["callback"] == "cleanup"
    assert "store is gone" in event["exception.stacktrace"]


# -- single calls ------------------------------------------------------------------------------


def test_register_again_past_deadline_cleans_the_old_one(
    exporter: InMemorySpanExporter, manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    manager.register_conversation("a")
    clock.advance(TTL + 1)
    manager.register_conversation("a")
    first, second = spans(exporter, REGISTER)
    assert attrs(first)["expires_at"] == "2024-05-06T07:09:09Z"
    assert attrs(second)["expires_at"] == "2024-05-06T07:10:10Z"
    cleanup = only(exporter, CLEANUP)
    assert attrs(cleanup) == {"conversation_id": "a", "reason": "expired"}
    assert_ok(cleanup)


def test_end_of_an_unknown_conversation_is_ok_and_cleans_nothing(
    exporter: InMemorySpanExporter, manager: ConversationExpiryManager
) -> None:
    assert manager.end_conversation("nobody") is False
    end = only(exporter, END)
    assert attrs(end) == {"conversation_id": "nobody", "ended": False}
    assert_ok(end)
    assert spans(exporter, CLEANUP) == []


@pytest.mark.parametrize(
    ("bad", "error", "attributes"),
    [("", ValueError, {"conversation_id": ""}), (42, TypeError, {})],
)
def test_register_bad_input_is_an_error_span(
    exporter: InMemorySpanExporter,
    manager: ConversationExpiryManager,
    bad: Any,
    error: type[Exception],
    attributes: dict[str, Any],
) -> None:
    with pytest.raises(error):
        manager.register_conversation(bad)
    span = only(exporter, REGISTER)
    assert attrs(span) == attributes
    event = assert_failed(span, error)
    assert "conversation_id" in event["exception.message"]


@pytest.mark.parametrize(("bad", "error"), [("", ValueError), (42, TypeError)])
def test_end_bad_input_is_an_error_span(
    exporter: InMemorySpanExporter, manager: ConversationExpiryManager, bad: Any,
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        manager.end_conversation(bad)
    assert_failed(only(exporter, END), error)


@pytest.mark.parametrize(("bad", "error"), [("", ValueError), (42, TypeError)])
def test_update_bad_input_is_an_error_span(
    exporter: InMemorySpanExporter, manager: ConversationExpiryManager, bad: Any,
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        manager.update_activity(bad)
    assert_failed(only(exporter, UPDATE), error)


def test_update_with_a_bad_activity_type_is_an_error_span(
    exporter: InMemorySpanExporter, manager: ConversationExpiryManager
) -> None:
    manager.register_conversation("a")
    with pytest.raises(TypeError, match="activity_type"):
        manager.update_activity("a", activity_type=5)  # type: ignore[arg-type]
    assert_failed(only(exporter, UPDATE), TypeError)


@pytest.mark.parametrize("traced", [True, False], ids=["traced", "untraced"])
def test_update_activity_treats_activity_types_alike_traced_or_not(
    provider: TracerProvider, clock: ManualClock, traced: bool
) -> None:
    # The untraced request path inlines _checked_touch: both must extend only what is meaningful.
    m = ConversationExpiryManager(
        TTL, 3600, clock=clock, autostart=False, meaningful_activities={"message"},
        tracer_provider=provider if traced else trace.NoOpTracerProvider(),
    )
    try:
        first = m.register_conversation("a")
        clock.advance(5)
        assert m.update_activity("a", "heartbeat").expires_at == first.expires_at
        assert m.update_activity("a", "message").expires_at > first.expires_at
        with pytest.raises(TypeError, match="activity_type"):
            m.update_activity("a", None)  # type: ignore[arg-type]
    finally:
        m.stop()


def test_sweep_with_nothing_to_do(
    exporter: InMemorySpanExporter, manager: ConversationExpiryManager
) -> None:
    manager.register_conversation("a")
    assert manager.cleanup_expired() == []
    sweep = only(exporter, SWEEP)
    assert attrs(sweep) == {"expired_count": 0, "remaining_count": 1}
    assert_ok(sweep)


def test_shutdown_cleanup_spans_carry_the_reason(
    exporter: InMemorySpanExporter, manager: ConversationExpiryManager
) -> None:
    manager.register_conversation("a")
    manager.stop(cleanup_remaining=True)
    cleanup = only(exporter, CLEANUP)
    assert attrs(cleanup) == {"conversation_id": "a", "reason": "shutdown"}
    assert_ok(cleanup)


def test_spans_a_cleanup_callable_starts_nest_under_its_cleanup_span(
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    manager: ConversationExpiryManager,
    clock: ManualClock,
) -> None:
    tracer = provider.get_tracer("test")
    manager.register_conversation("a")
    manager.add_cleanup("a", lambda: tracer.start_span("store.close").end())
    clock.advance(TTL + 1)
    manager.cleanup_expired()
    close = only(exporter, "store.close")
    cleanup = only(exporter, CLEANUP)
    assert parent_id(close) == span_id(cleanup)
    assert parent_id(cleanup) == span_id(only(exporter, SWEEP))


# -- parents -----------------------------------------------------------------------------------


def test_spans_in_a_request_are_children_of_its_span(
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    manager: ConversationExpiryManager,
    clock: ManualClock,
) -> None:
    tracer = provider.get_tracer("test.web")
    with tracer.start_as_current_span("GET /chat") as request:
        manager.register_conversation("a")
        manager.update_activity("a")
        with pytest.raises(ConversationNotFoundError):
            manager.update_activity("b")
        manager.end_conversation("a")
        manager.cleanup_expired()
        # the manager's spans were current only inside its calls
        assert trace.get_current_span() is request
    request_span = only(exporter, "GET /chat")
    for name in (REGISTER, END, SWEEP):
        child = only(exporter, name)
        assert parent_id(child) == span_id(request_span), name
        assert trace_id(child) == trace_id(request_span)
    for child in spans(exporter, UPDATE):
        assert parent_id(child) == span_id(request_span)
    cleanup = only(exporter, CLEANUP)
    assert trace_id(cleanup) == trace_id(request_span)
    # a failed call does not mark the caller's span
    assert request_span.status.status_code is StatusCode.UNSET


def test_background_sweep_spans_are_roots(
    exporter: InMemorySpanExporter, provider: TracerProvider, clock: ManualClock
) -> None:
    expired = threading.Event()
    m = ConversationExpiryManager(
        TTL, 0.01, clock=clock, autostart=False, tracer_provider=provider,
        on_expire=lambda state, reason: expired.set(),
    )
    tracer = provider.get_tracer("test.web")
    try:
        with tracer.start_as_current_span("POST /start"):
            m.register_conversation("x")
            clock.advance(TTL + 1)
            m.start()  # started inside a request: its sweeps still are not part of it
        assert expired.wait(10)
    finally:
        m.stop()
    sweeps = spans(exporter, SWEEP)
    assert sweeps
    assert all(s.parent is None for s in sweeps)
    [busy] = [s for s in sweeps if attrs(s)["expired_count"] == 1]
    assert attrs(busy) == {"expired_count": 1, "remaining_count": 0}
    cleanup = only(exporter, CLEANUP)
    assert attrs(cleanup) == {"conversation_id": "x", "reason": "expired"}
    assert parent_id(cleanup) == span_id(busy)
    request = only(exporter, "POST /start")
    assert trace_id(busy) != trace_id(request)


def test_detached_makes_roots_even_inside_a_span(
    exporter: InMemorySpanExporter, provider: TracerProvider, manager: ConversationExpiryManager
) -> None:
    # What the cleanup thread runs its sweeps in, whatever context the thread inherited.
    outer = provider.get_tracer("test").start_as_current_span("outer")
    with outer, manager._telemetry.detached():
        manager.cleanup_expired()
    assert only(exporter, SWEEP).parent is None


def test_detached_is_free_when_not_tracing(clock: ManualClock) -> None:
    m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False)
    try:
        with m._telemetry.detached() as nothing:
            assert nothing is None
            m.cleanup_expired()
    finally:
        m.stop()


# -- when nothing records ----------------------------------------------------------------------


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the tracing API was called although nothing listens")


def _exercise(m: ConversationExpiryManager, clock: ManualClock) -> None:
    m.register_conversation("a")
    m.update_activity("a")
    m.register_conversation("b")
    m.add_cleanup("b", lambda: None)
    assert m.end_conversation("b") is True
    with pytest.raises(ConversationNotFoundError):
        m.update_activity("zzz")
    clock.advance(TTL + 1)
    with pytest.raises(ConversationExpiredError):
        m.update_activity("a")
    assert m.cleanup_expired() == ["a"]


def test_without_a_provider_the_api_is_not_touched(
    monkeypatch: pytest.MonkeyPatch, clock: ManualClock
) -> None:
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        pytest.skip("a global tracer provider was set in this process")
    monkeypatch.setattr(trace.ProxyTracer, "start_span", _refuse)
    monkeypatch.setattr(trace.ProxyTracer, "start_as_current_span", _refuse)
    monkeypatch.setattr(trace.NoOpTracer, "start_span", _refuse)
    seen: list[object] = []

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        seen.append(trace.get_current_span())

    m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False, on_expire=on_expire)
    try:
        assert m._telemetry.tracing is False
        _exercise(m, clock)
    finally:
        m.stop()
    assert seen == [trace.INVALID_SPAN, trace.INVALID_SPAN]


def test_a_noop_provider_records_nothing(
    monkeypatch: pytest.MonkeyPatch, clock: ManualClock
) -> None:
    monkeypatch.setattr(trace.NoOpTracer, "start_span", _refuse)
    m = ConversationExpiryManager(
        TTL, 3600, clock=clock, autostart=False, tracer_provider=trace.NoOpTracerProvider()
    )
    try:
        assert m._telemetry.tracing is False
        _exercise(m, clock)
    finally:
        m.stop()


def test_unsampled_spans_format_nothing(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter, clock: ManualClock
) -> None:
    tp = TracerProvider(sampler=ALWAYS_OFF)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(manager_module, "rfc3339", _refuse)
    monkeypatch.setattr(telemetry_module, "rfc3339", _refuse)
    m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False, tracer_provider=tp)
    try:
        _exercise(m, clock)
    finally:
        m.stop()
        tp.shutdown()
    assert spans(exporter) == []


def test_a_global_provider_set_later_is_noticed_by_the_cleanup_thread(
    monkeypatch: pytest.MonkeyPatch,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    clock: ManualClock,
) -> None:
    # Isolate the API's set-once global for this test only.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
    expired = threading.Event()
    m = ConversationExpiryManager(
        TTL, 0.01, clock=clock, autostart=False,
        on_expire=lambda state, reason: expired.set(),
    )
    try:
        assert m._telemetry.tracing is False
        m.register_conversation("x")
        trace.set_tracer_provider(provider)
        clock.advance(TTL + 1)
        m.start()
        assert expired.wait(10)
    finally:
        m.stop()
    assert spans(exporter, REGISTER) == []  # before anyone listened
    sweeps = [s for s in spans(exporter, SWEEP) if attrs(s)["expired_count"] == 1]
    assert len(sweeps) == 1
    assert attrs(only(exporter, CLEANUP))["conversation_id"] == "x"
