"""The immutable snapshot of one conversation, and why conversations leave."""

from __future__ import annotations

import enum
from dataclasses import FrozenInstanceError
from datetime import datetime, timedelta, timezone
from typing import Any

from ._clock import WallOffset

__all__ = ["ConversationState", "ExpiryReason"]

_UTC = timezone.utc
_tuple_new = tuple.__new__


class ExpiryReason(str, enum.Enum):
    """Why a conversation left the manager; passed to ``on_expire`` and recorded in telemetry."""

    EXPIRED = "expired"  # idle for longer than its TTL
    ENDED = "ended"  # end_conversation()
    EVICTED = "evicted"  # pushed out by max_conversations
    SHUTDOWN = "shutdown"  # stop(cleanup_remaining=True)
    MAX_AGE = "max_age"  # older than max_age, however active

    def __str__(self) -> str:
        return self.value


def _dt(reading: float, offset: float) -> datetime:
    if type(offset) is WallOffset:
        return offset.base + timedelta(seconds=reading - offset.mono)
    return datetime.fromtimestamp(reading + offset, _UTC)


class ConversationState(tuple):  # type: ignore[type-arg]
    """Snapshot of one conversation (Go: ``ConversationState``); frozen, compared by value.

    Times are kept as the clock's monotonic seconds plus its wall offset, and turned into
    timezone-aware UTC datetimes when read: a snapshot is built on every ``update_activity`` and
    for every conversation a sweep removes, and most are never looked at.
    """

    # Layout, for stores that build snapshots: (id, created, last, expires, active, warning_sent,
    # offset), the three times in monotonic seconds, offset = Clock.wall_offset().
    __slots__ = ()

    def __new__(
        cls,
        id: str,
        created_at: datetime,
        last_activity: datetime,
        expires_at: datetime,
        active: bool = True,
        warning_sent: bool = False,
    ) -> ConversationState:
        for name, value in (
            ("created_at", created_at),
            ("last_activity", last_activity),
            ("expires_at", expires_at),
        ):
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise TypeError(f"{name} must be a timezone-aware datetime, got {value!r}")
        # Exact for any date: readings relative to created_at, which anchors the offset.
        return _tuple_new(
            cls,
            (
                id,
                0.0,
                (last_activity - created_at).total_seconds(),
                (expires_at - created_at).total_seconds(),
                bool(active),
                bool(warning_sent),
                WallOffset(created_at, 0.0),
            ),
        )

    @property
    def id(self) -> str:
        return self[0]  # type: ignore[no-any-return]

    @property
    def created_at(self) -> datetime:
        return _dt(self[1], self[6])

    @property
    def last_activity(self) -> datetime:
        return _dt(self[2], self[6])

    @property
    def expires_at(self) -> datetime:
        return _dt(self[3], self[6])

    @property
    def active(self) -> bool:
        return self[4]  # type: ignore[no-any-return]

    @property
    def warning_sent(self) -> bool:
        return self[5]  # type: ignore[no-any-return]

    def _key(self) -> tuple[Any, ...]:
        # Equality is by the values a reader sees (microsecond datetimes), so a state built by
        # hand from datetimes equals the manager's snapshot of the same instant.
        return (self[0], self.created_at, self.last_activity, self.expires_at, self[4], self[5])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConversationState):
            return NotImplemented
        return self._key() == other._key()

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash(self._key())

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_tuple_new, (ConversationState, tuple(self)))

    def __repr__(self) -> str:
        return (
            f"ConversationState(id={self[0]!r}, created_at={self.created_at.isoformat()}, "
            f"last_activity={self.last_activity.isoformat()}, "
            f"expires_at={self.expires_at.isoformat()}, active={self[4]}, "
            f"warning_sent={self[5]})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (datetimes stay datetimes)."""
        return {
            "id": self[0],
            "created_at": self.created_at,
            "last_activity": self.last_activity,
            "expires_at": self.expires_at,
            "active": self[4],
            "warning_sent": self[5],
        }
