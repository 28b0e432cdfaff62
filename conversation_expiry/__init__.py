"""Expire idle conversations and release what they hold, exactly once.

A Python port of the Go "conversation expiry" recipe: a manager tracks each conversation's last
activity, a background thread removes the ones idle for longer than their TTL, and the cleanups
attached to a conversation run exactly once, outside the manager's lock.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._clock import Clock, ManualClock, SystemClock
from ._errors import (
    ClockError,
    ConversationExpiredError,
    ConversationExpiryError,
    ConversationNotFoundError,
    StoreUnavailableError,
)
from ._manager import ConversationExpiryManager
from ._memory import MemoryStore
from ._state import ConversationState, ExpiryReason
from ._store import ConversationStore, Departures, Policy, Sweep, new_state

try:
    __version__ = version("conversation-expiry")
except PackageNotFoundError:  # pragma: no cover - imported from a source tree never installed
    __version__ = "0+unknown"

__all__ = [
    "Clock",
    "ClockError",
    "ConversationExpiredError",
    "ConversationExpiryError",
    "ConversationExpiryManager",
    "ConversationNotFoundError",
    "ConversationState",
    "ConversationStore",
    "Departures",
    "ExpiryReason",
    "ManualClock",
    "MemoryStore",
    "Policy",
    "StoreUnavailableError",
    "Sweep",
    "SystemClock",
    "__version__",
    "new_state",
]
