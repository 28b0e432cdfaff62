"""Span scopes: a started span made current for a ``with`` block, cheaply, or nothing at all."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, NamedTuple

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import Span, Status, StatusCode

from ._faults import log_safely, logger

__all__ = [
    "CURRENT_CONTEXT",
    "NO_SPAN",
    "SPAN_KEY",
    "CleanupScope",
    "Current",
    "Detached",
    "Drops",
    "drops_of",
    "rfc3339",
    "sdk_failed",
]

_OK = Status(StatusCode.OK)
_reported: set[tuple[str, type[BaseException]]] = set()  # SDK faults logged (once each)


def sdk_failed(doing: str, exc: Exception) -> None:
    """Log, once per (what was done, exception type), that the tracing SDK raised.

    A span processor or sampler that raises (the SDK contains none of theirs) must not fail
    the call, nor lose the cleanups of a conversation already removed: the call goes on
    without that span.
    """
    key = (doing, type(exc))
    if key in _reported:
        return
    _reported.add(key)
    log_safely(
        logger.error,
        "the OpenTelemetry SDK raised %s while %s; the manager goes on without it (logged "
        "once)", type(exc).__name__, doing, exc_info=(type(exc), exc, exc.__traceback__),
    )


class _NoSpan:
    """Stands in for a span context manager while nothing records."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


NO_SPAN = _NoSpan()


