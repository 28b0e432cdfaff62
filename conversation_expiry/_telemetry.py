"""OpenTelemetry spans and metrics, named as the Go recipe names them, nearly free unheard.

With only ``opentelemetry-api`` installed the global providers are proxies whose spans record
nothing, yet ``start_as_current_span`` still costs about 15 us. So the manager asks, at start and
on every wake of its cleanup thread, whether a real provider is configured, and skips the API
entirely while none is: the request path then pays one attribute check.

Spans (attribute names as in the Go recipe, so dashboards built for the Go service keep working):

* ``expiry_manager.register``: ``conversation_id``, ``expires_at`` (RFC 3339, like Go's
  ``time.RFC3339``);
* ``expiry_manager.update_activity``: ``conversation_id``, ``new_expires_at``, ``extended``;
* ``expiry_manager.end``: ``conversation_id``, ``ended``;
* ``expiry_manager.cleanup``, one per sweep: ``expired_count``, ``remaining_count``;
* ``expiry_manager.cleanup_conversation``, one per conversation that leaves: ``conversation_id``,
  ``reason``; a callable that raised is recorded on it as an exception event (with a
  ``callback`` attribute) and sets its status to ERROR.

Every span is made current while it runs, so spans a store or a cleanup callable starts nest
under it; it is a child of whatever span is current in the caller (a request's span) and a root
on the cleanup thread. Status is OK on success; an exception (not found, expired, bad input) is
recorded on the span, sets ERROR, and propagates unchanged. Attributes that need formatting are
formatted only when the span records.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from datetime import datetime, timezone
from importlib import metadata
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, Status, StatusCode

from ._faults import logger
from ._state import ConversationState, ExpiryReason
from ._validation import check_id

if TYPE_CHECKING:
    from ._manager import ConversationExpiryManager

__all__ = ["METRICS", "SCOPE", "Telemetry", "rfc3339"]

SCOPE = "conversation_expiry"
try:
    _VERSION = metadata.version("conversation-expiry")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0"

# Metric attribute keys (namespaced, as the OpenTelemetry naming conventions ask).
REASON = "conversation_expiry.reason"
CALLBACK = "conversation_expiry.callback"
ERROR_TYPE = "error.type"

# Histogram bucket advice: sweeps take micro- to milliseconds; cleanup lag is bounded by the
# cleanup interval, typically seconds to minutes. (The SDK's default buckets suit milliseconds.)
_SWEEP_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)
_LAG_BUCKETS = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0,
)

# name, instrument, unit, description, attributes: the README lists these.
METRICS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    (
        "conversation_expiry.conversation.registered", "Counter", "{conversation}",
        "Conversations registered", (),
    ),
    (
        "conversation_expiry.conversation.removed", "Counter", "{conversation}",
        "Conversations that left the manager, by reason", (REASON,),
    ),
    (
        "conversation_expiry.conversation.count", "ObservableUpDownCounter", "{conversation}",
        "Live conversations (not past their deadline)", (),
    ),
    (
        "conversation_expiry.sweep.duration", "Histogram", "s",
        "Duration of one cleanup sweep", (),
    ),
    (
        "conversation_expiry.cleanup.lag", "Histogram", "s",
        "Time from a conversation's deadline to its cleanup", (REASON,),
    ),
    (
        "conversation_expiry.callback.errors", "Counter", "{error}",
        "Cleanup callables, on_expire and on_warning calls that raised", (CALLBACK, ERROR_TYPE),
    ),
)

_REASON_ATTRS: dict[ExpiryReason, Mapping[str, str]] = {r: {REASON: r.value} for r in ExpiryReason}
_OK = Status(StatusCode.OK)


class _NoSpan:
    """Stands in for a span context manager while nothing records."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()


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
        finally:
            if self._token is not None:
                otel_context.detach(self._token)
            span.end()


class _Current(_Scope):
    """Yields the span, or None when it does not record (nothing to format then)."""

    __slots__ = ()

    def __enter__(self) -> Span | None:
        return self.span if self._attach() else None


class _CleanupScope(_Scope):
    """Yields itself, so callback failures can mark it; None when the span does not record."""

    __slots__ = ()

    def __enter__(self) -> _CleanupScope | None:
        return self if self._attach() else None


class _Detached:
    """An empty context for the block: spans started in it are roots."""

    __slots__ = ("_token",)

    def __init__(self) -> None:
        self._token: Token[otel_context.Context] | None = None

    def __enter__(self) -> None:
        self._token = otel_context.attach(otel_context.Context())

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)


class _Instruments:
    """One set of instruments per meter provider, shared by the managers that use it.

    The SDK hands back the existing instrument when one of the same name is created again, but
    keeps only the first callbacks of an observable one: so the live count is one instrument
    whose callback sums the managers registered here.
    """

    def __init__(self, meter: metrics.Meter) -> None:
        def args(i: int) -> tuple[str, str, str]:
            name, _instrument, unit, description, _attributes = METRICS[i]
            return name, unit, description

        self.managers: weakref.WeakSet[ConversationExpiryManager] = weakref.WeakSet()
        self.registered = meter.create_counter(*args(0))
        self.removed = meter.create_counter(*args(1))
        name, unit, description = args(2)
        meter.create_observable_up_down_counter(
            name, callbacks=[self._observe], unit=unit, description=description
        )
        self.duration = _histogram(meter, args(3), _SWEEP_BUCKETS)
        self.lag = _histogram(meter, args(4), _LAG_BUCKETS)
        self.errors = meter.create_counter(*args(5))

    def _observe(self, _options: Any) -> list[metrics.Observation]:
        return [metrics.Observation(sum(len(m) for m in list(self.managers)))]


