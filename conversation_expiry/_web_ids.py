"""The policy for conversation ids read from requests, and the log of the ones it refuses.

A conversation id read from a request is chosen by the client, so it is bounded in length and
characters before it reaches the manager or a log line, and its refusals are logged at a bounded
rate: a client sending bad ids on purpose must not write a log line per request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from ._faults import _BURST, LogWindows

__all__ = [
    "DEFAULT_ID_MAX_LENGTH",
    "DEFAULT_ID_PATTERN",
    "IdPolicy",
    "InvalidConversationId",
    "RejectLog",
    "shown",
]

logger = logging.getLogger("conversation_expiry.web")

DEFAULT_ID_MAX_LENGTH = 128
DEFAULT_ID_PATTERN = r"[A-Za-z0-9._:-]+"

# How much of a rejected id reaches the log: enough to recognise it, not enough to flood.
_SHOWN_CHARS = 64


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