def _fail(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class _Scope:
    """A started span made current for a ``with`` block, ended when it closes.

    Cheaper than ``start_as_current_span`` (no generator), and it never swallows anything: an
    exception is recorded with ERROR status; otherwise the status is OK unless a callable
    failed in it (``failed``, set by ``Telemetry.callback_failed``).
    """

    __slots__ = ("_token", "failed", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.failed = False
        self._token: Token[otel_context.Context] | None = None

    def _attach(self) -> bool:
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self.span.is_recording()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self.span
        try:
            if isinstance(exc, Exception):  # not GeneratorExit, KeyboardInterrupt...
                _fail(span, exc)
            elif exc is None and not self.failed:
                span.set_status(_OK)
        except Exception as fault:
            sdk_failed("setting a span's status", fault)
        finally:
            if self._token is not None:
                otel_context.detach(self._token)
            try:
                span.end()  # (span processors' on_end)
            except Exception as fault:
                sdk_failed("ending a span", fault)


class Current(_Scope):
    """Yields the span, or None when it does not record (nothing to format then)."""

    __slots__ = ()

    def __enter__(self) -> Span | None:
        return self.span if self._attach() else None


class CleanupScope(_Scope):
    """Yields itself, so callback failures can mark it; None when the span does not record."""

    __slots__ = ()

    def __enter__(self) -> CleanupScope | None:
        return self if self._attach() else None


class Detached:
    """An empty context for the block: spans started in it are roots."""

    __slots__ = ("_token",)

    def __init__(self) -> None:
        self._token: Token[otel_context.Context] | None = None

    def __enter__(self) -> None:
        self._token = otel_context.attach(otel_context.Context())

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)


def rfc3339(moment: datetime) -> str:
    """``moment`` as Go's ``Format(time.RFC3339)`` writes a UTC time: whole seconds, ``Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- spans a sampler is certain to drop ---------------------------------------------------------
#
# The SDK's ParentBased sampler (its default: ParentBased(ALWAYS_ON)) decides a child by its
# parent's sampled flag alone; with its default delegates a child of an unsampled parent is
# dropped, and so is a root when its root sampler is ALWAYS_OFF. Starting such a span costs
# ~3.4 us (ids, a sampler call, a SamplingResult, a NonRecordingSpan) and nothing of it is ever
# exported, so the manager skips it when it can read the decision off the current span context.
# It reads that off only what it knows: the SDK's own Tracer.start_span, StaticSampler and
# ParentBased, the SDK's self-metrics off (they count dropped spans too), the contextvars
# runtime context and SpanContext's documented tuple layout; anything else keeps today's path.


class Drops(NamedTuple):
    """What one SDK tracer's sampler is certain to drop, read off it by :func:`drops_of`."""

    tracer: Any  # the SDK tracer whose start_span is skipped
    sampler: object  # the sampler analysed; the decisions hold while ``tracer.sampler`` is it
    root: bool  # spans with no valid parent
    local_unsampled: bool  # children of an unsampled span of this process
    remote_unsampled: bool  # children of an unsampled span context extracted from a request


_ROOT = "_root"
_LOCAL = "_local_parent_not_sampled"
_REMOTE = "_remote_parent_not_sampled"


def _certain_drop(sampler: object, delegate: str, depth: int = 0) -> bool:
    """Whether ``sampler`` drops every span in the situation its ParentBased ``delegate`` names."""
    sampling = sys.modules.get("opentelemetry.sdk.trace.sampling")
    if sampling is None or depth > 8:
        return False
    static, parent_based = sampling.StaticSampler, sampling.ParentBased
    cls: Any = type(sampler)
    if isinstance(sampler, static) and cls.should_sample is static.should_sample:
        return getattr(sampler, "_decision", None) is sampling.Decision.DROP
    if isinstance(sampler, parent_based) and cls.should_sample is parent_based.should_sample:
        # The delegate sees the same parent context, so it is asked the same question.
        return _certain_drop(getattr(sampler, delegate, None), delegate, depth + 1)
    return False


def _probe_layout() -> bool:
    """Whether SpanContext is the tuple (trace_id, span_id, is_remote, flags, state, is_valid)."""
    probe = trace.SpanContext(1, 2, True, trace.TraceFlags(trace.TraceFlags.SAMPLED))
    return (
        isinstance(probe, tuple)
        and len(probe) == 6
        and probe[2] is True
        and probe[3] & 1 == 1
        and probe[5] is True
        and trace.INVALID_SPAN_CONTEXT[5] is False
    )


def _context_getter() -> Callable[[], Mapping[str, object]] | None:
    """The cheapest reading of the current OpenTelemetry context: its ContextVar's ``get``."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(var, ContextVar):
        return var.get
    return None


try:
    from opentelemetry.trace.propagation import _SPAN_KEY as SPAN_KEY
except ImportError:  # pragma: no cover - an API that moved it: never skip
    SPAN_KEY = ""
CURRENT_CONTEXT = _context_getter() if SPAN_KEY and _probe_layout() else None


def drops_of(tracer: object) -> Drops | None:
    """What ``tracer`` (or the SDK tracer behind a proxy) is certain to drop; None if unknown
    or nothing."""
    if CURRENT_CONTEXT is None:
        return None
    if isinstance(tracer, trace.ProxyTracer):
        tracer = getattr(tracer, "_tracer", None)  # the real tracer once a provider is set
    sdk = sys.modules.get("opentelemetry.sdk.trace")
    sdk_metrics = sys.modules.get("opentelemetry.sdk.trace._tracer_metrics")
    if sdk is None or not isinstance(tracer, sdk.Tracer):
        return None
    if type(tracer).start_span is not sdk.Tracer.start_span:
        return None
    self_metrics = getattr(tracer, "_tracer_metrics", None)
    if self_metrics is not None and (
        sdk_metrics is None or not isinstance(self_metrics, sdk_metrics.NoOpTracerMetrics)
    ):
        return None  # otel.sdk.span.started counts dropped spans: they must be started
    sampler = getattr(tracer, "sampler", None)
    if not _certain_drop(sampler, _LOCAL):
        # What runs inside a skipped span (callables, a store client's instrumentation) would
        # be decided as a child of its parent instead of as a child of an unsampled span of
        # this process: only when the sampler drops those too is skipping invisible.
        return None
    root, remote = _certain_drop(sampler, _ROOT), _certain_drop(sampler, _REMOTE)
    return Drops(tracer, sampler, root, True, remote)
