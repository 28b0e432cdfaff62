"""What the Flask and Django integrations share: their settings, the manager and store they build.

The manager's capacity is bounded by default: ids come from clients (``_web_ids`` bounds each
one), and a client inventing a fresh id per request would otherwise grow memory without limit.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from . import ConversationExpiryManager, ConversationState, ExpiryReason
from ._store import STORE_METHODS
from ._web_ids import (
    DEFAULT_ID_MAX_LENGTH,
    DEFAULT_ID_PATTERN,
    IdPolicy,
    InvalidConversationId,
    RejectLog,
    shown,
)

OnExpire = Callable[[ConversationState, ExpiryReason], object]
OnWarning = Callable[[ConversationState], object]

InvalidIdBody = Callable[[str], "tuple[str | bytes, str]"]

__all__ = [
    "DEFAULTS",
    "IdPolicy",
    "InvalidConversationId",
    "RejectLog",
    "Runtime",
    "shown",
]

logger = logging.getLogger("conversation_expiry.web")

DEFAULT_HEADER = "X-Conversation-ID"

# Settings names (without any framework prefix) and the manager argument each one feeds.
_MANAGER_ARGS = {
    "TTL": "ttl",
    "CLEANUP_INTERVAL": "cleanup_interval",
    "MAX_CONVERSATIONS": "max_conversations",
    "MAX_AGE": "max_age",
    "WARNING_BEFORE": "warning_before",
    "MEANINGFUL_ACTIVITIES": "meaningful_activities",
    "CLOCK": "clock",
    "AUTOSTART": "autostart",
    "THREAD_NAME": "thread_name",
    "TRACER_PROVIDER": "tracer_provider",
    "METER_PROVIDER": "meter_provider",
}

DEFAULTS: Mapping[str, Any] = {
    "TTL": 1800,
    "CLEANUP_INTERVAL": 60,
    # Bounded by default: ids come from clients, and each new one costs memory until it expires.
    "MAX_CONVERSATIONS": 10_000,
    "HEADER": DEFAULT_HEADER,
    "ID_MAX_LENGTH": DEFAULT_ID_MAX_LENGTH,
    "ID_PATTERN": DEFAULT_ID_PATTERN,
    "ACTIVITY_TYPE": "message",
    "CLEANUP_AT_EXIT": True,
    "EXIT_TIMEOUT": 5.0,
    "THREAD_NAME": "conversation-expiry-cleanup",
    # None: this process's memory. A redis://, rediss:// or unix:// URL, or a store object.
    "STORE": None,
    "NAMESPACE": "conversation-expiry",
    # What a refused id gets with its 400: "json", "text", or reason -> (body, content type).
    "INVALID_ID_BODY": "json",
}

KNOWN_KEYS = frozenset(_MANAGER_ARGS) | frozenset(DEFAULTS)

_STORE_SCHEMES = ("redis", "rediss", "unix")


class Runtime:
    """One manager and the request policy around it: what an app (Flask) or process (Django) holds.

    Registers its own :meth:`close` with ``atexit`` so the manager stops at interpreter exit; an
    explicit :meth:`close` unregisters it, so a test that closes many runtimes leaves none behind.
    ``key`` formats a setting's name the way the framework spells it, for error messages.
    """

    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        source: str,
        key: str = "{}",
        on_expire: OnExpire | None = None,
        on_warning: OnWarning | None = None,
    ) -> None:
        unknown = sorted(set(options) - KNOWN_KEYS)
        if unknown:
            raise ValueError(
                f"unknown {source} setting(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(KNOWN_KEYS))}"
            )
        merged = {**DEFAULTS, **options}
        name = key.format
        header = merged["HEADER"]
        if not isinstance(header, str) or not header:
            raise TypeError(f"{name('HEADER')} must be a non-empty str, got {header!r:.80}")
        activity_type = merged["ACTIVITY_TYPE"]
        if not isinstance(activity_type, str):
            raise TypeError(f"{name('ACTIVITY_TYPE')} must be a str, got {activity_type!r:.80}")
        self.header: str = header
        self.activity_type: str = activity_type
        self.policy = IdPolicy(merged["ID_MAX_LENGTH"], merged["ID_PATTERN"])
        self.invalid_id_body = _body_maker(merged["INVALID_ID_BODY"], name("INVALID_ID_BODY"))
        self.rejects = RejectLog()
        for flag in ("CLEANUP_AT_EXIT", "AUTOSTART"):  # ("false" from the environment is true)
            if flag in merged and not isinstance(merged[flag], bool):
                raise TypeError(f"{name(flag)} must be True or False, got {merged[flag]!r:.80}")
        self.cleanup_at_exit: bool = merged["CLEANUP_AT_EXIT"]
        exit_timeout = merged["EXIT_TIMEOUT"]
        if exit_timeout is not None:
            if isinstance(exit_timeout, bool) or not isinstance(exit_timeout, (int, float)):
                raise TypeError(
                    f"{name('EXIT_TIMEOUT')} must be seconds or None, got {exit_timeout!r:.80}"
                )
            if not 0 <= exit_timeout < math.inf:
                raise ValueError(
                    f"{name('EXIT_TIMEOUT')} must be finite and >= 0, got {exit_timeout!r}"
                )
        self.exit_timeout: float | None = exit_timeout
        kwargs = {arg: merged[k] for k, arg in _MANAGER_ARGS.items() if k in merged}
        store = _store_from(merged["STORE"], merged["NAMESPACE"], name)
        # A store built from a URL is this runtime's to close; a store object is its owner's.
        self._own_store = store if isinstance(merged["STORE"], str) else None
        if store is not None:
            kwargs["store"] = store
        try:
            self.manager = ConversationExpiryManager(
                **kwargs, on_expire=on_expire, on_warning=on_warning
            )
        except BaseException:
            if self._own_store is not None:
                self._own_store.close()
            raise
        atexit.register(self._at_exit)

    def accept(self, raw: str | None) -> tuple[ConversationState | None, bool]:
        """Like :meth:`accept_id`, for a header that may be missing: (None, False) then."""
        return (None, False) if raw is None else self.accept_id(raw)

    def accept_id(self, raw: str) -> tuple[ConversationState, bool]:
        """Touch the conversation a request names, or start it; True when it started afresh.

        Raises :class:`InvalidConversationId` before touching anything when the id is refused.
        """
        try:
            cid = self.policy.check(raw)
        except InvalidConversationId as exc:
            self.rejects.report(raw, exc.reason)
            raise
        state, fresh = self.manager.ensure_conversation(cid, self.activity_type)
        logger.debug("%s conversation %r", "started" if fresh else "touched", cid)
        return state, fresh

    def close(
        self,
        timeout: float | None = None,
        *,
        cleanup_remaining: bool = False,
        cleanup_for: float | None = None,
    ) -> None:
        """Stop the manager (idempotent), log pending refusal counts, drop the ``atexit`` hook.

        ``cleanup_for``: seconds after which no further conversation's cleanups start.
        """
        atexit.unregister(self._at_exit)
        self.rejects.flush()
        try:
            self.manager._stop(timeout, cleanup_remaining, cleanup_for)
        finally:
            if self._own_store is not None:
                self._own_store.close()

    def _at_exit(self) -> None:
        # EXIT_TIMEOUT bounds the whole exit: the wait for the thread, then the cleanups.
        self.close(
            self.exit_timeout,
            cleanup_remaining=self.cleanup_at_exit,
            cleanup_for=self.exit_timeout,
        )


def _json_body(reason: str) -> tuple[str, str]:
    return json.dumps({"error": f"Invalid conversation id: {reason}."}), "application/json"


def _text_body(reason: str) -> tuple[str, str]:
    return f"Invalid conversation id: {reason}.", "text/plain; charset=utf-8"


def _body_maker(setting: object, name: str) -> InvalidIdBody:
    if setting == "json":
        return _json_body
    if setting == "text":
        return _text_body
    if callable(setting) and not isinstance(setting, type):
        maker: InvalidIdBody = setting
        return maker
    raise (ValueError if isinstance(setting, str) else TypeError)(
        f"{name} must be 'json', 'text' or a callable (reason) -> (body, content type), "
        f"got {setting!r:.80}"
    )


def _store_from(setting: object, namespace: object, name: Callable[[str], str]) -> Any:
    """The store the STORE setting names: None (memory), a store object, or one built from a URL."""
    if setting is None:
        return None
    if not isinstance(setting, str):
        missing = [m for m in STORE_METHODS if not callable(getattr(setting, m, None))]
        if missing:
            raise TypeError(
                f"{name('STORE')} must be a redis://, rediss:// or unix:// URL or a "
                f"ConversationStore, got {type(setting).__name__} (no {', '.join(missing)})"
            )
        return setting
    scheme = setting.partition("://")[0].lower() if "://" in setting else ""
    if scheme not in _STORE_SCHEMES:
        # Not the URL itself: it may carry a password.
        raise ValueError(
            f"{name('STORE')} must be a redis://, rediss:// or unix:// URL or a "
            f"ConversationStore, got a str with scheme {scheme!r}"
        )
    if not isinstance(namespace, str) or not namespace:
        raise TypeError(f"{name('NAMESPACE')} must be a non-empty str, got {namespace!r:.80}")
    try:
        from .redis import RedisStore  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise ImportError(
            f"{name('STORE')} is a Redis URL, which needs the redis extra: "
            "pip install 'conversation-expiry[redis]'"
        ) from exc
    # A worker that starts while Redis is away must still start (gunicorn stops the whole
    # server when one fails to boot): its calls fail until Redis is back (redis/_deferred.py).
    return RedisStore.from_url(setting, namespace=namespace, _defer=True)
