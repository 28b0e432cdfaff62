"""The storage seam: what a conversation store must do for the manager.

The manager owns validation, clocks, callbacks, telemetry and the cleanup thread; a store owns the
conversations and the lock that guards them. Every method that changes something does so
atomically, so a conversation leaves exactly once whoever removes it. Times are readings of the
manager's clock: ``now`` is ``Clock.monotonic()``, ``offset`` is ``Clock.wall_offset()``; a store
never reads a clock itself, which is what lets tests drive any store with plain numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ._state import ConversationState, ExpiryReason

__all__ = ["Cleanup", "ConversationStore", "Policy", "Removed", "new_state"]

Cleanup = Callable[[], object]


class Removed(NamedTuple):
    """Conversations that left the store in one call, and what must now run for them.

    One object per call, not per conversation: a sweep removes many, and a tuple each would be a
    sizeable part of its cost.
    """

    states: list[ConversationState]  # as they were when they left, ``active=False``
    reasons: list[ExpiryReason]  # parallel to ``states``
    cleanups: dict[str, list[Cleanup]]  # by id, in the order attached; absent if none


_tuple_new = tuple.__new__


def new_state(
    cid: str,
    created: float,
    last: float,
    expires: float,
    active: bool,
    warned: bool,
    offset: float,
) -> ConversationState:
    """A snapshot from a store's monotonic readings; no checks (stores call it a lot)."""
    return _tuple_new(ConversationState, (cid, created, last, expires, active, warned, offset))


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
        self, cid: str, now: float, offset: float, ttl: float | None
    ) -> tuple[ConversationState, Removed]:
        """Start ``cid``, or count as activity if it is live (keeping its created time and
        cleanups; a ``ttl`` given replaces its TTL). A past-deadline ``cid`` is removed and
        started afresh. Returns its state and whatever left to make room."""

    def ensure(
        self, cid: str, now: float, offset: float, extend: bool
    ) -> tuple[ConversationState, bool, Removed]:
        """Touch ``cid`` if it is live (sliding its deadline if ``extend``), else start it
        afresh, in one atomic step; returns its state, whether it started, what left."""

    def touch(self, cid: str, now: float, offset: float, extend: bool) -> ConversationState:
        """Slide the deadline of a live ``cid`` if ``extend``; raise
        ``ConversationNotFoundError`` if unknown, ``ConversationExpiredError`` if past due."""

    def get(self, cid: str, now: float, offset: float) -> ConversationState | None:
        """The state of a live ``cid``, else None."""

    def is_live(self, cid: str, now: float) -> bool:
        """Whether ``cid`` is known and not past its deadline."""

    def count(self, now: float) -> int:
        """How many conversations are live (not past their deadline)."""

    def add_cleanup(self, cid: str, now: float, fn: Cleanup) -> None:
        """Attach ``fn`` to a live ``cid``, raising like :meth:`touch` otherwise."""

    def end(self, cid: str, now: float, offset: float) -> Removed:
        """Remove ``cid`` now: reason ENDED if it was live, its expiry reason if it was past
        due; nothing if unknown."""

    def collect(
        self, now: float, offset: float, limit: int
    ) -> tuple[Removed, list[ConversationState], bool]:
        """Remove up to ``limit`` past-due conversations and mark those entering their warning
        window; returns (removed, newly warned, whether more work remains)."""

    def drain(self, now: float, offset: float, limit: int) -> Removed:
        """Remove up to ``limit`` conversations, live or not (shutdown)."""

    def contended(self) -> bool:
        """Whether a request thread had to wait for the lock since the last call; a sweep
        between batches then lets it in (a store without a local lock answers False)."""

    def next_warning_at(self) -> float | None:
        """When the next warning falls due, if warnings are configured."""

    def reinit_after_fork(self) -> None:
        """Make the store usable in a forked child (fresh locks, data kept)."""
