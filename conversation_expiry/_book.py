"""The in-memory store's bookkeeping, without locking: entries on per-TTL rings.

Each TTL has a queue: a ring threaded through the entries in order of last activity, so its head
is always the next to expire. Activity moves an entry to the tail (O(1), no dict writes, so no
dict resize on the hot path); a sweep walks from the heads and stops at the first live entry,
costing what expires, not what lives. With warnings configured a queue has a second ring for the
entries already warned, so a sweep never walks them again. ``max_age`` deadlines follow creation
order, which is the id map's own insertion order.

Rarely used fields (custom TTLs, warnings, metadata, the incarnation of a conversation that has
cleanups) live in side maps keyed by id, which keeps an entry at five slots: the memory target is
per conversation. Every method here expects the caller (``MemoryStore``) to hold the lock, and
to pass store time that never runs backwards (the rings' order and the tallies rely on it).
"""

from __future__ import annotations

import math
from itertools import count, islice

from ._errors import ConversationExpiredError, ConversationNotFoundError
from ._rings import Entry, Queue, append, unlink
from ._state import ConversationState, ExpiryReason
from ._store import Departures, Policy, new_state

__all__ = ["Book"]

_tuple_new = tuple.__new__
_EXPIRED = ExpiryReason.EXPIRED
_MAX_AGE = ExpiryReason.MAX_AGE
# Incarnations of held conversations, unique across every store of the process.
_incarnations = count(1)


