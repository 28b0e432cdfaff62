"""The in-memory store's bookkeeping, without locking: ids in per-TTL chains of untracked dicts.

Every conversation is an entry of the id -> last activity dict and of one bucket of a chain
(``_buckets.Chain``: small dicts id -> created time, in order of last activity): only str and
float, so the cyclic GC never visits a conversation (a layout with one Python object each paused
every full collection ~0.1-1 us per conversation). Each TTL has a queue of two chains: ``fresh``
(not warned) and ``warned`` (already warned, so a sweep never walks them again). Activity
updates the last-activity dict in place (no dict resize on the hot path, and its insertion order
stays creation order, which ``max_age`` deadlines follow) and moves the id to the tail of its
chain; a sweep takes from the heads, costing what expires, not what lives.

Rarely used fields (custom TTLs, warnings, metadata, the incarnation of a conversation that has
cleanups) live in side maps keyed by id. Every method here expects the caller (``MemoryStore``)
to hold the lock, and to pass store time that never runs backwards (the chains' order and their
past-due counts rely on it).
"""

from __future__ import annotations

import math
from itertools import count

from ._buckets import Chain
from ._errors import ConversationExpiredError, ConversationNotFoundError
from ._state import ConversationState, ExpiryReason
from ._store import Departures, Policy, new_state

__all__ = ["Book", "Queue"]

_EXPIRED = ExpiryReason.EXPIRED
_MAX_AGE = ExpiryReason.MAX_AGE
# Incarnations of held conversations, unique across every store of the process.
_incarnations = count(1)


class Queue:
    """The conversations of one TTL: not yet warned, and warned (in order of deadline)."""

    __slots__ = ("fresh", "ttl", "warned")

    def __init__(self, ttl: float, last: dict[str, float]) -> None:
        self.ttl = ttl
        self.fresh = Chain(last, ttl)
        self.warned = Chain(last, ttl)

    def past(self, now: float) -> int:
        return self.fresh.advance(self.ttl, now) + self.warned.advance(self.ttl, now)


