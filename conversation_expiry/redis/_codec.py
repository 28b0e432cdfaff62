"""Records as the scripts store them, turned into states and departures.

A live record is ``<6dB`` (created, last, ttl, max_age, warning_before, incarnation, flags) in
microseconds, then the metadata JSON; a claimed record prefixes ``<16sBBI`` (owner, reason,
lapsed claims, id length) and puts the id between the two. Decoding in Python with ``struct``
keeps the scripts short and the replies small.
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from .._state import ConversationState, ExpiryReason
from .._store import Departures, new_state

__all__ = [
    "Claim",
    "Claimed",
    "decode_claimed",
    "decode_id",
    "encode_id",
    "live_state",
    "to_datetime",
    "to_us",
]

_REC = struct.Struct("<6dB")
_HEAD = struct.Struct("<16sBBI")
REC_LEN = _REC.size  # 49
HEAD_LEN = _HEAD.size  # 22
WARNED, HELD = 1, 2

REASONS = {
    1: ExpiryReason.EXPIRED,
    2: ExpiryReason.ENDED,
    3: ExpiryReason.EVICTED,
    4: ExpiryReason.SHUTDOWN,
    5: ExpiryReason.MAX_AGE,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def encode_id(cid: str) -> bytes:
    # surrogatepass: every Python str (even one with lone surrogates) has exactly one encoding.
    return cid.encode("utf-8", "surrogatepass")


def decode_id(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def to_us(seconds: float) -> int:
    """Seconds as whole microseconds, at least one (a positive duration stays positive)."""
    return max(1, round(seconds * 1e6))


def us_of(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


def to_datetime(us: float) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


def _metadata(raw: bytes, start: int) -> str | None:
    return raw[start:].decode("utf-8", "surrogatepass") if len(raw) > start else None


def live_state(cid: str, raw: bytes) -> ConversationState:
    c, last, ttl, max_age, _w, _i, flags = _REC.unpack_from(raw)
    d = last + ttl
    if max_age > 0 and c + max_age < d:
        d = c + max_age
    return new_state(
        cid, c / 1e6, last / 1e6, d / 1e6, True, bool(flags & WARNED), 0.0, _metadata(raw, REC_LEN)
    )


def incarnation_of(raw: bytes) -> int:
    return int(_REC.unpack_from(raw)[5])


class Claimed(NamedTuple):
    """One claimed record, decoded."""

    state: ConversationState  # active=False
    reason: ExpiryReason
    incarnation: int
    held: bool
    lapses: int


def decode_claimed(blob: bytes) -> Claimed:
    _owner, reason, lapses, idlen = _HEAD.unpack_from(blob)
    c, last, ttl, max_age, _w, inc, flags = _REC.unpack_from(blob, HEAD_LEN)
    start = HEAD_LEN + REC_LEN
    cid = decode_id(blob[start : start + idlen])
    d = last + ttl
    if max_age > 0 and c + max_age < d:
        d = c + max_age
    md = _metadata(blob, start + idlen)
    state = new_state(cid, c / 1e6, last / 1e6, d / 1e6, False, bool(flags & WARNED), 0.0, md)
    return Claimed(state, REASONS[reason], int(inc), bool(flags & HELD), lapses)


class Claim:
    """What ``ack`` needs for one :class:`Departures`: the incarnations this process claimed."""

    __slots__ = ("acked", "incarnations")

    def __init__(self, incarnations: list[bytes]) -> None:
        self.incarnations = incarnations
        self.acked = False

    def __repr__(self) -> str:
        return f"Claim({len(self.incarnations)} incarnations, acked={self.acked})"


def departures(blobs: list[bytes], now: bytes | str) -> tuple[Departures, list[Claimed]]:
    """A Departures for claimed records, with the records decoded (for the held bookkeeping)."""
    decoded = [decode_claimed(b) for b in blobs]
    states = [d.state for d in decoded]
    reasons = [d.reason for d in decoded]
    tokens = {d.state[0]: d.incarnation for d in decoded if d.held}
    claim = Claim([str(d.incarnation).encode() for d in decoded]) if decoded else None
    return Departures(states, reasons, tokens, float(now) / 1e6, claim), decoded
