"""The storage seam: what a conversation store must do for the manager.

The manager owns validation, callbacks, telemetry, the cleanup thread and the cleanup callables
attached in this process; a store owns the conversations, their deadlines and its own time base.
The in-memory store reads the manager's clock; a shared store (Redis) reads its server's clock
unless the manager was given a clock that is not a :class:`SystemClock`, which then drives it.

Every method that changes something does so atomically and decides on one reading of the store's
time that is never older than one it already acted on. Conversations leave in two steps: a call
*claims* them (they are gone for every other caller from then on) and returns a
:class:`Departures`; once the manager has run what must run for them it calls :meth:`ack`. A
claim that is never acknowledged (its process died) is taken over by another process after the
store's lease; the in-memory store's claim is final at once and its ``ack`` does nothing.

Times in snapshots and ``Departures.now`` are in the store's reading units: a state's fields
``(created, last, expires)`` plus its offset give POSIX seconds (see ``ConversationState``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ._state import ConversationState, ExpiryReason, snapshot

if TYPE_CHECKING:
    from ._clock import Clock

__all__ = [
    "STORE_METHODS",
    "Cleanup",
    "ConversationStore",
    "Departures",
    "Policy",
    "Sweep",
    "new_state",
]

Cleanup = Callable[[], object]

# What an object must have to be taken for a store (the manager and the web settings check it).
STORE_METHODS = (
    "bind", "register", "ensure", "touch", "get", "is_live", "count", "hold", "end", "claim",
    "ack", "drain", "left_elsewhere",
)


class Departures(NamedTuple):
    """Conversations claimed by one call, and what the manager needs to finish them.

    One object per call, not per conversation: a sweep claims many, and a tuple each would be a
    sizeable part of its cost.
    """

    # As they were when they left, ``active=False``. The list is the manager's once returned:
    # while it runs the callables it has one item more at its end (its loop's end marker,
    # cheaper than a copy), taken off before it calls ``ack``.
    states: list[ConversationState]
    reasons: list[ExpiryReason]  # parallel to ``states``
    tokens: dict[str, int]  # id -> incarnation, for those some process attached cleanups to
    now: float  # the store's reading when they left
    claim: Any = None  # what ``ack`` needs; None when there is nothing to acknowledge
    # The states' ids, in their order, where the store has that list at hand (a sweep returns
    # them; taking each from its state costs ~12 ns, 4% of a sweep per conversation); or None.
    ids: list[str] | None = None
    # The earliest deadline among the states (store readings) where the store knows it without
    # reading them (a sweep of one queue: from the first record of each review); or None. The
    # cleanup-lag metric needs only that, and reading it from every state costs ~70 ns each.
    oldest: float | None = None


class Sweep(NamedTuple):
    """What one :meth:`ConversationStore.claim` call found."""

    departures: Departures  # past-due conversations claimed, at most ``limit``
    warned: list[ConversationState]  # conversations that entered their warning window
    more: bool  # whether another call may find more work now
    next_warning_in: float | None  # seconds until the next warning falls due, if any is known


def new_state(
    cid: str,
    created: float,
    last: float,
    expires: float,
    active: bool,
    warned: bool,
    offset: float,
    metadata: str | None = None,
) -> ConversationState:
    """A snapshot from a store's readings; no checks (stores call it a lot).

    ``metadata`` is the conversation's metadata as ``encode_metadata`` writes it (compact,
    keys sorted: states compare their metadata by that text), or None. The
    snapshot keeps ``expires - last``, which gives ``expires`` back exactly whenever the two
    readings are within a factor of two of each other (Sterbenz), as POSIX seconds are.
    """
    rest = (expires - last, active, warned, offset, metadata)
    return snapshot((cid, complex(last, created), rest))


def no_departures(now: float) -> Departures:
    return Departures([], [], {}, now)


@dataclass(frozen=True)
class Policy:
    """The manager's settings that decide deadlines; handed to the store once."""

    ttl: float
    max_age: float | None = None
    warning_before: float | None = None
    max_conversations: int | None = None


class ConversationStore(Protocol):
    """Conversations and their deadlines, safe to call from many threads.

    ``shared`` is True for a store that other processes see too: the manager then never removes
    conversations at ``stop()`` and asks :meth:`left_elsewhere` about those it holds cleanups for.
    """

    shared: bool

    def bind(self, policy: Policy, clock: Clock) -> None:
        """Adopt the manager's policy and clock; called once, before any other method.

        A store is bound to one manager: binding it again raises ``RuntimeError``.
        """

    def register(
        self, cid: str, ttl: float | None, metadata: str | None
    ) -> tuple[ConversationState, Departures]:
        """Start ``cid``, or count as activity if it is live (keeping its created time and
        incarnation; a ``ttl`` given replaces its TTL, ``metadata`` given replaces its
        metadata). A past-due ``cid`` is claimed and started afresh. Returns its state and
        whatever was claimed (the old incarnation, conversations evicted to make room)."""

    def ensure(self, cid: str, extend: bool) -> tuple[ConversationState, bool, Departures]:
        """Touch ``cid`` if it is live (sliding its deadline if ``extend``), else start it
        afresh, in one atomic step; returns its state, whether it started, what was claimed."""

    def touch(self, cid: str, extend: bool) -> ConversationState:
        """Slide the deadline of a live ``cid`` if ``extend``; raise
        ``ConversationNotFoundError`` if unknown, ``ConversationExpiredError`` if past due."""

    def get(self, cid: str) -> ConversationState | None:
        """The state of a live ``cid``, else None."""

    def is_live(self, cid: str) -> bool:
        """Whether ``cid`` is known and not past its deadline."""

    def count(self) -> int:
        """How many conversations are live (not past their deadline); O(1) or O(log n)."""

    def hold(self, cid: str) -> int:
        """Note that this process attaches cleanups to the live ``cid``; returns its incarnation.

        Raises like :meth:`touch` if it is not live. The incarnation is unique to this start of
        ``cid``: an id registered again (here or elsewhere) has another one, so cleanups held
        for the old one never run for the new one. Departures of a held conversation carry it in
        ``tokens``.
        """

    def end(self, cid: str) -> Departures:
        """Claim ``cid`` now: reason ENDED if it was live, its expiry reason if it was past due;
        nothing if unknown or already claimed."""

    def claim(self, limit: int) -> Sweep:
        """Claim up to ``limit`` past-due conversations and mark those entering their warning
        window. A claim whose process stopped acknowledging for longer than the lease is taken
        over here too (its states keep their reason)."""

    def ack(self, departures: Departures) -> None:
        """The manager ran what it had to for ``departures``; forget them for good.

        Safe to call twice; an acknowledgement that comes after the claim was taken over has no
        effect (and is counted by the store).
        """

    def drain(self, limit: int) -> Departures:
        """Claim up to ``limit`` conversations, live or not (reason SHUTDOWN for live ones) at
        shutdown; a shared store claims nothing (other processes still serve them)."""

    def left_elsewhere(self) -> list[tuple[str, int, ExpiryReason]]:
        """(id, incarnation, reason) of held conversations that another process finished since
        the last call; an unshared store returns []."""

    def close(self) -> None:
        """Release what the store holds (threads, connections); the manager's ``stop`` calls it
        only for stores it made itself."""