class Book:
    """Conversations, their chains and side maps; not thread-safe on its own."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}  # id -> last activity, in order of creation
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
        self._default = Queue(policy.ttl, self._last)
        self._fresh = self._default.fresh
        self._queues: dict[float, Queue] = {policy.ttl: self._default}
        self._near: tuple[str, Chain, dict[str, float]] = ("", self._fresh, {})

    def _ttl_for(self, cid: str) -> float:
        return self._ttl_of.get(cid, self._ttl) if self._ttl_of else self._ttl

    def _deadline(self, created: float, last: float, ttl: float) -> float:
        deadline = last + ttl
        if self._max_age is not None:
            capped = created + self._max_age
            if capped < deadline:
                return capped
        return deadline

    def _reason(self, created: float, last: float, ttl: float) -> ExpiryReason:
        if self._max_age is not None and created + self._max_age < last + ttl:
            return _MAX_AGE
        return _EXPIRED

    def _queue(self, ttl: float) -> Queue:
        q = self._queues.get(ttl)
        if q is None:
            q = self._queues[ttl] = Queue(ttl, self._last)
        return q

    def _where(self, cid: str, last: float, ttl: float) -> tuple[Chain, dict[str, float]]:
        """The chain and bucket of a known ``cid``."""
        near = self._near  # the last one found: a call that checks, then moves, looks once
        if near[0] is cid and cid in near[2]:
            return near[1], near[2]
        q = self._queues[ttl]
        chain = q.fresh
        b = None
        if self._warned and cid in self._warned:  # warned ones may be on either chain
            b = q.warned.find(cid, last)
            if b is not None:
                chain = q.warned
        if b is None:
            b = chain.find(cid, last)
            assert b is not None, cid
        self._near = (cid, chain, b)
        return chain, b

    def _created(self, cid: str, last: float, ttl: float) -> float:
        return self._where(cid, last, ttl)[1][cid]

    def _state(
        self, cid: str, created: float, last: float, ttl: float, offset: float, active: bool = True
    ) -> ConversationState:
        warned = bool(self._warned) and cid in self._warned
        meta = self._meta.get(cid) if self._meta else None
        deadline = self._deadline(created, last, ttl)
        return new_state(cid, created, last, deadline, active, warned, offset, meta)

    def _remove(self, cid: str, reason: ExpiryReason, offset: float, out: Departures) -> None:
        ttl = self._ttl_for(cid)
        last = self._last[cid]
        chain, b = self._where(cid, last, ttl)
        created = chain.take(b, cid, last)
        out.states.append(self._state(cid, created, last, ttl, offset, active=False))
        out.reasons.append(reason)
        del self._last[cid]
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

    def _live(self, cid: str, now: float) -> tuple[float, float, float]:
        """(created, last, ttl) of a live ``cid``; raises if unknown or past due."""
        last = self._last.get(cid)
        if last is None:
            raise ConversationNotFoundError(cid)
        ttl = self._ttl_for(cid)
        created = self._created(cid, last, ttl)
        if now > self._deadline(created, last, ttl):
            raise ConversationExpiredError(cid)
        return created, last, ttl

    def _activity(self, cid: str, last: float, ttl: float, new_ttl: float, now: float) -> float:
        """Move ``cid`` (in the queue of ``ttl``) to the tail of the queue of ``new_ttl``."""
        chain, b = self._where(cid, last, ttl)
        created = b[cid]
        at = now if now > last else last
        to = self._fresh if new_ttl == self._ttl else self._queue(new_ttl).fresh
        if to is chain:
            last = chain.move(b, cid, at)
        else:
            chain.take(b, cid, last)
            last = to.put(cid, created, at)
        self._last[cid] = last
        if self._ttl_of:
            self._seq[cid] = next(self._ticks)
        # A warning stands until activity moves the deadline out of the warning window (with
        # max_age it may not); a still-warned id is moved to its warned chain by the next sweep.
        if self._warned and cid in self._warned:
            assert self._warn is not None
            if self._deadline(created, last, new_ttl) - self._warn > now:
                self._warned.discard(cid)
        return last

    def _victim(self, now: float) -> tuple[str, ExpiryReason]:
        """Whom to remove at capacity: one already past due if any, else the least recently
        active. Past-due ones are at the heads of the queues or, for max_age, first created."""
        oldest: str | None = None
        oldest_key = (math.inf, 0)
        seq = self._seq
        for q in self._queues.values():
            for chain in (q.warned, q.fresh):
                head = chain.first()
                if head is None:
                    continue
                last = self._last[head]
                created = chain.head_bucket()[head]
                if now > self._deadline(created, last, q.ttl):
                    return head, self._reason(created, last, q.ttl)
                key = (last, seq.get(head, -1))  # unstamped: active before any stamp
                if key < oldest_key:
                    oldest, oldest_key = head, key
        if self._max_age is not None:
            first = next(iter(self._last))
            if now > self._created(first, self._last[first], self._ttl_for(first)) + self._max_age:
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
        last = self._last.get(cid)
        if last is not None:
            old_ttl = self._ttl_for(cid)
            created = self._created(cid, last, old_ttl)
            if now <= self._deadline(created, last, old_ttl):
                new_ttl = old_ttl
                if ttl is not None and ttl != old_ttl:
                    self._set_ttl(cid, ttl)
                    new_ttl = ttl
                if meta is not None:
                    self._set_meta(cid, meta)
                if extend or new_ttl != old_ttl:  # (a new TTL always comes with activity)
                    last = self._activity(cid, last, old_ttl, new_ttl, now)
                return self._state(cid, created, last, new_ttl, offset), False
            self._remove(cid, self._reason(created, last, old_ttl), offset, out)
        if self._capacity is not None:
            while len(self._last) >= self._capacity:
                victim, reason = self._victim(now)
                self._remove(victim, reason, offset, out)
        effective = self._ttl if ttl is None else ttl
        if effective != self._ttl:
            self._ttl_of[cid] = effective
        if self._ttl_of:
            self._seq[cid] = next(self._ticks)
        to = self._fresh if effective == self._ttl else self._queue(effective).fresh
        self._last[cid] = to.put(cid, now, now)
        if meta is not None:
            self._set_meta(cid, meta)
        return self._state(cid, now, now, effective, offset), True

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

    def _get(self, cid: str, now: float, offset: float) -> ConversationState | None:
        last = self._last.get(cid)
        if last is None:
            return None
        ttl = self._ttl_for(cid)
        created = self._created(cid, last, ttl)
        if now > self._deadline(created, last, ttl):
            return None
        return self._state(cid, created, last, ttl, offset)

    def _is_live(self, cid: str, now: float) -> bool:
        last = self._last.get(cid)
        if last is None:
            return False
        ttl = self._ttl_for(cid)
        if self._max_age is None:
            return now <= last + ttl
        return now <= self._deadline(self._created(cid, last, ttl), last, ttl)

    def _count(self, now: float) -> int:
        past = 0
        for q in self._queues.values():  # TTL expiry, from the chains' counts: amortized O(1)
            past += q.past(now)
        if self._max_age is not None:  # (walks those capped by max_age: see the README)
            for cid, last in self._last.items():
                ttl = self._ttl_for(cid)
                if now <= self._created(cid, last, ttl) + self._max_age:
                    break
                if now <= last + ttl:  # not counted by its queue
                    past += 1
        return len(self._last) - past

    def _end(self, cid: str, now: float, offset: float, out: Departures) -> None:
        last = self._last.get(cid)
        if last is not None:
            ttl = self._ttl_for(cid)
            created = self._created(cid, last, ttl)
            reason = (
                self._reason(created, last, ttl)
                if now > self._deadline(created, last, ttl)
                else ExpiryReason.ENDED
            )
            self._remove(cid, reason, offset, out)

    def _hold(self, cid: str, now: float) -> int:
        self._live(cid, now)
        token = self._held.get(cid)
        if token is None:
            token = self._held[cid] = next(_incarnations)
        return token
