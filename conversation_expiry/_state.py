"""The immutable snapshot of one conversation, and why conversations leave."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import FrozenInstanceError
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._clock import WallOffset

__all__ = ["ConversationState", "ExpiryReason"]

_UTC = timezone.utc
_NO_METADATA: Mapping[str, Any] = MappingProxyType({})
METADATA_LIMIT = 64 * 1024  # bytes of compact JSON


def encode_metadata(value: object, name: str = "metadata") -> str:
    """``value`` as compact, key-sorted JSON text (so equal mappings encode equally)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping, got {type(value).__name__}: {value!r:.80}")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be str, got {key!r:.80}")
    try:
        text = json.dumps(dict(value), separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be JSON-serializable: {exc}") from None
    if len(text.encode("utf-8")) > METADATA_LIMIT:
        raise ValueError(f"{name} is over {METADATA_LIMIT} bytes as compact JSON")
    return text


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


def deadline_of(state: ConversationState) -> float:
    """A snapshot's deadline in its store's readings (the unit ``Departures.now`` is in)."""
    times: complex = state[1]
    return times.real + state[2][0]  # type: ignore[no-any-return]


class _SnapshotType(type):
    """ConversationState's type: the public constructor (from datetimes) is its ``__call__``.

    So the class keeps tuple's own ``__new__``, and the stores build snapshots from their
    layout by :data:`snapshot`, in C: ``tuple.__new__(cls, layout)``, the way to skip a
    Python ``__new__``, costs ~20 ns more per snapshot (its wrapper copies the arguments),
    ~7% of a sweep's cost per conversation and ~3% of an ``update_activity``.
    """

    def __call__(
        cls,
        id: str,
        created_at: datetime,
        last_activity: datetime,
        expires_at: datetime,
        active: bool = True,
        warning_sent: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> Any:
        for name, value in (
            ("created_at", created_at),
            ("last_activity", last_activity),
            ("expires_at", expires_at),
        ):
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise TypeError(f"{name} must be a timezone-aware datetime, got {value!r}")
        # Exact for any date: readings relative to created_at, which anchors the offset.
        return super().__call__(
            (
                id,
                complex((last_activity - created_at).total_seconds(), 0.0),
                (
                    (expires_at - last_activity).total_seconds(),
                    bool(active),
                    bool(warning_sent),
                    WallOffset(created_at, 0.0),
                    None if not metadata else encode_metadata(metadata),
                ),
            ),
        )


class ConversationState(tuple, metaclass=_SnapshotType):  # type: ignore[type-arg]
    """Snapshot of one conversation (Go: ``ConversationState``); frozen, compared by value.

    Times are kept as the clock's monotonic seconds plus its wall offset, and turned into
    timezone-aware UTC datetimes when read: a snapshot is built on every ``update_activity`` and
    for every conversation a sweep removes, and most are never looked at.
    """

    # Layout, for stores that build snapshots (``_store.new_state``): (id, times, (span,
    # active, warning_sent, offset, metadata)). ``times`` is complex(last activity, created)
    # and ``span`` the time from last activity to expiry, in the store's reading units; offset
    # added to a reading gives POSIX seconds; metadata is the compact JSON text or None.
    # The in-memory store keeps that very complex as its record and the TTL as the span, so
    # a sweep builds a snapshot without making a float (a third of a sweep's cost before).
    # The last five are one tuple, which a sweep shares among the states of a batch (and the
    # request path among its snapshots): a state of three items costs ~10 ns less to build
    # than one of seven, ~5% of a sweep's cost per conversation at 10k.
    __slots__ = ()

    if TYPE_CHECKING:  # the constructor is the metaclass's __call__; this is its signature

        def __new__(
            cls,
            id: str,
            created_at: datetime,
            last_activity: datetime,
            expires_at: datetime,
            active: bool = True,
            warning_sent: bool = False,
            metadata: Mapping[str, Any] | None = None,
        ) -> ConversationState: ...

    @property
    def id(self) -> str:
        return self[0]  # type: ignore[no-any-return]

    @property
    def created_at(self) -> datetime:
        return _dt(self[1].imag, self[2][3])

    @property
    def last_activity(self) -> datetime:
        return _dt(self[1].real, self[2][3])

    @property
    def expires_at(self) -> datetime:
        # From last_activity, so that the two are exactly the TTL apart (``expires_at = now +
        # ttl``): each rounded to the microsecond on its own could differ by one.
        return self.last_activity + timedelta(seconds=self[2][0])

    @property
    def active(self) -> bool:
        return self[2][1]  # type: ignore[no-any-return]

    @property
    def warning_sent(self) -> bool:
        return self[2][2]  # type: ignore[no-any-return]

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The metadata given at registration, as ``json.loads`` gives it back; read-only."""
        text = self[2][4]
        if not text or text == "{}":
            return _NO_METADATA
        return MappingProxyType(json.loads(text))

    def _key(self) -> tuple[Any, ...]:
        # Equality is by the values a reader sees (microsecond datetimes), so a state built by
        # hand from datetimes equals the manager's snapshot of the same instant.
        rest = self[2]
        meta = rest[4] if rest[4] != "{}" else None
        return (
            self[0], self.created_at, self.last_activity, self.expires_at, rest[1], rest[2], meta
        )

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
        # By the fields a reader sees, through the public constructor: not by the layout, which
        # is the stores' and may change, so a state pickled by one release loads in another.
        meta = self.metadata
        return (
            ConversationState,
            (self[0], self.created_at, self.last_activity, self.expires_at, self[2][1],
             self[2][2], dict(meta) if meta else None),
        )  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"ConversationState(id={self[0]!r}, created_at={self.created_at.isoformat()}, "
            f"last_activity={self.last_activity.isoformat()}, "
            f"expires_at={self.expires_at.isoformat()}, active={self[2][1]}, "
            f"warning_sent={self[2][2]}"
            + (
                f", metadata={dict(self.metadata)!r:.200}"
                if self[2][4] and self[2][4] != "{}"
                else ""
            )
            + ")"
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (datetimes stay datetimes)."""
        return {
            "id": self[0],
            "created_at": self.created_at,
            "last_activity": self.last_activity,
            "expires_at": self.expires_at,
            "active": self[2][1],
            "warning_sent": self[2][2],
            "metadata": dict(self.metadata),
        }


# ConversationState from its layout tuple, in C: type.__call__ bound to the class runs tuple's
# __new__ and skips the metaclass's (the public constructor from datetimes).
snapshot: Callable[[tuple[Any, ...]], ConversationState]
snapshot = type.__call__.__get__(ConversationState, _SnapshotType)
