"""Issue 12: spans the tracer's sampler is certain to drop are never started.

Providers are passed to the manager; the spy counts calls of the SDK's ``Tracer.start_span`` (it
replaces the class attribute, so the manager still recognises the SDK's tracer). The one test of
the global provider resets the API's globals around itself with monkeypatch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.util._once import Once
from opentelemetry.util.types import Attributes
from telemetry_names import CLEANUP, SWEEP

from conversation_expiry import (
    ConversationExpiredError,
    ConversationExpiryManager,
    ConversationNotFoundError,
    ConversationState,
    ExpiryReason,
    ManualClock,
)
from conversation_expiry._spans import drops_of
from conversation_expiry._telemetry import no_cleanup_span

START = datetime(2024, 5, 6, 7, 8, 9, 500_000, tzinfo=timezone.utc)
TTL = 60.0


class Opaque(Sampler):
    """Decides as ``inner`` does, but is a sampler the manager knows nothing about."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        self.calls.append(name)
        return self.inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"Opaque({self.inner.get_description()})"


class Sdk:
    """A tracer provider with an in-memory exporter."""

    def __init__(self, sampler: Sampler, **kwargs: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=sampler, **kwargs)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the spans the SDK's tracers start from here on."""
    names: list[str] = []
    real = sdk_trace.Tracer.start_span

    def spy(self: sdk_trace.Tracer, name: str, *args: Any, **kwargs: Any) -> trace.Span:
        names.append(name)
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(sdk_trace.Tracer, "start_span", spy)
    return names


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sampled_out() -> Iterator[Sdk]:
    sdk = Sdk(ParentBased(ALWAYS_OFF))
    yield sdk
    sdk.provider.shutdown()


def build(
    sdk: Sdk, clock: ManualClock, **options: Any
) -> ConversationExpiryManager:
    return ConversationExpiryManager(
        TTL, 3600, clock=clock, autostart=False, tracer_provider=sdk.provider, **options
    )


@contextmanager
def current(span: trace.Span) -> Iterator[trace.Span]:
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    finally:
        otel_context.detach(token)


