"""The storage seam: what a conversation store must do for the manager.

The manager owns validation, clocks, callbacks, telemetry and the cleanup thread; a store owns the
conversations and the lock that guards them. Every method that changes something does it
atomically, so a conversation leaves exactly once whoever removes it. Times are readings of the
manager's clock (``Clock.monotonic``), passed in, never read by the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ._state import ExpiryReason

__all__ = ["Cleanup", "ConversationStore", "Policy", "Record", "Removal"]

Cleanup = Callable[[], object]


class Record(NamedTuple):
    """One conversation as the store sees it, in the clock's monotonic seconds."""

    id: str
    created: float
    last: float
    expires: float
    warned: bool


class Removal(NamedTuple):
    """A conversation that left the store, with what must now run for it."""

    record: Record
    reason: ExpiryReason
    cleanups: list[Cleanup]


@dataclass(frozen=True)
class Policy:
    """The manager's settings that decide deadlines; handed to the store once."""

    ttl: float
    max_age: float | None = None
    warning_before: float | None = None
    max_conversations: int | None = None


class ConversationStore(Protocol):
    """Conversations and their deadlines, safe to call from many threads."""

    def configure(self, policy: Policy) -> None:
        """Adopt the manager's policy; called once, before any other method."""

    def register(
        self, cid: str, now: float, ttl: float | None
    ) -> tuple[Record, list[Removal]]:
        """Start ``cid``, or count as activity if it is live (keeping its created time and
        cleanups; ``ttl`` given replaces its TTL). A past-deadline ``cid`` is removed and started
        afresh. Returns the record and whatever left to make room (expired or evicted)."""

    def touch(self, cid: str, now: float, extend: bool) -> Record:
        """Slide the deadline of a live ``cid`` if ``extend``; raise
        ``ConversationNotFoundError`` if unknown, ``ConversationExpiredError`` if past due."""

    def get(self, cid: str, now: float) -> Record | None:
        """The record of a live ``cid``, else None."""

    def count(self, now: float) -> int:
        """How many conversations are live (not past their deadline)."""

    def add_cleanup(self, cid: str, now: float, fn: Cleanup) -> None:
        """Attach ``fn`` to a live ``cid`` (raising like :meth:`touch` otherwise)."""

    def end(self, cid: str, now: float) -> Removal | None:
        """Remove ``cid`` now: reason ENDED if it was live, its expiry reason if it was past
        due, None if unknown."""

    def collect(self, now: float, limit: int) -> tuple[list[Removal], list[Record], bool]:
        """Remove up to ``limit`` past-due conversations and mark those entering their warning
        window; returns (removed, newly warned, whether more work remains)."""

    def drain(self, now: float, limit: int) -> list[Removal]:
        """Remove up to ``limit`` conversations of any kind (shutdown)."""

    def next_warning_at(self) -> float | None:
        """When the next warning falls due, if warnings are configured."""

    def reinit_after_fork(self) -> None:
        """Make the store usable in a forked child (fresh locks; data kept)."""
