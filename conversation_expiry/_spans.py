"""Span scopes: a started span made current for a ``with`` block, cheaply, or nothing at all."""

from __future__ import annotations

from contextvars import Token
from datetime import datetime, timezone
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

__all__ = ["NO_SPAN", "CleanupScope", "Current", "Detached", "rfc3339"]

_OK = Status(StatusCode.OK)


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
        finally:
            if self._token is not None:
                otel_context.detach(self._token)
            span.end()


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
