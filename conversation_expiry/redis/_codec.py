"""Records as the scripts store them, turned into states and departures.

A live record is flags (1 byte), created, last activity, ttl (7-byte little-endian integers of
microseconds), incarnation (6 bytes), then max_age and warning_before (7 bytes each) if the
flags say so, then the metadata JSON (see lua/lib_layout.lua for why it is this tight). A claimed
record is ``<16sBBI`` (owner, reason, lapsed claims, id length), the id, then a live record.
Decoding in Python keeps the scripts short and the replies small.
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from .._clock import Clock, WallOffset, reader
from .._errors import ClockError
from .._state import ConversationState, ExpiryReason
from .._store import Departures, new_state

__all__ = [
    "REASONS",
    "Claim",
    "Claimed",
    "DrivenTime",
    "decode_claimed",
    "decode_id",
    "departures",
    "encode_id",
    "incarnation_of",
    "live_state",
    "to_datetime",
    "to_us",
    "touched_state",
    "us_of",
]

_HEAD = struct.Struct("<16sBBI")
HEAD_LEN = _HEAD.size  # 22
REC_LEN = 28
WARNED, HELD, HAS_MAX_AGE, HAS_WARNING = 1, 2, 4, 8
_from = int.from_bytes

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


# Durations are capped at about 142 years: a deadline then stays below 2^53 microseconds, where
# Lua's doubles are exact, and within the records' 7-byte fields. Longer is "never" anyway.
MAX_SPAN_US = 2**52


def to_us(seconds: float) -> int:
    """Seconds as whole microseconds, at least one (a positive duration stays positive)."""
    return max(1, min(MAX_SPAN_US, round(seconds * 1e6)))


def us_of(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


def to_datetime(us: float) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


def _record(raw: bytes, pos: int) -> tuple[float, float, float, bool, int, str | None]:
    """(created, last, expires) in seconds, warned, incarnation, metadata of a live record."""
    flags = raw[pos]
    c = _from(raw[pos + 1 : pos + 8], "little")
    d = last = _from(raw[pos + 8 : pos + 15], "little")
    d += _from(raw[pos + 15 : pos + 22], "little")
    inc = _from(raw[pos + 22 : pos + 28], "little")
    pos += REC_LEN
    if flags & HAS_MAX_AGE:
        capped = c + _from(raw[pos : pos + 7], "little")
        if capped < d:
            d = capped
        pos += 7
    if flags & HAS_WARNING:
        pos += 7
    md = raw[pos:].decode("utf-8", "surrogatepass") if len(raw) > pos else None
    return c / 1e6, last / 1e6, d / 1e6, bool(flags & WARNED), inc, md


def live_state(cid: str, raw: bytes) -> ConversationState:
    c, last, d, warned, _inc, md = _record(raw, 0)
    return new_state(cid, c, last, d, True, warned, 0.0, md)


def touched_state(cid: str, raw: bytes) -> ConversationState:
    """live_state, for the record a touch returns: the usual one (no max_age, no warning
    window) decoded in line, update_activity being the call made most."""
    if raw[0] & (HAS_MAX_AGE | HAS_WARNING):
        return live_state(cid, raw)
    last = _from(raw[8:15], "little")
    md = raw[REC_LEN:].decode("utf-8", "surrogatepass") if len(raw) > REC_LEN else None
    return new_state(
        cid,
        _from(raw[1:8], "little") / 1e6,
        last / 1e6,
        (last + _from(raw[15:22], "little")) / 1e6,
        True,
        bool(raw[0] & WARNED),
        0.0,
        md,
    )


def incarnation_of(raw: bytes) -> int:
    return _from(raw[22:28], "little")


class Claimed(NamedTuple):
    """One claimed record, decoded."""

    state: ConversationState  # active=False
    reason: ExpiryReason
    incarnation: int
    held: bool
    lapses: int


def decode_claimed(blob: bytes) -> Claimed:
    _owner, reason, lapses, idlen = _HEAD.unpack_from(blob)
    cid = decode_id(blob[HEAD_LEN : HEAD_LEN + idlen])
    pos = HEAD_LEN + idlen
    c, last, d, warned, inc, md = _record(blob, pos)
    state = new_state(cid, c, last, d, False, warned, 0.0, md)
    return Claimed(state, REASONS[reason], inc, bool(blob[pos] & HELD), lapses)


class Claim:
    """What ``ack`` needs for one :class:`Departures`: the incarnations this process claimed."""

    __slots__ = ("acked", "incarnations", "states")

    def __init__(self, incarnations: list[bytes], states: list[ConversationState]) -> None:
        self.incarnations = incarnations
        self.states = states  # (the Departures' own list: for the ids, should an ack be lost)
        self.acked = False

    @property
    def ids(self) -> list[str]:
        return [state[0] for state in self.states]

    def __repr__(self) -> str:
        return f"Claim({len(self.incarnations)} incarnations, acked={self.acked})"


def departures(blobs: list[bytes], now: bytes | str) -> tuple[Departures, list[int]]:
    """A Departures for claimed records, and the incarnations among them that were held.

    Written out rather than built from :func:`decode_claimed`: a sweep decodes every record.
    """
    states: list[ConversationState] = []
    reasons: list[ExpiryReason] = []
    tokens: dict[str, int] = {}
    incs: list[bytes] = []
    held: list[int] = []
    unpack = _HEAD.unpack_from
    for blob in blobs:
        reason, idlen = unpack(blob)[1::2]
        pos = HEAD_LEN + idlen
        cid = blob[HEAD_LEN:pos].decode("utf-8", "surrogatepass")
        c, last, d, warned, inc, md = _record(blob, pos)
        states.append(new_state(cid, c, last, d, False, warned, 0.0, md))
        reasons.append(REASONS[reason])
        incs.append(b"%d" % inc)
        if blob[pos] & HELD:
            tokens[cid] = inc
            held.append(inc)
    claim = Claim(incs, states) if incs else None
    return Departures(states, reasons, tokens, float(now) / 1e6, claim), held


_LIMIT_US = 2**53  # microseconds: Lua's numbers are exact below (the year 2255)


class DrivenTime:
    """The time argument of the scripts from a manager's clock (one that is not a SystemClock,
    a ManualClock in tests): POSIX microseconds as text."""

    __slots__ = ("_offset", "_offset_us", "_read")

    def __init__(self, clock: Clock) -> None:
        self._read = reader(clock)
        self._offset: object = None
        self._offset_us = 0

    def __call__(self) -> bytes:
        mono, offset = self._read()
        try:
            if type(offset) is WallOffset:
                if offset is not self._offset:
                    self._offset = offset
                    self._offset_us = us_of(offset.base)
                us = self._offset_us + round((mono - offset.mono) * 1e6)
            else:
                us = round((mono + offset) * 1e6)
        except (TypeError, ValueError, OverflowError):
            us = None
        if us is None or isinstance(mono, (bool, str, bytes)):
            raise ClockError(
                f"the clock gave a reading that is not a finite number of seconds: "
                f"{mono!r:.60}, offset {offset!r:.60}"
            )
        if not 0 < us < _LIMIT_US:
            # Redis stores POSIX microseconds, exact in a Lua number (a double) up to 2**53.
            raise ClockError(
                "with a Redis store, a driven clock must read a time after 1970-01-01 and "
                f"before 2255-06-05 UTC (POSIX microseconds under 2**53); it reads {mono!r:.60}"
                f", offset {offset!r:.60}"
            )
        return str(us).encode()
