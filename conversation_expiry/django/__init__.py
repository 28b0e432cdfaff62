"""Django integration: an app config, a middleware and the ``conversation_expired`` signal.

Add ``"conversation_expiry.django"`` (or the class path
``"conversation_expiry.django.ConversationExpiryConfig"``) to ``INSTALLED_APPS`` and
``"conversation_expiry.django.ConversationExpiryMiddleware"`` to ``MIDDLEWARE``; options come
from the ``CONVERSATION_EXPIRY`` settings dict. The manager is one per process; with the default
store each worker process of a multi-process server holds its own conversations, with a shared
one (``"STORE"``) they all see the same.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .._extras import missing_extra

try:
    from django.apps import AppConfig  # type: ignore[import-untyped]
except ImportError as exc:
    raise missing_extra("django", "Django 4.2 or later", exc) from exc
from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import BadRequest, ImproperlyConfigured  # type: ignore[import-untyped]
from django.db import close_old_connections  # type: ignore[import-untyped]
from django.dispatch import Signal  # type: ignore[import-untyped]
from django.http import HttpResponse  # type: ignore[import-untyped]

from .. import ConversationExpiryManager, ConversationState, ExpiryReason, _fork
from .._web import InvalidConversationId, Runtime, shown

__all__ = [
    "ConversationExpiryConfig",
    "ConversationExpiryMiddleware",
    "InvalidConversationIdRequest",
    "conversation_expired",
    "conversation_expiring",
    "get_manager",
    "shutdown",
    "touch_conversation",
]

logger = logging.getLogger("conversation_expiry.django")

# Sent exactly once per conversation that leaves, whatever the reason (expired, ended, evicted,
# shutdown, max_age), with sender=ConversationExpiryManager and keyword arguments state, reason.
# Receivers run on the cleanup thread for background sweeps.
conversation_expired = Signal()

# Sent once per conversation when it is WARNING_BEFORE seconds from expiring, with state=.
conversation_expiring = Signal()

# One manager per process, whatever number of times (or on whatever AppConfig instances) Django
# calls ready(): a test runner may populate the app registry more than once.
_lock = threading.Lock()
_runtime: Runtime | None = None
_fork.renew_after_fork(sys.modules[__name__], _lock=threading.Lock)


class ConversationExpiryConfig(AppConfig):  # type: ignore[misc]
    """Builds the process's manager from ``settings.CONVERSATION_EXPIRY`` when Django is ready."""

    name = "conversation_expiry.django"
    label = "conversation_expiry"
    verbose_name = "Conversation expiry"

    def ready(self) -> None:
        _start()


class InvalidConversationIdRequest(BadRequest):  # type: ignore[misc]
    """What :func:`touch_conversation` raises for a refused id; Django answers 400.

    With the middleware installed the 400 has the configured body (``INVALID_ID_BODY``), as for
    a refused header; without it, Django's own 400 page.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Invalid conversation id: {reason}.")


class ConversationExpiryMiddleware:
    """Touches the conversation the request's header names once its URL resolved to a view.

    Sets ``request.conversation`` (the state, None without the header) and
    ``request.conversation_started`` (True when it started afresh). A refused id answers 400
    with the ``INVALID_ID_BODY`` body. A request whose URL does not resolve (a 404) touches
    nothing: each would otherwise cost a conversation.
    """

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        request.conversation = None
        request.conversation_started = False
        return self.get_response(request)

    def process_view(
        self, request: Any, view: object, args: object, kwargs: object
    ) -> HttpResponse | None:
        # Looked up per request, not kept: shutdown() and a later ready() may replace it.
        runtime = _current()
        raw = request.headers.get(runtime.header)
        if raw is not None:
            try:
                _accept(runtime, request, raw)
            except InvalidConversationId as exc:
                return _bad_request(runtime, exc.reason)
        return None

    def process_exception(self, request: Any, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, InvalidConversationIdRequest):
            return _bad_request(_current(), exception.reason)
        return None


def _bad_request(runtime: Runtime, reason: str) -> HttpResponse:
    body, content_type = runtime.invalid_id_body(reason)
    return HttpResponse(body, status=400, content_type=content_type)


def get_manager() -> ConversationExpiryManager:
    """This process's manager; ImproperlyConfigured before the app config is ready."""
    return _current().manager