def unsampled(remote: bool = False) -> NonRecordingSpan:
    """A span of a trace the edge chose not to sample (remote: extracted from a request)."""
    return NonRecordingSpan(
        SpanContext(0xABC, 0xDEF, is_remote=remote, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    )


def request_calls(m: ConversationExpiryManager, clock: ManualClock) -> None:
    """Every request-path call, its failures, an end with a cleanup, and a sweep."""
    m.register_conversation("a")
    m.register_conversation("b")
    m.add_cleanup("b", lambda: None)
    m.update_activity("a")
    m.ensure_conversation("a")
    m.ensure_conversation("c")
    with pytest.raises(ConversationNotFoundError):
        m.update_activity("nobody")
    with pytest.raises(ValueError):
        m.update_activity("")
    with pytest.raises(TypeError):
        m.register_conversation(42)  # type: ignore[arg-type]
    assert m.end_conversation("b") is True
    assert m.end_conversation("b") is False
    clock.advance(TTL + 1)
    with pytest.raises(ConversationExpiredError):
        m.update_activity("a")
    assert {"a", "c"} <= set(m.cleanup_expired())


# -- sampled traces ----------------------------------------------------------------------------


def _shape(spans: list[ReadableSpan]) -> list[tuple[Any, ...]]:
    """The spans with ids replaced by their order of appearance: what a backend would show."""
    ids: dict[int, int] = {}
    traces: dict[int, int] = {}

    def sid(span_id: int) -> int:
        return ids.setdefault(span_id, len(ids))

    out = []
    for s in spans:
        assert s.context is not None
        out.append((
            s.name,
            sid(s.context.span_id),
            None if s.parent is None else sid(s.parent.span_id),
            traces.setdefault(s.context.trace_id, len(traces)),
            s.kind,
            dict(s.attributes or {}),
            s.status.status_code,
            s.status.description,
            [(e.name, dict(e.attributes or {})) for e in s.events],
        ))
    return out


def _scenario(sdk: Sdk, clock: ManualClock) -> list[tuple[Any, ...]]:
    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        if state.id == "a":
            raise ValueError("on_expire broke")

    def nested() -> None:
        sdk.provider.get_tracer("test.store").start_span("store.close").end()

    edge = Sdk(ALWAYS_ON)  # the request's own span comes from the web framework's tracer
    m = build(sdk, clock, on_expire=on_expire)
    try:
        with edge.provider.get_tracer("test.web").start_as_current_span("GET /chat"):
            m.register_conversation("z")
            m.add_cleanup("z", nested)
            request_calls(m, clock)
        with current(unsampled()):
            request_calls(m, clock)
        request_calls(m, clock)  # at the root
    finally:
        m.stop()
        edge.provider.shutdown()
    return _shape(sdk.spans())


def test_a_sampled_trace_is_the_same_as_without_the_shortcut(clock: ManualClock) -> None:
    # Opaque hides the sampler from the manager, which then starts every span as it always did.
    fast, slow = Sdk(ParentBased(ALWAYS_OFF)), Sdk(Opaque(ParentBased(ALWAYS_OFF)))
    with_shortcut = _scenario(fast, clock)
    without = _scenario(slow, ManualClock(START))
    assert with_shortcut == without
    names = [s[0] for s in with_shortcut]
    assert names.count(CLEANUP) == 4  # b ended, z, a and c swept: all in the sampled request
    assert "store.close" in names


def test_a_sampled_sweep_keeps_one_span_per_conversation_under_it(
    sampled_out: Sdk, clock: ManualClock
) -> None:
    m = build(sampled_out, clock)
    request = Sdk(ALWAYS_ON).provider.get_tracer("test.web").start_span("GET /sweep")
    try:
        for cid in ("a", "b", "c"):
            m.register_conversation(cid)
        clock.advance(TTL + 1)
        with current(request):
            m.cleanup_expired()
    finally:
        m.stop()
    [sweep] = [s for s in sampled_out.spans() if s.name == SWEEP]
    cleanups = [s for s in sampled_out.spans() if s.name == CLEANUP]
    assert sorted(str(dict(s.attributes or {})["conversation_id"]) for s in cleanups) == [
        "a", "b", "c",
    ]
    assert sweep.context is not None
    assert {s.parent.span_id for s in cleanups if s.parent} == {sweep.context.span_id}


# -- unsampled: nothing started ----------------------------------------------------------------


def test_children_of_an_unsampled_span_are_never_started(
    sampled_out: Sdk, clock: ManualClock, started: list[str]
) -> None:
    m = build(sampled_out, clock, on_expire=lambda state, reason: None)
    try:
        with current(unsampled()):
            request_calls(m, clock)
    finally:
        m.stop()
    assert started == []
    assert sampled_out.spans() == []


def test_children_of_an_unsampled_remote_parent_are_never_started(
    sampled_out: Sdk, clock: ManualClock, started: list[str]
) -> None:
    m = build(sampled_out, clock)
    try:
        with current(unsampled(remote=True)):
            request_calls(m, clock)
    finally:
        m.stop()
    assert started == []


def test_request_calls_start_no_root_the_root_sampler_drops(
    sampled_out: Sdk, clock: ManualClock, started: list[str]
) -> None:
    m = build(sampled_out, clock)
    try:
        m.register_conversation("a")
        m.update_activity("a")
        m.ensure_conversation("a")
        with pytest.raises(ConversationNotFoundError):
            m.update_activity("nobody")
        m.end_conversation("zzz")
    finally:
        m.stop()
    assert started == []


def test_a_sweep_at_the_root_starts_only_its_own_span(
    sampled_out: Sdk, clock: ManualClock, started: list[str]
) -> None:
    m = build(sampled_out, clock)
    try:
        for cid in ("a", "b", "c"):
            m.register_conversation(cid)
            m.add_cleanup(cid, lambda: None)
        clock.advance(TTL + 1)
        assert len(m.cleanup_expired()) == 3
    finally:
        m.stop()
    assert started == [SWEEP]
    assert sampled_out.spans() == []


def test_callables_of_an_unsampled_sweep_run_in_its_trace(
    sampled_out: Sdk, clock: ManualClock
) -> None:
    # Kept as the sweep's parent, the unsampled context is what a callable's own outgoing calls
    # propagate (sampled=0), so the next service's parent-based sampler drops them too.
    seen: list[SpanContext] = []
    m = build(
        sampled_out, clock,
        on_expire=lambda state, reason: seen.append(trace.get_current_span().get_span_context()),
    )
    try:
        m.register_conversation("a")
        m.add_cleanup("a", lambda: seen.append(trace.get_current_span().get_span_context()))
        clock.advance(TTL + 1)
        with sampled_out.provider.get_tracer("test").start_as_current_span("outer") as outer:
            pass
        m.cleanup_expired()
    finally:
        m.stop()
    assert len(seen) == 2
    assert all(c.is_valid and not c.trace_flags.sampled for c in seen)
    assert seen[0].trace_id == seen[1].trace_id != outer.get_span_context().trace_id


def test_callables_of_an_ended_conversation_run_in_the_callers_unsampled_trace(
    sampled_out: Sdk, clock: ManualClock
) -> None:
    seen: list[SpanContext] = []
    m = build(sampled_out, clock)
    request = unsampled()
    try:
        m.register_conversation("a")
        m.add_cleanup("a", lambda: seen.append(trace.get_current_span().get_span_context()))
        with current(request):
            m.end_conversation("a")
    finally:
        m.stop()
    assert [c.trace_id for c in seen] == [request.get_span_context().trace_id]


# -- samplers it does not know keep every span -------------------------------------------------


def test_a_root_sampler_deciding_by_trace_id_is_asked_for_every_root(
    clock: ManualClock, started: list[str]
) -> None:
    sdk = Sdk(ParentBased(TraceIdRatioBased(0.5)))
    m = build(sdk, clock)
    try:
        m.register_conversation("a")
        m.update_activity("a")
    finally:
        m.stop()
    assert started == ["expiry_manager.register", "expiry_manager.update_activity"]


def test_an_unknown_sampler_sees_every_span(clock: ManualClock, started: list[str]) -> None:
    sampler = Opaque(ParentBased(ALWAYS_OFF))
    m = build(Sdk(sampler), clock)
    try:
        with current(unsampled()):
            m.register_conversation("a")
            m.update_activity("a")
    finally:
        m.stop()
    assert sampler.calls == ["expiry_manager.register", "expiry_manager.update_activity"]


def test_a_parent_based_sampler_keeping_unsampled_children_records_them(
    clock: ManualClock, started: list[str]
) -> None:
    sdk = Sdk(ParentBased(ALWAYS_OFF, local_parent_not_sampled=ALWAYS_ON))
    m = build(sdk, clock)
    try:
        with current(unsampled()):
            m.register_conversation("a")
        with current(unsampled(remote=True)):  # its remote delegate drops it...
            m.update_activity("a")
    finally:
        m.stop()
    assert [s.name for s in sdk.spans()] == ["expiry_manager.register"]
    # ...but a span started inside it would be kept (a child of a local unsampled span): the
    # manager skips nothing with such a sampler.
    assert started == ["expiry_manager.register", "expiry_manager.update_activity"]


def test_with_a_sampler_keeping_local_unsampled_children_callables_spans_are_kept(
    clock: ManualClock,
) -> None:
    sdk = Sdk(ParentBased(ALWAYS_OFF, local_parent_not_sampled=ALWAYS_ON))
    tracer = sdk.provider.get_tracer("callables")

    def release() -> None:
        with tracer.start_as_current_span("release"):
            pass

    m = build(sdk, clock)
    try:
        m.register_conversation("a")
        m.add_cleanup("a", release)
        with current(unsampled(remote=True)):
            assert m.end_conversation("a") is True
    finally:
        m.stop()
    # The cleanup span (a child of the remote unsampled parent) is dropped; the callable's, a
    # child of that local unsampled span, is kept.
    assert [s.name for s in sdk.spans()] == ["release"]


def test_a_sampler_replaced_on_the_tracer_is_obeyed_at_once(clock: ManualClock) -> None:
    sdk = Sdk(ParentBased(ALWAYS_OFF))
    m = build(sdk, clock)
    try:
        m.register_conversation("a")
        m._telemetry._tracer.sampler = ALWAYS_ON  # type: ignore[attr-defined]
        m.update_activity("a")
    finally:
        m.stop()
    assert [s.name for s in sdk.spans()] == ["expiry_manager.update_activity"]


def test_sdk_self_metrics_still_count_every_dropped_span(
    monkeypatch: pytest.MonkeyPatch, clock: ManualClock
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    sdk = Sdk(ParentBased(ALWAYS_OFF), meter_provider=meters)
    m = build(sdk, clock)
    try:
        m.register_conversation("a")
        m.update_activity("a")
    finally:
        m.stop()
    data = reader.get_metrics_data()
    assert data is not None
    started = [
        point.value  # type: ignore[union-attr]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "otel.sdk.span.started"
        for point in metric.data.data_points
    ]
    assert sum(started) == 2
    meters.shutdown()


def test_a_global_sdk_provider_gets_the_shortcut(
    monkeypatch: pytest.MonkeyPatch, clock: ManualClock, started: list[str]
) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
    m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False)
    try:
        trace.set_tracer_provider(TracerProvider(sampler=ParentBased(ALWAYS_OFF)))
        m._telemetry.refresh()  # what the cleanup thread does on every wake
        with current(unsampled()):
            m.register_conversation("a")
            m.update_activity("a")
    finally:
        m.stop()
    assert m._telemetry.tracing is True
    assert started == []


def test_something_not_a_span_in_the_context_is_left_to_the_sdk(
    sampled_out: Sdk, clock: ManualClock, started: list[str]
) -> None:
    m = build(sampled_out, clock)
    odd = trace.set_span_in_context(object())  # type: ignore[arg-type]
    token = otel_context.attach(odd)
    try:
        m.register_conversation("a")
        m.update_activity("a")
    finally:
        otel_context.detach(token)
        m.stop()
    assert started == ["expiry_manager.register", "expiry_manager.update_activity"]


# -- what it recognises ------------------------------------------------------------------------


def _tracer(sampler: Sampler) -> trace.Tracer:
    return TracerProvider(sampler=sampler).get_tracer("test")


@pytest.mark.parametrize(
    ("sampler", "expected"),
    [
        (ALWAYS_OFF, (True, True, True)),
        (ParentBased(ALWAYS_OFF), (True, True, True)),
        (ParentBased(ALWAYS_ON), (False, True, True)),
        (ParentBased(TraceIdRatioBased(0.1)), (False, True, True)),
        (ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON), (False, True, False)),
        (ParentBased(ALWAYS_ON, remote_parent_not_sampled=ParentBased(ALWAYS_OFF)),
         (False, True, True)),
    ],
)
def test_drops_are_read_off_the_sdk_samplers(
    sampler: Sampler, expected: tuple[bool, bool, bool]
) -> None:
    drops = drops_of(_tracer(sampler))
    assert drops is not None
    assert (drops.root, drops.local_unsampled, drops.remote_unsampled) == expected


