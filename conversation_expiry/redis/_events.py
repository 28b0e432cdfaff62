"""Which held conversations left through another process: the departures stream, read from
this process's cursor, and a reconciliation when the stream was trimmed past it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .._state import ExpiryReason
from ._codec import REASONS, encode_id

__all__ = ["Held"]

_READ = 500  # stream entries per script
_CHECK = 250  # held incarnations per reconciliation script

Run = Callable[[Any, list[Any]], Any]  # (script, its own arguments) -> reply


class Held:
    """The incarnations this process holds cleanups for, and its place in the stream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, str] = {}  # incarnation -> id
        self._cursor: bytes | None = None  # None: not reading (nothing held)
        # Holds under way: their incarnation is HELD in Redis before it is in ``_held``, so an
        # entry read meanwhile may be theirs; it waits in ``_unmatched`` for them to finish.
        self._holding = 0
        self._unmatched: dict[int, ExpiryReason] = {}
        self._late: list[tuple[str, int, ExpiryReason]] = []  # theirs, for the next read

    def __len__(self) -> int:
        return len(self._held)

    def start_reading(self, run: Run, events: Any) -> None:
        """Before the first hold: read from the stream's current end (nothing before matters)."""
        if self._cursor is None:
            last = run(events, [b"", 1])[0]
            with self._lock:
                if self._cursor is None:
                    self._cursor = last

    def begin_hold(self) -> None:
        with self._lock:
            self._holding += 1

    def end_hold(self, inc: int | None, cid: str) -> None:
        """A hold begun is done: ``inc`` is held (None: the hold failed)."""
        with self._lock:
            self._holding -= 1
            if inc is not None:
                reason = self._unmatched.pop(inc, None)
                if reason is None:
                    self._held[inc] = cid
                else:  # it left while the hold was under way
                    self._late.append((cid, inc, reason))
            if not self._holding:
                self._unmatched.clear()  # (no hold under way: those were nobody's here)

    def forget(self, incarnations: list[int]) -> None:
        """This process claimed these: its manager runs their cleanups itself."""
        with self._lock:
            for inc in incarnations:
                self._held.pop(inc, None)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    def left_elsewhere(
        self, run: Run, events: Any, gone: Any, owner: bytes
    ) -> list[tuple[str, int, ExpiryReason]]:
        with self._lock:
            late, self._late = self._late, []
            if not self._held and not self._holding:
                self._cursor = None  # nothing to look for; start again at the next hold
                return late
            cursor = self._cursor
        out: list[tuple[str, int, ExpiryReason]] = late
        try:
            if cursor is None:
                self.start_reading(run, events)
                return out
            trimmed = False
            while True:
                last, cut, entries = run(events, [cursor, _READ])
                trimmed = trimmed or bool(cut)
                for entry_id, fields in entries:
                    cursor = entry_id
                    f = dict(zip(fields[::2], fields[1::2], strict=True))
                    if f.get(b"o") == owner:
                        continue  # this process acknowledged it: it ran its own cleanups
                    reason = REASONS.get(int(f[b"r"]), ExpiryReason.EXPIRED)
                    self._found(int(f[b"i"]), reason, out)
                if len(entries) < _READ:
                    break
            if trimmed:
                self._reconcile(run, gone, out)
        except BaseException:
            # (Redis went away mid-read) Those found are no longer held: the next read, from
            # the same cursor, hands them over instead.
            with self._lock:
                self._late[:0] = out
            raise
        with self._lock:
            self._cursor = cursor if not trimmed else last
        return out

    def _found(
        self, inc: int, reason: ExpiryReason, out: list[tuple[str, int, ExpiryReason]]
    ) -> None:
        with self._lock:
            cid = self._held.pop(inc, None)
            if cid is None and self._holding:
                self._unmatched[inc] = reason
        if cid is not None:
            out.append((cid, inc, reason))

    def _reconcile(self, run: Run, gone: Any, out: list[tuple[str, int, ExpiryReason]]) -> None:
        """Entries were trimmed unread: ask about every incarnation still held."""
        with self._lock:
            pairs = list(self._held.items())
        for start in range(0, len(pairs), _CHECK):
            args: list[Any] = []
            for inc, cid in pairs[start : start + _CHECK]:
                args += [encode_id(cid), str(inc).encode()]
            reply = run(gone, args)
            for n in range(0, len(reply), 3):
                inc = int(reply[n + 1])
                # No trace left: it was acknowledged and its entry trimmed; the reason is lost.
                reason = REASONS.get(int(reply[n + 2]), ExpiryReason.EXPIRED)
                self._found(inc, reason, out)
