"""What a conversation holds in this example: its messages, in this process's memory."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from conversation_expiry import ConversationState, ExpiryReason

log = logging.getLogger("chat")

# id -> (created_at of the conversation the messages belong to, messages)
_histories: dict[str, tuple[datetime, list[str]]] = {}
_lock = threading.Lock()


def history_of(state: ConversationState) -> list[str]:
    """The messages of this conversation; a fresh list when the id started afresh."""
    with _lock:
        entry = _histories.get(state.id)
        if entry is None or entry[0] != state.created_at:
            entry = _histories[state.id] = (state.created_at, [])
        return entry[1]


def forget(sender: object, state: ConversationState, reason: ExpiryReason, **_: Any) -> None:
    """conversation_expired receiver: free the history of the conversation that left."""
    with _lock:
        entry = _histories.get(state.id)
        # The id may have started afresh since: free only the conversation that left.
        if entry is not None and entry[0] == state.created_at:
            del _histories[state.id]
    log.info("conversation %r left (%s); its history is freed", state.id, reason)


def count() -> int:
    """How many histories are held."""
    return len(_histories)
