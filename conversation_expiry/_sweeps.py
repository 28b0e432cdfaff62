"""The in-memory store's sweeps, warnings and drain, on the bookkeeping of ``Book``.

Apart from ``Book`` because a sweep has its own concern (what leaves, in batches, at what cost)
and ``Book`` would pass 300 lines. The caller holds the lock, as for every ``Book`` method.
"""

from __future__ import annotations

from collections import deque
from itertools import islice, repeat

from ._book import Book
from ._buckets import Chain
from ._clock import SLACK
from ._state import ConversationState, ExpiryReason, snapshot
from ._store import Departures
from ._walks import pop_due

__all__ = ["Ledger"]

_EXPIRED = ExpiryReason.EXPIRED
_MAX_AGE = ExpiryReason.MAX_AGE


class Ledger(Book):
    """``Book`` with the sweep side: claims of past-due ids, warnings, the shutdown drain."""

    def _collect_plain(self, now: float, offset: float, limit: int) -> tuple[Departures, bool]:
        # One TTL, no max_age, no warnings: the expired ids are a prefix of one chain, taken by
        # loops in C. This is most of a sweep's cost per conversation.
        # A record is the snapshot's times and the TTL its span: no float is made.
        ids, vals, more, earliest = pop_due(self._fresh, now - SLACK, limit)
        n = len(ids)
        states: list[ConversationState] = list(
            map(
                snapshot,
                zip(ids, vals, repeat((self._ttl, False, False, offset, None))),
            )
        )
        tokens: dict[str, int] = {}
        for side in (self._seq, self._moved):  # (stamps of ties, markers of moves: in C)
            if side:
                deque(map(side.pop, ids, repeat(None)), 0)
        if self._held or self._meta:
            self._forget_side(states, tokens)
        # One TTL: the earliest last activity makes the earliest deadline (the same float:
        # adding the TTL keeps the order).
        oldest = earliest + self._ttl if n else None
        return Departures(states, [_EXPIRED] * n, tokens, now, None, ids, oldest), more

    def _forget_side(self, states: list[ConversationState], tokens: dict[str, int]) -> None:
        # The plain walk builds states without metadata; those that had some get it back here.
        held, meta = self._held, self._meta
        for i, state in enumerate(states):
            cid = state[0]
            token = held.pop(cid, None) if held else None
            if token is not None:
                tokens[cid] = token
            text = meta.pop(cid, None) if meta else None
            if text is not None:
                states[i] = snapshot((cid, state[1], (*state[2][:4], text)))

    def _collect_warnings(
        self, now: float, offset: float, limit: int, out: list[ConversationState]
    ) -> None:
        assert self._warn is not None
        last_of = self._last
        for q in self._queues.values():
            chain = q.fresh
            while len(out) < limit:
                cid = chain.first()
                if cid is None:
                    break
                v = last_of[cid]
                last = v.real
                if last + q.ttl - self._warn > now + SLACK:
                    break
                chain.pop_first(cid)
                q.warned.put(cid, v)
                self._on_warned.add(cid)
                if cid not in self._warned:
                    self._warned.add(cid)
                    out.append(self._state(cid, v.imag, last, q.ttl, offset))
        if self._max_age is not None:
            for cid, v in last_of.items():
                if len(out) >= limit:
                    break
                if v.imag + self._max_age - self._warn > now + SLACK:
                    break
                if cid not in self._warned:
                    self._warned.add(cid)
                    out.append(self._state(cid, v.imag, v.real, self._ttl_for(cid), offset))

    def _collect(
        self, now: float, offset: float, limit: int
    ) -> tuple[Departures, list[ConversationState], bool]:
        if self._plain and len(self._queues) == 1:
            removed, more = self._collect_plain(now, offset, limit)
            return removed, [], more
        removed = Departures([], [], {}, now)
        warned: list[ConversationState] = []
        last_of = self._last
        for q in list(self._queues.values()):
            chain: Chain
            for chain in (q.warned, q.fresh):
                while len(removed.states) < limit:
                    cid = chain.first()
                    if cid is None:
                        break
                    v = last_of[cid]
                    created, last = v.imag, v.real
                    if now <= self._due(created, last, q.ttl):
                        break
                    reason = self._reason(created, last, q.ttl)
                    self._remove(cid, reason, offset, removed, at_head=chain)
            if q is not self._default and not q.fresh.size and not q.warned.size:
                del self._queues[q.ttl]  # a TTL nobody uses any more
        if self._max_age is not None and len(removed.states) < limit:
            room = limit - len(removed.states)
            due: list[str] = []
            for cid, v in last_of.items():
                if len(due) >= room:
                    break
                if now <= v.imag + self._max_age + SLACK:
                    break
                due.append(cid)
            for cid in due:
                self._remove(cid, _MAX_AGE, offset, removed)
        if self._warn is not None:
            self._collect_warnings(now, offset, limit - len(removed.states), warned)
        return removed, warned, len(removed.states) + len(warned) >= limit

    def _drain(self, now: float, offset: float, limit: int) -> Departures:
        removed = Departures([], [], {}, now)
        for cid in list(islice(self._last, limit)):
            v = self._last[cid]
            ttl = self._ttl_for(cid)
            created, last = v.imag, v.real
            if now > self._due(created, last, ttl):
                self._remove(cid, self._reason(created, last, ttl), offset, removed)
            else:
                self._remove(cid, ExpiryReason.SHUTDOWN, offset, removed)
        return removed

    def _next_warning_at(self) -> float | None:
        assert self._warn is not None
        due: float | None = None
        for q in self._queues.values():
            head = q.fresh.first()
            if head is not None:
                at = self._last[head].real + q.ttl - self._warn
                due = at if due is None else min(due, at)
        if self._max_age is not None:
            for cid, v in self._last.items():
                if cid not in self._warned:
                    at = v.imag + self._max_age - self._warn
                    due = at if due is None else min(due, at)
                    break
        return due

    def _next_warning_in(self, now: float) -> float | None:
        if self._warn is None:
            return None
        due = self._next_warning_at()
        return None if due is None else max(0.0, due - now)