def touch_conversation(request: Any, conversation_id: str) -> ConversationState:
    """Touch (or start afresh) a conversation whose id a view found elsewhere, e.g. in the URL.

    Applies the header's id policy: a refused id raises :class:`InvalidConversationIdRequest`, a
    ``BadRequest`` (Django answers 400), before anything changes. Also sets
    ``request.conversation`` and ``request.conversation_started``.
    """
    try:
        return _accept(_current(), request, conversation_id)
    except InvalidConversationId as exc:
        raise InvalidConversationIdRequest(exc.reason) from None


def shutdown(timeout: float | None = None, *, cleanup_remaining: bool = False) -> None:
    """Stop the manager and forget it, so the next ``ready()`` builds one from current settings.

    Not needed at interpreter exit (the manager is stopped then anyway); for tests that start
    over with other settings, and for code that wants the SHUTDOWN cleanups run at a chosen time.
    """
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.close(timeout, cleanup_remaining=cleanup_remaining)


def _accept(runtime: Runtime, request: Any, raw: str) -> ConversationState:
    state, fresh = runtime.accept_id(raw)
    request.conversation = state
    request.conversation_started = fresh
    return state


def _current() -> Runtime:
    runtime = _runtime
    if runtime is None:
        raise ImproperlyConfigured(
            "conversation expiry is not ready: add "
            "'conversation_expiry.django.ConversationExpiryConfig' to INSTALLED_APPS"
        )
    return runtime


def _start() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is not None:
            return _runtime
        options = getattr(settings, "CONVERSATION_EXPIRY", {})
        if not isinstance(options, Mapping):
            raise ImproperlyConfigured(
                f"settings.CONVERSATION_EXPIRY must be a dict, got {type(options).__name__}"
            )
        warns = options.get("WARNING_BEFORE") is not None
        signals = _Signals()
        try:
            _runtime = Runtime(
                options,
                source="settings.CONVERSATION_EXPIRY",
                key="CONVERSATION_EXPIRY[{!r}]",
                on_expire=signals.expired,
                on_warning=signals.expiring if warns else None,
            )
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"settings.CONVERSATION_EXPIRY: {exc}") from exc
        signals.manager = _runtime.manager
        return _runtime


class _Signals:
    """Sends the signals; on the cleanup thread, looks after its database connections.

    Receivers usually use the ORM, and the cleanup thread has no request around it to close a
    connection gone stale between sweeps: so, like a request, it gets close_old_connections()
    before and after. Not on other threads: a view may be inside a transaction.
    """

    def __init__(self) -> None:
        self.manager: ConversationExpiryManager | None = None

    def expired(self, state: ConversationState, reason: ExpiryReason) -> None:
        self._send(conversation_expired, state, reason=reason)

    def expiring(self, state: ConversationState) -> None:
        self._send(conversation_expiring, state)

    def _send(self, signal: Signal, state: ConversationState, **kwargs: Any) -> None:
        on_cleanup_thread = self.manager is not None and self.manager.in_cleanup_thread()
        if on_cleanup_thread:
            close_old_connections()
        try:
            # send_robust: one failing receiver must not keep the others from hearing of it.
            results = signal.send_robust(sender=ConversationExpiryManager, state=state, **kwargs)
        finally:
            if on_cleanup_thread:
                close_old_connections()
        for receiver, result in results:
            if isinstance(result, Exception):
                logger.error(
                    "receiver %s failed for conversation %r",
                    getattr(receiver, "__qualname__", receiver),
                    shown(state.id),
                    exc_info=(type(result), result, result.__traceback__),
                )
