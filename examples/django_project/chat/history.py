"""What a conversation holds in this example: its messages, in this process's memory."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from conversation_expiry import ConversationNotFoundError, ConversationState, ExpiryReason
from conversation_expiry.django import get_manager

log = logging.getLogger("chat")

# id -> (created_at of the conversation the messages belong to, messages)
_histories: dict[str, tuple[datetime, list[str]]] = {}
_lock = threading.Lock()


def history_of(state: ConversationState) -> list[str]:
    """The messages of this conversation; a fresh list when the id started afresh.

    A cleanup frees them when the conversation leaves: it runs in this process, the one that
    holds them, whichever process the conversation leaves in (with a shared ``STORE``, the
    ``conversation_expired`` signal is sent only where it is claimed).
    """
    with _lock:
        entry = _histories.get(state.id)
        if entry is not None and entry[0] == state.created_at:
            return entry[1]
        entry = _histories[state.id] = (state.created_at, [])

    def free() -> None:
        # Only this conversation's own history: the id may have started afresh meanwhile.
        with _lock:
            if _histories.get(state.id) is entry:
                del _histories[state.id]
        log.info("the history of %r is freed (%d messages)", state.id, len(entry[1]))

    try:
        get_manager().add_cleanup(state.id, free)
    except ConversationNotFoundError:  # already gone again (evicted under load): no leak
        free()
    return entry[1]


def left(sender: object, state: ConversationState, reason: ExpiryReason, **_: Any) -> None:
    """conversation_expired receiver: say that a conversation left (once, in one process)."""
    log.info("conversation %r left (%s)", state.id, reason)


def count() -> int:
    """How many histories are held."""
    return len(_histories)