class Book:
    """Conversations, their rings and side maps; not thread-safe on its own."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._ttl_of: dict[str, float] = {}
        self._warned: set[str] = set()
        self._held: dict[str, int] = {}  # id -> incarnation, for those with cleanups
        self._meta: dict[str, str] = {}  # id -> metadata JSON
        # While some conversations have their own TTL, the queues' heads are compared at
        # capacity; activity is stamped so that equal clock readings still order them.
        self._seq: dict[str, int] = {}
        self._ticks = count()
        self.configure(Policy(ttl=3600.0))

    def configure(self, policy: Policy) -> None:
        self._ttl = policy.ttl
        self._max_age = policy.max_age
        self._warn = policy.warning_before
        self._capacity = policy.max_conversations
        self._plain = policy.max_age is None and policy.warning_before is None
        self._default = Queue(policy.ttl)
        self._queues: dict[float, Queue] = {policy.ttl: self._default}

    def _ttl_for(self, cid: str) -> float:
        return self._ttl_of.get(cid, self._ttl) if self._ttl_of else self._ttl

    def _deadline(self, e: Entry, ttl: float) -> float:
        deadline = e.last + ttl
        if self._max_age is not None:
            capped = e.created + self._max_age
            if capped < deadline:
                return capped
        return deadline

    def _reason(self, e: Entry, ttl: float) -> ExpiryReason:
        if self._max_age is not None and e.created + self._max_age < e.last + ttl:
            return _MAX_AGE
        return _EXPIRED

    def _queue(self, ttl: float) -> Queue:
        q = self._queues.get(ttl)
        if q is None:
            q = self._queues[ttl] = Queue(ttl)
        return q

    def _state(
        self, e: Entry, ttl: float, offset: float, active: bool = True
    ) -> ConversationState:
        cid = e.cid
        warned = bool(self._warned) and cid in self._warned
        meta = self._meta.get(cid) if self._meta else None
        return new_state(
            cid, e.created, e.last, self._deadline(e, ttl), active, warned, offset, meta
        )

    def _remove(self, e: Entry, reason: ExpiryReason, offset: float, out: Departures) -> None:
        cid = e.cid
        ttl = self._ttl_for(cid)
        out.states.append(self._state(e, ttl, offset, active=False))
        out.reasons.append(reason)
        if out.now > e.last + ttl:  # counted as past due by its queue's tally, maybe
            self._queue(ttl).dropped(e, out.now)
        unlink(e)
        del self._entries[cid]
        if self._ttl_of:
            self._ttl_of.pop(cid, None)
            self._seq.pop(cid, None)
            if not self._ttl_of:
                self._seq.clear()
        if self._warned:
            self._warned.discard(cid)
        if self._meta:
            self._meta.pop(cid, None)
        if self._held:
            token = self._held.pop(cid, None)
            if token is not None:
                out.tokens[cid] = token

    def _live(self, cid: str, now: float) -> tuple[Entry, float]:
        e = self._entries.get(cid)
        if e is None:
            raise ConversationNotFoundError(cid)
        ttl = self._ttl_for(cid)
        if now > self._deadline(e, ttl):
            raise ConversationExpiredError(cid)
        return e, ttl

    def _activity(self, e: Entry, ttl: float, now: float) -> None:
        if now > e.last:
            e.last = now
        unlink(e)
        append((self._default if ttl == self._ttl else self._queue(ttl)).fresh, e)
        if self._ttl_of:
            self._seq[e.cid] = next(self._ticks)
        # A warning stands until activity moves the deadline out of the warning window (with
        # max_age it may not); a still-warned entry is moved to its warned list by the next sweep.
        if self._warned and e.cid in self._warned:
            assert self._warn is not None
            if self._deadline(e, ttl) - self._warn > now:
                self._warned.discard(e.cid)

    def _victim(self, now: float) -> tuple[Entry, ExpiryReason]:
        """Whom to remove at capacity: one already past due if any, else the least recently
        active. Past-due ones are at the heads of the queues or, for max_age, first created."""
        oldest: Entry | None = None
        oldest_key = (math.inf, 0)
        seq = self._seq
        for q in self._queues.values():
            for ring in (q.warned, q.fresh):
                head = ring.next
                if head is ring:
                    continue
                if now > self._deadline(head, q.ttl):
                    return head, self._reason(head, q.ttl)
                key = (head.last, seq.get(head.cid, -1))  # unstamped: active before any stamp
                if key < oldest_key:
                    oldest, oldest_key = head, key
        if self._max_age is not None:
            first = next(iter(self._entries.values()))
            if now > first.created + self._max_age:
                return first, _MAX_AGE
        assert oldest is not None
        return oldest, ExpiryReason.EVICTED

    def _start_or_touch(
        self,
        cid: str,
        now: float,
        offset: float,
        ttl: float | None,
        extend: bool,
        out: Departures,
        meta: str | None = None,
    ) -> tuple[ConversationState, bool]:
        e = self._entries.get(cid)
        if e is not None:
            old_ttl = self._ttl_for(cid)
            if now <= self._deadline(e, old_ttl):
                if ttl is not None and ttl != old_ttl:
                    self._set_ttl(cid, ttl)
                    old_ttl = ttl
                if meta is not None:
                    self._set_meta(cid, meta)
                if extend:
                    self._activity(e, old_ttl, now)
                return self._state(e, old_ttl, offset), False
            self._remove(e, self._reason(e, old_ttl), offset, out)
        if self._capacity is not None:
            while len(self._entries) >= self._capacity:
                victim, reason = self._victim(now)
                self._remove(victim, reason, offset, out)
        e = Entry()
        e.cid = cid
        e.created = e.last = now
        effective = self._ttl if ttl is None else ttl
        if effective != self._ttl:
            self._ttl_of[cid] = effective
        if self._ttl_of:
            self._seq[cid] = next(self._ticks)
        append((self._default if effective == self._ttl else self._queue(effective)).fresh, e)
        self._entries[cid] = e
        if meta is not None:
            self._set_meta(cid, meta)
        return self._state(e, effective, offset), True

    def _set_meta(self, cid: str, meta: str) -> None:
        if meta == "{}":
            self._meta.pop(cid, None)
        else:
            self._meta[cid] = meta

    def _set_ttl(self, cid: str, ttl: float) -> None:
        if ttl != self._ttl:
            self._ttl_of[cid] = ttl
        elif self._ttl_of.pop(cid, None) is not None and not self._ttl_of:
            self._seq.clear()

    def _collect_plain(self, now: float, offset: float, limit: int) -> Departures:
        # One TTL, no max_age, no warnings: the expired entries are a prefix of the ring. This
        # is most of a sweep's cost per conversation, so it is written out.
        ring = self._default.fresh
        ttl = self._ttl
        entries = self._entries
        states: list[ConversationState] = []
        append = states.append
        e = ring.next
        n = 0
        while n < limit:
            last = e.last  # the sentinel's is +inf: the walk stops there by itself
            if now <= last + ttl:
                break
            cid = e.cid
            fields = (cid, e.created, last, last + ttl, False, False, offset, None)
            append(_tuple_new(ConversationState, fields))
            del entries[cid]
            nxt = e.next
            e.next = ring  # no reference cycles among the removed: refcounting frees them
            e = nxt
            n += 1
        ring.next = e
        e.prev = ring
        self._default.fresh_tally.dropped_head(ring, n)
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
        for q in self._queues.values():
            ring = q.fresh
            e = ring.next
            while e is not ring and len(out) < limit:
                if e.last + q.ttl - self._warn > now:
                    break
                nxt = e.next
                unlink(e)
                append(q.warned, e)
                if e.cid not in self._warned:
                    self._warned.add(e.cid)
                    out.append(self._state(e, q.ttl, offset))
                e = nxt
        if self._max_age is not None:
            for e in self._entries.values():
                if len(out) >= limit or e.created + self._max_age - self._warn > now:
                    break
                if e.cid not in self._warned:
                    self._warned.add(e.cid)
                    out.append(self._state(e, self._ttl_for(e.cid), offset))

    def _get(self, cid: str, now: float, offset: float) -> ConversationState | None:
        e = self._entries.get(cid)
        if e is None:
            return None
        ttl = self._ttl_for(cid)
        if now > self._deadline(e, ttl):
            return None
        return self._state(e, ttl, offset)

    def _is_live(self, cid: str, now: float) -> bool:
        e = self._entries.get(cid)
        return e is not None and now <= self._deadline(e, self._ttl_for(cid))

    def _count(self, now: float) -> int:
        past = 0
        for q in self._queues.values():  # TTL expiry, from the tallies: amortized O(1)
            past += q.past(now)
        if self._max_age is not None:  # (walks those capped by max_age: see the README)
            for e in self._entries.values():
                if now <= e.created + self._max_age:
                    break
                if now <= e.last + self._ttl_for(e.cid):  # not counted by its queue
                    past += 1
        return len(self._entries) - past

    def _collect(
        self, now: float, offset: float, limit: int
    ) -> tuple[Departures, list[ConversationState], bool]:
        if self._plain and len(self._queues) == 1:
            removed = self._collect_plain(now, offset, limit)
            return removed, [], len(removed.states) >= limit
        removed = Departures([], [], {}, now)
        warned: list[ConversationState] = []
        for q in list(self._queues.values()):
            for ring in (q.warned, q.fresh):
                e = ring.next
                while e is not ring and len(removed.states) < limit:
                    if now <= self._deadline(e, q.ttl):
                        break
                    nxt = e.next
                    self._remove(e, self._reason(e, q.ttl), offset, removed)
                    e = nxt
            if q is not self._default and q.fresh.next is q.fresh and q.warned.next is q.warned:
                del self._queues[q.ttl]  # a TTL nobody uses any more
        if self._max_age is not None and len(removed.states) < limit:
            room = limit - len(removed.states)
            due: list[Entry] = []
            for e in self._entries.values():
                if now <= e.created + self._max_age or len(due) >= room:
                    break
                due.append(e)
            for e in due:
                self._remove(e, _MAX_AGE, offset, removed)
        if self._warn is not None:
            self._collect_warnings(now, offset, limit - len(removed.states), warned)
        return removed, warned, len(removed.states) + len(warned) >= limit

    def _drain(self, now: float, offset: float, limit: int) -> Departures:
        removed = Departures([], [], {}, now)
        for e in list(islice(self._entries.values(), limit)):
            ttl = self._ttl_for(e.cid)
            if now > self._deadline(e, ttl):
                self._remove(e, self._reason(e, ttl), offset, removed)
            else:
                self._remove(e, ExpiryReason.SHUTDOWN, offset, removed)
        return removed

    def _next_warning_at(self) -> float | None:
        assert self._warn is not None
        due: float | None = None
        for q in self._queues.values():
            head = q.fresh.next
            if head is not q.fresh:
                at = head.last + q.ttl - self._warn
                due = at if due is None else min(due, at)
        if self._max_age is not None:
            for e in self._entries.values():
                if e.cid not in self._warned:
                    at = e.created + self._max_age - self._warn
                    due = at if due is None else min(due, at)
                    break
        return due

    def _end(self, cid: str, now: float, offset: float, out: Departures) -> None:
        e = self._entries.get(cid)
        if e is not None:
            ttl = self._ttl_for(cid)
            reason = self._reason(e, ttl) if now > self._deadline(e, ttl) else ExpiryReason.ENDED
            self._remove(e, reason, offset, out)

    def _hold(self, cid: str, now: float) -> int:
        self._live(cid, now)
        token = self._held.get(cid)
        if token is None:
            token = self._held[cid] = next(_incarnations)
        return token

    def _next_warning_in(self, now: float) -> float | None:
        if self._warn is None:
            return None
        due = self._next_warning_at()
        return None if due is None else max(0.0, due - now)
