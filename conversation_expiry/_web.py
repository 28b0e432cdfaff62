"""What the Flask and Django integrations share: their settings and the policy for untrusted ids.

A conversation id read from a request is chosen by the client, so it is bounded in length and
characters before it reaches the manager or a log line, and the manager's capacity is bounded by
default: a client inventing a fresh id per request would otherwise grow memory without limit.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from . import ConversationExpiryManager, ConversationState, ExpiryReason
from ._faults import _BURST, LogWindows
from ._store import STORE_METHODS

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
DEFAULT_ID_MAX_LENGTH = 128
DEFAULT_ID_PATTERN = r"[A-Za-z0-9._:-]+"

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

# How much of a rejected id reaches the log: enough to recognise it, not enough to flood.
_SHOWN_CHARS = 64

_STORE_SCHEMES = ("redis", "rediss", "unix")


def shown(value: str) -> str:
    """The part of an untrusted id fit for a log line; log it with %r so it cannot forge lines."""
    return value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "..."


class InvalidConversationId(ValueError):
    """A conversation id from a request that the id policy refuses; ``reason`` is safe to show."""

    def __init__(self, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid conversation id {shown(value)!r}: {reason}")


class IdPolicy:
    """Which conversation ids a request may name: at most ``max_length`` chars matching ``pattern``.

    ``pattern`` must match the whole id (``re.fullmatch``, so a trailing newline does not slip
    through as it would with ``$``); the length is checked first so a huge id costs no regex work.
    """

    __slots__ = ("max_length", "pattern")

    def __init__(
        self,
        max_length: int = DEFAULT_ID_MAX_LENGTH,
        pattern: str | re.Pattern[str] = DEFAULT_ID_PATTERN,
    ) -> None:
        if isinstance(max_length, bool) or not isinstance(max_length, int):
            raise TypeError(f"ID_MAX_LENGTH must be an int, got {max_length!r:.80}")
        if max_length < 1:
            raise ValueError(f"ID_MAX_LENGTH must be at least 1, got {max_length!r}")
        if isinstance(pattern, str):
            try:
                pattern = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"ID_PATTERN is not a valid regular expression: {exc}") from None
        elif not isinstance(pattern, re.Pattern) or not isinstance(pattern.pattern, str):
            raise TypeError(f"ID_PATTERN must be a str or a compiled pattern, got {pattern!r:.80}")
        self.max_length = max_length
        self.pattern: re.Pattern[str] = pattern

    def check(self, value: str) -> str:
        """Return ``value`` if the policy accepts it, else raise :class:`InvalidConversationId`."""
        if not isinstance(value, str):
            raise TypeError(f"conversation_id must be a str, got {type(value).__name__}")
        if not value:
            raise InvalidConversationId(value, "it is empty")
        if len(value) > self.max_length:
            raise InvalidConversationId(value, f"it is longer than {self.max_length} characters")
        if self.pattern.fullmatch(value) is None:
            raise InvalidConversationId(value, "it has characters that are not allowed")
        return value

    def __repr__(self) -> str:
        return f"IdPolicy(max_length={self.max_length}, pattern={self.pattern.pattern!r})"


class RejectLog:
    """Logs refused ids at WARNING: the first ``_BURST`` a minute in full, then a count.

    The id comes from the client, so a client sending bad ids on purpose would otherwise write a
    log line per request: the windows are those of ``conversation_expiry._faults``.
    """

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        self._windows: LogWindows[None] = LogWindows(now)

    def report(self, raw: str, reason: str) -> None:
        """Record that ``raw`` was refused because of ``reason``."""
        full, exhausted, summary = self._windows.hit(None, reason)
        if summary is not None:
            _summarise(summary.events, summary.last)
        if full:
            logger.warning(
                "rejected conversation id %r (%d characters): %s", shown(raw), len(raw), reason
            )
        if exhausted:
            logger.warning(
                "%d conversation ids rejected within a minute; further rejections are counted "
                "and summarised once a minute", _BURST,
            )

    def flush(self) -> None:
        """Log the count of refusals not logged yet (at close)."""
        for _, summary in self._windows.drain():
            _summarise(summary.events, summary.last)


def _summarise(suppressed: int, last_reason: str) -> None:
    logger.warning(
        "%d more conversation ids were rejected (the last because %s); those were not logged",
        suppressed, last_reason,
    )


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