class _Overriding(ParentBased):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return ALWAYS_ON.should_sample(*args, **kwargs)


@pytest.mark.parametrize(
    "sampler",
    [ALWAYS_ON, TraceIdRatioBased(0.5), Opaque(ALWAYS_OFF), _Overriding(ALWAYS_OFF),
     ParentBased(ALWAYS_ON, local_parent_not_sampled=ALWAYS_ON,
                 remote_parent_not_sampled=ALWAYS_ON),
     ParentBased(ALWAYS_OFF, local_parent_not_sampled=ALWAYS_ON)],
)
def test_samplers_it_cannot_read_drop_nothing(sampler: Sampler) -> None:
    assert drops_of(_tracer(sampler)) is None


def test_only_the_sdks_own_tracer_is_read() -> None:
    assert drops_of(trace.NoOpTracer()) is None
    assert drops_of(trace.ProxyTracer("test")) is None  # no global provider behind it


# -- a batch's cleanup spans -------------------------------------------------------------------


def test_cleanup_spans_is_none_inside_an_unsampled_span(
    sampled_out: Sdk, clock: ManualClock
) -> None:
    m = build(sampled_out, clock)
    try:
        with current(unsampled()):
            assert m._telemetry.cleanup_spans() is None
    finally:
        m.stop()