def _histogram(
    meter: metrics.Meter, spec: tuple[str, str, str], buckets: Sequence[float]
) -> metrics.Histogram:
    name, unit, description = spec
    try:
        return meter.create_histogram(
            name, unit, description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:  # pragma: no cover - opentelemetry-api < 1.23 takes no advice
        return meter.create_histogram(name, unit, description)


# Instruments by meter provider; None (the global provider, proxied until one is set) included.
# The global one is kept under None for good: a proxy instrument follows the provider set later.
_INSTRUMENTS: weakref.WeakKeyDictionary[object, _Instruments] = weakref.WeakKeyDictionary()
_GLOBAL_INSTRUMENTS: dict[None, _Instruments] = {}
_INSTRUMENTS_LOCK = threading.Lock()


def _instruments_for(meter_provider: metrics.MeterProvider | None) -> _Instruments:
    table: Any = _GLOBAL_INSTRUMENTS if meter_provider is None else _INSTRUMENTS
    with _INSTRUMENTS_LOCK:
        found: _Instruments | None = table.get(meter_provider)
        if found is None:
            meter = metrics.get_meter(SCOPE, _VERSION, meter_provider=meter_provider)
            found = table[meter_provider] = _Instruments(meter)
        return found


_NOOP_METER_PROVIDERS = ("_ProxyMeterProvider", "NoOpMeterProvider", "_DefaultMeterProvider")


def _is_real(provider: object, proxies: tuple[type, ...]) -> bool:
    return not isinstance(provider, proxies) and type(provider).__name__ not in (
        _NOOP_METER_PROVIDERS
    )


def _type_name(exc: BaseException) -> str:
    """The exception's type as the SDK writes ``exception.type``: qualified unless a builtin."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "", None) else f"{module}.{cls.__qualname__}"


def rfc3339(moment: datetime) -> str:
    """``moment`` as Go's ``Format(time.RFC3339)`` writes a UTC time: whole seconds, ``Z``."""
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
        self._instruments = _instruments_for(meter_provider)
        self._instruments.managers.add(manager)
        self.tracing = False
        self.measuring = False
        self.refresh()

    def refresh(self) -> None:
        """Notice a provider configured since the last look."""
        tp = self._tracer_provider
        if tp is None:
            tp = trace.get_tracer_provider()
        mp = self._meter_provider
        if mp is None:
            mp = metrics.get_meter_provider()
        self.tracing = _is_real(tp, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
        self.measuring = _is_real(mp, (metrics.NoOpMeterProvider,))

    # -- spans ---------------------------------------------------------------------------------

    def span(self, name: str, cid: str | None = None) -> Any:
        """A context manager making a span current; yields it if it records, else None."""
        if not self.tracing:
            return _NO_SPAN
        return _Current(
            self._tracer.start_span(
                name,
                attributes=None if cid is None else {"conversation_id": cid},
                record_exception=False,
                set_status_on_exception=False,
            )
        )

    def detached(self) -> Any:
        """A context manager in which new spans are roots (the cleanup thread's sweeps).

        A thread starts with an empty context on most interpreters, but inherits its starter's
        where ``sys.flags.thread_inherit_context`` is set (free-threaded 3.14): a manager started
        inside a request would otherwise hang every sweep under that long-finished span.
        """
        if not self.tracing:
            return _NO_SPAN
        return _Detached()

    def traced_update(
        self, update: Callable[[str, bool], ConversationState], raw_id: object, extend: bool
    ) -> ConversationState:
        """``update_activity`` under its span: the id is checked inside it, so bad input is
        recorded as an error like not-found and expired are."""
        with self.span(
            "expiry_manager.update_activity", raw_id if isinstance(raw_id, str) else None
        ) as span:
            state = update(check_id(raw_id), extend)
            if span is not None:
                span.set_attribute("new_expires_at", rfc3339(state.expires_at))
                span.set_attribute("extended", extend)
            return state

    def cleanup_span(self, cid: str, reason: ExpiryReason) -> Any:
        """The span of one conversation's cleanup; yields a scope for ``callback_failed``."""
        if not self.tracing:
            return _NO_SPAN
        return _CleanupScope(
            self._tracer.start_span(
                "expiry_manager.cleanup_conversation",
                attributes={"conversation_id": cid, "reason": reason.value},
                record_exception=False,
                set_status_on_exception=False,
            )
        )

    def callback_failed(self, what: str, scope: _CleanupScope | None, exc: BaseException) -> None:
        if scope is not None:
            scope.failed = True
            scope.span.record_exception(exc, attributes={"callback": what})
            scope.span.set_status(Status(StatusCode.ERROR, f"{what} raised {type(exc).__name__}"))
        if self.measuring:
            self._instruments.errors.add(1, {CALLBACK: what, ERROR_TYPE: _type_name(exc)})

    # -- metrics -------------------------------------------------------------------------------

    def registered(self) -> None:
        if self.measuring:
            self._instruments.registered.add(1)

    def removed(self, reason: ExpiryReason, lag: float | None) -> None:
        if self.measuring:
            attributes = _REASON_ATTRS[reason]
            self._instruments.removed.add(1, attributes)
            if lag is not None:
                self._instruments.lag.record(max(0.0, lag), attributes)

    def wants_remaining(self, span: Span | None) -> bool:
        """Whether :meth:`swept` will use ``remaining`` (worth a count of the live ones)."""
        return span is not None or logger.isEnabledFor(logging.DEBUG)

    def swept(self, span: Span | None, expired: int, remaining: int, seconds: float) -> None:
        if span is not None:
            span.set_attribute("expired_count", expired)
            span.set_attribute("remaining_count", remaining)
        if self.measuring:
            self._instruments.duration.record(seconds)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "sweep expired %d conversations in %.6fs, %s remaining",
                expired, seconds, remaining if remaining >= 0 else "?",
            )
