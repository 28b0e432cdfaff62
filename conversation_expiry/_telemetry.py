"""OpenTelemetry spans and metrics, named as the Go recipe names them, nearly free unheard.

With only ``opentelemetry-api`` installed the global providers are proxies whose spans record
nothing, yet ``start_as_current_span`` still costs about 15 us. So the manager asks, at start and
on every wake of its cleanup thread, whether a real provider is configured, and skips the API
entirely while none is: the request path then pays one attribute check.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, Status, StatusCode

from ._faults import logger
from ._state import ConversationState, ExpiryReason
from ._validation import check_id

if TYPE_CHECKING:
    from ._manager import ConversationExpiryManager

__all__ = ["METRICS", "Telemetry", "rfc3339"]

SCOPE = "conversation_expiry"
try:
    _VERSION = metadata.version("conversation-expiry")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0"

# name, instrument kind, unit, description: listed in the README.
METRICS = (
    ("conversation_expiry.registered", "counter", "{conversation}", "Conversations registered"),
    ("conversation_expiry.removed", "counter", "{conversation}", "Conversations removed"),
    ("conversation_expiry.live", "gauge", "{conversation}", "Live conversations"),
    ("conversation_expiry.sweep.duration", "histogram", "s", "Duration of one sweep"),
    ("conversation_expiry.cleanup.lag", "histogram", "s", "Time from deadline to cleanup"),
    ("conversation_expiry.callback.failures", "counter", "{failure}", "Callables that raised"),
)


class _NoSpan:
    """Stands in for a span context manager while nothing records."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()


class _CleanupScope:
    """The span of one conversation's cleanup, and whether a callable failed in it."""

    __slots__ = ("failed", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.failed = False


def _is_real(provider: object, proxies: tuple[type, ...]) -> bool:
    return not isinstance(provider, proxies) and type(provider).__name__ not in (
        "_ProxyMeterProvider",
        "NoOpMeterProvider",
        "_DefaultMeterProvider",
    )


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Telemetry:
    """The manager's spans and instruments; every method is cheap while nothing listens."""

    def __init__(
        self,
        manager: ConversationExpiryManager,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer = trace.get_tracer(SCOPE, _VERSION, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, _VERSION, meter_provider=meter_provider)
        self._registered = meter.create_counter(*_spec(0))
        self._removed = meter.create_counter(*_spec(1))
        ref = weakref.ref(manager)
        name, unit, description = _spec(2)
        meter.create_observable_up_down_counter(
            name, callbacks=[_live_callback(ref)], unit=unit, description=description
        )
        self._duration = meter.create_histogram(*_spec(3))
        self._lag = meter.create_histogram(*_spec(4))
        self._failures = meter.create_counter(*_spec(5))
        self.tracing = False
        self.measuring = False
        self.refresh()

    def refresh(self) -> None:
        """Notice a provider configured since the last look."""
        tp = self._tracer_provider or trace.get_tracer_provider()
        mp = self._meter_provider or metrics.get_meter_provider()
        self.tracing = _is_real(tp, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
        self.measuring = _is_real(mp, (metrics.NoOpMeterProvider,))

    # -- spans ---------------------------------------------------------------------------------

    def span(self, name: str, cid: str | None = None) -> Any:
        """A context manager yielding the span (or None while not tracing)."""
        if not self.tracing:
            return _NO_SPAN
        return self._span(name, cid)

    @contextmanager
    def _span(self, name: str, cid: str | None) -> Iterator[Span]:
        with self._tracer.start_as_current_span(
            name, record_exception=False, set_status_on_exception=False
        ) as span:
            if cid is not None:
                span.set_attribute("conversation_id", cid)
            try:
                yield span
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise
            span.set_status(Status(StatusCode.OK))

    def traced_update(
        self, update: Callable[[str, bool], ConversationState], raw_id: object, extend: bool
    ) -> ConversationState:
        cid_attr = raw_id if isinstance(raw_id, str) else None
        with self._span("expiry_manager.update_activity", cid_attr) as span:
            cid = check_id(raw_id)
            state = update(cid, extend)
            span.set_attribute("new_expires_at", rfc3339(state.expires_at))
            span.set_attribute("extended", extend)
            return state

    def cleanup_span(self, cid: str, reason: ExpiryReason) -> Any:
        if not self.tracing:
            return _NO_SPAN
        return self._cleanup_span(cid, reason)

    @contextmanager
    def _cleanup_span(self, cid: str, reason: ExpiryReason) -> Iterator[_CleanupScope]:
        with self._tracer.start_as_current_span(
            "expiry_manager.cleanup_conversation",
            attributes={"conversation_id": cid, "reason": reason.value},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            scope = _CleanupScope(span)
            yield scope
            if not scope.failed:
                span.set_status(Status(StatusCode.OK))

    def callback_failed(self, what: str, scope: _CleanupScope | None, exc: BaseException) -> None:
        if scope is not None:
            scope.failed = True
            scope.span.record_exception(exc, attributes={"callback": what})
            scope.span.set_status(Status(StatusCode.ERROR, f"{what} raised {type(exc).__name__}"))
        if self.measuring:
            self._failures.add(1, {"callback": what})

    # -- metrics -------------------------------------------------------------------------------

    def registered(self) -> None:
        if self.measuring:
            self._registered.add(1)

    def removed(self, reason: ExpiryReason, lag: float | None) -> None:
        if self.measuring:
            self._removed.add(1, {"reason": reason.value})
            if lag is not None:
                self._lag.record(max(0.0, lag))

    def swept(self, span: Span | None, expired: int, remaining: int, seconds: float) -> None:
        if span is not None:
            span.set_attribute("expired_count", expired)
            span.set_attribute("remaining_count", remaining)
        if self.measuring:
            self._duration.record(seconds)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "sweep expired %d conversations in %.6fs, %s remaining",
                expired, seconds, remaining if remaining >= 0 else "?",
            )


def _spec(index: int) -> tuple[str, str, str]:
    name, _kind, unit, description = METRICS[index]
    return name, unit, description


def _live_callback(ref: weakref.ref[ConversationExpiryManager]) -> Callable[[Any], Any]:
    def observe(_options: Any) -> list[metrics.Observation]:
        manager = ref()
        return [] if manager is None else [metrics.Observation(len(manager))]

    return observe
