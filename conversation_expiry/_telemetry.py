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

A span the SDK's sampler is certain to drop is not started at all (``_spans.drops_of`` says when
that is known): a child of an unsampled span under ``ParentBased`` with its default delegates,
and, for the request-path spans, a root under an ``ALWAYS_OFF`` root sampler. Spans inside which
callables run (a sweep's, a conversation's cleanup) are still started as roots, so what the
callables start or propagate keeps an unsampled parent. Sweeps decide once per batch
(:meth:`Telemetry.cleanup_spans`) and measure once per batch (:meth:`Telemetry.removed_batch`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, Status, StatusCode

from ._faults import logger
from ._metrics import (
    _REASON_ATTRS,
    _VERSION,
    CALLBACK,
    ERROR_TYPE,
    METRICS,
    SCOPE,
    instruments_for,
    type_name,
)
from ._spans import (
    CURRENT_CONTEXT,
    NO_SPAN,
    SPAN_KEY,
    CleanupScope,
    Current,
    Detached,
    Drops,
    drops_of,
    rfc3339,
    sdk_failed,
)
from ._state import ConversationState, ExpiryReason, deadline_of

if TYPE_CHECKING:
    from ._manager import ConversationExpiryManager

__all__ = ["METRICS", "SCOPE", "Telemetry", "no_cleanup_span", "rfc3339"]

# Spans inside which the user's callables run: never skipped as roots, since a callable's own
# spans (and the trace context it propagates) would then have no parent instead of an unsampled
# one, and the next service's root sampler, not its parent-based rule, would decide them.
_HOSTS_CALLABLES = frozenset({"expiry_manager.cleanup", "expiry_manager.cleanup_conversation"})

_EXPIRIES = (ExpiryReason.EXPIRED, ExpiryReason.MAX_AGE)


_NOOP_METER_PROVIDERS = ("_ProxyMeterProvider", "NoOpMeterProvider", "_DefaultMeterProvider")


def _is_real(provider: object, proxies: tuple[type, ...]) -> bool:
    return not isinstance(provider, proxies) and type(provider).__name__ not in (
        _NOOP_METER_PROVIDERS
    )


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
        self._instruments = instruments_for(meter_provider)
        self._instruments.managers.add(manager)
        self.tracing = False
        self.measuring = False
        self._drops: Drops | None = None
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
        self._drops = drops_of(self._tracer) if self.tracing else None

    def dropped(self, roots: bool) -> bool:
        """Whether a span started here now is certain to be dropped by the tracer's sampler.

        ``roots``: whether a root may count (its decision is static only for ALWAYS_OFF).
        """
        drops = self._drops
        if drops is None or drops.tracer.sampler is not drops.sampler:
            return False  # nothing known, or the sampler was replaced since the last look
        assert CURRENT_CONTEXT is not None  # drops_of found none otherwise
        span: Any = CURRENT_CONTEXT().get(SPAN_KEY)
        if span is None:  # no current span: a root
            return roots and drops.root
        try:
            parent = span.get_span_context()
            valid, sampled, remote = parent[5], parent[3] & 1, parent[2]
        except (AttributeError, TypeError, IndexError):  # not a span, or an odd one
            return False  # the SDK's start_span decides, as today
        if not valid:  # INVALID_SPAN and friends make roots too
            return roots and drops.root
        if sampled:  # the sampler decides, as today
            return False
        return drops.remote_unsampled if remote else drops.local_unsampled

    # -- spans ---------------------------------------------------------------------------------

    def span(self, name: str, cid: str | None = None) -> Any:
        """A context manager making a span current; yields it if it records, else None."""
        if not self.tracing or self.dropped(name not in _HOSTS_CALLABLES):
            return NO_SPAN
        span = self._start(name, None if cid is None else {"conversation_id": cid})
        return NO_SPAN if span is None else Current(span)

    def _start(self, name: str, attributes: dict[str, str] | None) -> Any:
        """A started span, or None if the SDK raised (its sampler, span processors' on_start)."""
        try:
            return self._tracer.start_span(
                name, attributes=attributes, record_exception=False, set_status_on_exception=False
            )
        except Exception as exc:
            sdk_failed("starting a span", exc)
            return None

    def detached(self) -> Any:
        """A context manager in which new spans are roots (the cleanup thread's sweeps).

        A thread starts with an empty context on most interpreters, but inherits its starter's
        where ``sys.flags.thread_inherit_context`` is set (free-threaded 3.14): a manager started
        inside a request would otherwise hang every sweep under that long-finished span.
        """
        if not self.tracing:
            return NO_SPAN
        return Detached()

    def traced_update(
        self,
        update: Callable[[object, object], tuple[ConversationState, bool]],
        raw_id: object,
        activity_type: object,
    ) -> ConversationState:
        """``update_activity`` under its span: ``update`` checks the arguments inside it, so bad
        input is recorded as an error like not-found and expired are."""
        if self.dropped(True):
            return update(raw_id, activity_type)[0]
        with self.span(
            "expiry_manager.update_activity", raw_id if isinstance(raw_id, str) else None
        ) as span:
            state, extend = update(raw_id, activity_type)
            if span is not None:
                span.set_attribute("new_expires_at", rfc3339(state.expires_at))
                span.set_attribute("extended", extend)
            return state

    def cleanup_span(self, cid: str, reason: ExpiryReason) -> Any:
        """The span of one conversation's cleanup; yields a scope for ``callback_failed``."""
        if not self.tracing or self.dropped(False):
            return NO_SPAN
        return self._cleanup_scope(cid, reason)

    def cleanup_spans(self) -> Callable[[str, ExpiryReason], Any] | None:
        """Once per batch of removed conversations: what makes each one's cleanup span, or None
        when every one of them would be dropped (the sampler's decision for children of the
        current span, the sweep's, is the same for all of them)."""
        if not self.tracing or self.dropped(False):
            return None
        return self._cleanup_scope

    def _cleanup_scope(self, cid: str, reason: ExpiryReason) -> Any:
        span = self._start(
            "expiry_manager.cleanup_conversation", {"conversation_id": cid, "reason": reason.value}
        )
        return NO_SPAN if span is None else CleanupScope(span)

    def callback_failed(self, what: str, scope: CleanupScope | None, exc: BaseException) -> None:
        if scope is not None:
            scope.failed = True
            try:
                scope.span.record_exception(exc, attributes={"callback": what})
                scope.span.set_status(
                    Status(StatusCode.ERROR, f"{what} raised {type(exc).__name__}")
                )
            except Exception as fault:
                sdk_failed("recording a callable's fault on its span", fault)
        if self.measuring:
            self._instruments.errors.add(1, {CALLBACK: what, ERROR_TYPE: type_name(exc)})

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

    def removed_batch(
        self,
        states: Sequence[ConversationState],
        reasons: Sequence[ExpiryReason],
        now: float,
        oldest: float | None = None,
        deadline: Callable[[ConversationState], float] = deadline_of,
    ) -> None:
        """Count a batch of removals with one ``add`` per reason, and record its cleanup lag
        once per expiry reason: the largest, that of its oldest deadline (``oldest``, when the
        store knew it for a batch of one reason: ``Departures.oldest``).

        A histogram takes one value per call and each call costs ~5 us with the SDK, more than
        the whole removal of a conversation; the largest lag of a batch (at most 1024, removed
        at one ``now``) bounds every lag in it, and is what tells whether cleanup keeps up.
        ``now`` and ``deadline(state)`` are the clock's monotonic seconds.
        """
        if not self.measuring or not reasons:
            return
        first = reasons[0]
        groups: Mapping[ExpiryReason, Sequence[ConversationState]]
        if reasons.count(first) == len(reasons):  # a sweep's batch: one reason, counted in C
            groups = {first: states}
        else:
            oldest = None
            lists: dict[ExpiryReason, list[ConversationState]] = {}
            for state, reason in zip(states, reasons, strict=True):
                lists.setdefault(reason, []).append(state)
            groups = lists
        instruments = self._instruments
        for reason, members in groups.items():
            attributes = _REASON_ATTRS[reason]
            instruments.removed.add(len(members), attributes)
            if reason in _EXPIRIES:
                earliest = min(map(deadline, members)) if oldest is None else oldest
                instruments.lag.record(max(0.0, now - earliest), attributes)

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


def no_cleanup_span(cid: str, reason: ExpiryReason) -> Any:
    """What stands for :meth:`Telemetry.cleanup_spans`'s factory when it returned None."""
    return NO_SPAN
