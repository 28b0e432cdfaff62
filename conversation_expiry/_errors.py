"""The library's exceptions, all in one place."""

from __future__ import annotations

__all__ = [
    "ClockError",
    "ConversationExpiredError",
    "ConversationExpiryError",
    "ConversationNotFoundError",
    "StoreUnavailableError",
]


class ConversationExpiryError(Exception):
    """Base class of every error this library raises on purpose."""


class ConversationNotFoundError(ConversationExpiryError, KeyError):
    """The conversation id is not live: never registered, ended, or already removed."""

    def __init__(self, conversation_id: str, message: str | None = None) -> None:
        self.conversation_id = conversation_id
        super().__init__(message or f"conversation_id {conversation_id!r} is not registered")

    # KeyError's __str__ quotes its argument like a repr; keep the message readable.
    def __str__(self) -> str:
        return str(self.args[0])


class ConversationExpiredError(ConversationNotFoundError):
    """The conversation is past its deadline; it is never revived."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            conversation_id,
            f"conversation_id {conversation_id!r} has expired; register it again to start afresh",
        )


class StoreUnavailableError(ConversationExpiryError):
    """A shared store could not be reached; the client's error is the ``__cause__``.

    Nothing the call was asked to do is reported as done: it may or may not have taken effect
    (a reply lost on the way back), which every store operation is written to tolerate.
    """


class ClockError(ConversationExpiryError, ValueError):
    """A clock gave a reading that is not a finite number; the call that read it failed and
    nothing changed."""
