"""Flask integration: a manager per app, configured from ``CONVERSATION_EXPIRY_*`` config keys.

Each request that reaches a view (it matched a URL rule and method) and carries the conversation
header (``X-Conversation-ID`` by default) touches that conversation, or starts it afresh when it
expired, and finds it on ``flask.g.conversation``. A refused id answers 400 (a JSON body by
default) before anything changes. The manager lives in ``app.extensions`` and is stopped at
interpreter exit. Conversations live in this process's memory unless ``CONVERSATION_EXPIRY_STORE``
names a shared store: then every worker process sees the same ones.
"""

from __future__ import annotations

from collections.abc import Callable

from ._extras import missing_extra

try:
    from flask import Flask, Response, abort, current_app, g, has_app_context, request
except ImportError as exc:
    raise missing_extra("flask", "Flask 3.0 or later", exc) from exc

from . import ConversationExpiryManager, ConversationState, ExpiryReason
from ._web import InvalidConversationId, OnExpire, OnWarning, Runtime

__all__ = [
    "CONFIG_PREFIX",
    "EXTENSION_KEY",
    "ConversationExpiry",
    "current_conversation",
    "current_manager",
    "touch_conversation",
]

EXTENSION_KEY = "conversation_expiry"
CONFIG_PREFIX = "CONVERSATION_EXPIRY_"


class ConversationExpiry:
    """The Flask extension; ``init_app`` gives each app its own manager, kept in ``app.extensions``.

    ``on_expire(state, reason)`` and ``on_warning(state)`` run inside the app's application
    context (they usually run on the cleanup thread, where there is none), so they can use
    ``current_app`` and other extensions.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        on_expire: OnExpire | None = None,
        on_warning: OnWarning | None = None,
    ) -> None:
        self._on_expire = on_expire
        self._on_warning = on_warning
        self._app = app  # (the one given here: what .manager means outside an app context)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Build the app's manager from its config and touch the conversation of each request."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(f"conversation expiry is already set up on app {app.name!r}")
        options = {
            key[len(CONFIG_PREFIX) :]: value
            for key, value in app.config.items()
            if key.startswith(CONFIG_PREFIX)
        }
        on_expire = self._on_expire
        on_warning = self._on_warning
        app.extensions[EXTENSION_KEY] = Runtime(
            options,
            source=f"Flask config {CONFIG_PREFIX}*",
            key=CONFIG_PREFIX + "{}",
            on_expire=None if on_expire is None else _in_app_context(app, on_expire),
            on_warning=None if on_warning is None else _in_app_context(app, on_warning),
        )
        app.before_request(_touch_request)

    @property
    def manager(self) -> ConversationExpiryManager:
        """The current app's manager; outside an app context, the one of the app given to the
        constructor (an app factory's extension serves several apps: it needs a context)."""
        if self._app is not None and not has_app_context():
            return _runtime(self._app).manager
        return current_manager()

    def stop(
        self,
        app: Flask | None = None,
        timeout: float | None = None,
        *,
        cleanup_remaining: bool = False,
    ) -> None:
        """Stop the app's manager now instead of at exit (idempotent); default: the current app."""
        _runtime(app if app is not None else current_app).close(
            timeout, cleanup_remaining=cleanup_remaining
        )


def current_manager() -> ConversationExpiryManager:
    """The manager of the current app; needs an application context."""
    return _runtime(current_app).manager


def current_conversation() -> ConversationState | None:
    """The conversation the current request named, as touched before the view ran, else None."""
    state: ConversationState | None = g.get("conversation")
    return state


def touch_conversation(conversation_id: str) -> ConversationState:
    """Touch (or start afresh) a conversation whose id a view found elsewhere, e.g. in the URL.

    Applies the same id policy as the header: a refused id aborts with 400, changing nothing.
    Also sets ``g.conversation`` and ``g.conversation_started``.
    """
    return _accept(_runtime(current_app), conversation_id)


def _touch_request() -> None:
    runtime = _runtime(current_app)
    g.conversation = None
    g.conversation_started = False
    if not _reaches_a_view():
        return  # a 404, a 405 or an automatic OPTIONS answer: no conversation for it
    raw = request.headers.get(runtime.header)
    if raw is not None:
        _accept(runtime, raw)


def _reaches_a_view() -> bool:
    rule = request.url_rule
    if rule is None or request.routing_exception is not None:
        return False
    automatic_options = getattr(rule, "provide_automatic_options", False)
    return not (automatic_options and request.method == "OPTIONS")


def _accept(runtime: Runtime, raw: str) -> ConversationState:
    try:
        state, fresh = runtime.accept_id(raw)
    except InvalidConversationId as exc:
        body, content_type = runtime.invalid_id_body(exc.reason)
        abort(Response(body, status=400, content_type=content_type))
    g.conversation = state
    g.conversation_started = fresh
    return state


def _runtime(app: Flask) -> Runtime:
    try:
        runtime: Runtime = app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            f"conversation expiry is not set up on app {app.name!r}: call "
            "ConversationExpiry(app) or ext.init_app(app) first"
        ) from None
    return runtime


def _in_app_context(app: Flask, fn: Callable[..., object]) -> Callable[..., None]:
    def in_context(*args: ConversationState | ExpiryReason) -> None:
        with app.app_context():
            fn(*args)

    return in_context
