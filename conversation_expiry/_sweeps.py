"""The in-memory store's sweeps, warnings and drain, on the bookkeeping of ``Book``.

Apart from ``Book`` because a sweep has its own concern (what leaves, in batches, at what cost)
and ``Book`` would pass 300 lines. The caller holds the lock, as for every ``Book`` method.
"""

from __future__ import annotations

from itertools import islice, repeat
from operator import add

from ._book import Book
from ._buckets import Chain
from ._state import ConversationState, ExpiryReason
from ._store import Departures

__all__ = ["Ledger"]

_tuple_new = tuple.__new__
_EXPIRED = ExpiryReason.EXPIRED
_MAX_AGE = ExpiryReason.MAX_AGE


class Ledger(Book):
    """``Book`` with the sweep side: claims of past-due ids, warnings, the shutdown drain."""

    def _collect_plain(self, now: float, offset: float, limit: int) -> Departures:
        # One TTL, no max_age, no warnings: the expired ids are a prefix of one chain, taken by
        # loops in C. This is most of a sweep's cost per conversation.
        ids, created, lasts = self._fresh.pop_due(now, limit)
        n = len(ids)
        deadlines = map(add, lasts, repeat(self._ttl))
        states: list[ConversationState] = list(
            map(
                _tuple_new,
                repeat(ConversationState, n),
                zip(ids, created, lasts, deadlines, repeat(False), repeat(False),
                    repeat(offset), repeat(None)),
            )
        )
        tokens: dict[str, int] = {}
        if self._held or self._meta:
            self._forget_side(states, tokens)
        return Departures(states, [_EXPIRED] * n, tokens, now)

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
                states[i] = _tuple_new(ConversationState, (*state[:7], text))

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
                last = last_of[cid]
                if last + q.ttl - self._warn > now:
                    break
                created = chain.take(chain.head_bucket(), cid, last)
                last_of[cid] = q.warned.put(cid, created, last)
                if cid not in self._warned:
                    self._warned.add(cid)
                    out.append(self._state(cid, created, last, q.ttl, offset))
        if self._max_age is not None:
            for cid, last in last_of.items():
                if len(out) >= limit:
                    break
                ttl = self._ttl_for(cid)
                created = self._created(cid, last, ttl)
                if created + self._max_age - self._warn > now:
                    break
                if cid not in self._warned:
                    self._warned.add(cid)
                    out.append(self._state(cid, created, last, ttl, offset))

    def _collect(
        self, now: float, offset: float, limit: int
    ) -> tuple[Departures, list[ConversationState], bool]:
        if self._plain and len(self._queues) == 1:
            removed = self._collect_plain(now, offset, limit)
            return removed, [], len(removed.states) >= limit
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
                    last = last_of[cid]
                    created = chain.head_bucket()[cid]
                    if now <= self._deadline(created, last, q.ttl):
                        break
                    self._remove(cid, self._reason(created, last, q.ttl), offset, removed)
            if q is not self._default and not q.fresh.size and not q.warned.size:
                del self._queues[q.ttl]  # a TTL nobody uses any more
        if self._max_age is not None and len(removed.states) < limit:
            room = limit - len(removed.states)
            due: list[str] = []
            for cid, last in last_of.items():
                if len(due) >= room:
                    break
                if now <= self._created(cid, last, self._ttl_for(cid)) + self._max_age:
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
            last = self._last[cid]
            ttl = self._ttl_for(cid)
            created = self._created(cid, last, ttl)
            if now > self._deadline(created, last, ttl):
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
                at = self._last[head] + q.ttl - self._warn
                due = at if due is None else min(due, at)
        if self._max_age is not None:
            for cid, last in self._last.items():
                if cid not in self._warned:
                    at = self._created(cid, last, self._ttl_for(cid)) + self._max_age - self._warn
                    due = at if due is None else min(due, at)
                    break
        return due

    def _next_warning_in(self, now: float) -> float | None:
        if self._warn is None:
            return None
        due = self._next_warning_at()
        return None if due is None else max(0.0, due - now)