def test_cleanup_spans_is_none_without_a_tracer(clock: ManualClock) -> None:
    m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False)
    try:
        assert m._telemetry.cleanup_spans() is None
    finally:
        m.stop()


def test_cleanup_spans_makes_the_cleanup_span_inside_a_sampled_span(
    sampled_out: Sdk, clock: ManualClock
) -> None:
    m = build(sampled_out, clock)
    parent = Sdk(ALWAYS_ON).provider.get_tracer("test").start_span("sweep")
    try:
        with current(parent):
            make: Callable[[str, ExpiryReason], Any] | None = m._telemetry.cleanup_spans()
            assert make is not None
            with make("a", ExpiryReason.EXPIRED) as scope:
                assert scope is not None
    finally:
        m.stop()
    [span] = sampled_out.spans()
    assert span.name == CLEANUP
    assert dict(span.attributes or {}) == {"conversation_id": "a", "reason": "expired"}
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id


def test_cleanup_spans_at_the_root_leaves_the_decision_to_the_sampler(
    sampled_out: Sdk, clock: ManualClock, started: list[str]
) -> None:
    # Callables run inside a cleanup span: a root one keeps being started, so that what they
    # start or propagate has the same (unsampled) parent as before.
    m = build(sampled_out, clock)
    try:
        make = m._telemetry.cleanup_spans()
        assert make is not None
        with make("a", ExpiryReason.SHUTDOWN) as scope:
            assert scope is None  # dropped by the sampler, so nothing to mark
    finally:
        m.stop()
    assert started == [CLEANUP]


def test_no_cleanup_span_yields_nothing() -> None:
    with no_cleanup_span("a", ExpiryReason.EXPIRED) as scope:
        assert scope is None
