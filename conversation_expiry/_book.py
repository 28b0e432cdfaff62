"""The in-memory store's bookkeeping, without locking: ids in per-TTL chains of untracked dicts.

Every conversation is an entry of the id -> complex(last activity, created) dict (its record:
both times in one object, so the request path reads and writes one dict) and of one bucket of
a chain (``_buckets.Chain``: small dicts id -> the record the id had when queued, in queue
order): only str, float and
complex, so the cyclic GC never visits a conversation (a layout with one Python object each
paused every full collection ~0.1-1 us per conversation). Each TTL has a queue of two chains:
``fresh`` (not warned) and ``warned`` (already warned, so a sweep never walks them again).

Activity rewrites the record and leaves the id where it is queued (a walk queues it again at
its last activity, see ``_buckets``); ids last active at one clock reading leave in the order
of their activity (by place, or by the stamps of ``_stamp``). A move to another chain (a new
TTL, a warning that no longer stands) is queued at once and recorded in ``_moved``, which makes
the copy left behind stale. The record dict keeps creation order (assigning to a key keeps its
place), which ``max_age`` deadlines follow; only a sweep without ``max_age`` (``pop_due``) may
put a record back at the end.

Rarely used fields (custom TTLs, warnings, metadata, the incarnation of a conversation that has
cleanups) live in side maps keyed by id. Every method here expects the caller (``MemoryStore``)
to hold the lock, and to pass store time that never runs backwards (the chains' order and their
past-due counts rely on it).
"""

from __future__ import annotations

import math
from itertools import count

from ._buckets import NO_LIMIT, Chain
from ._clock import SLACK
from ._errors import ConversationExpiredError, ConversationNotFoundError
from ._state import ConversationState, ExpiryReason, snapshot
from ._store import Departures, Policy
from ._walks import advance

__all__ = ["Book", "Queue"]

_EXPIRED = ExpiryReason.EXPIRED
_MAX_AGE = ExpiryReason.MAX_AGE
_INF = math.inf
# Incarnations of held conversations, unique across every store of the process.
_incarnations = count(1)


class Queue:
    """The conversations of one TTL: not yet warned, and warned (in order of deadline)."""

    __slots__ = ("fresh", "ttl", "warned")

    def __init__(
        self, ttl: float, last: dict[str, complex], moved: dict[str, float], seq: dict[str, int]
    ) -> None:
        self.ttl = ttl
        self.fresh = Chain(last, moved, seq, ttl)
        self.warned = Chain(last, moved, seq, ttl)

    def past(self, now: float, budget: int) -> tuple[int, bool]:
        """Those past due at ``now``, and whether the count is done (see ``_walks.advance``)."""
        done = advance(self.fresh, self.ttl, now, budget)
        done = advance(self.warned, self.ttl, now, budget) and done
        return self.fresh.past + self.warned.past, done


class Book:
    """Conversations, their chains and side maps; not thread-safe on its own."""

    def __init__(self) -> None:
        self._last: dict[str, complex] = {}  # id -> complex(last, created): see the docstring
        self._moved: dict[str, float] = {}  # id -> when it was last queued anew (a marker)
        self._ttl_of: dict[str, float] = {}
        self._warned: set[str] = set()
        self._on_warned: set[str] = set()  # those queued on their warned chain
        self._held: dict[str, int] = {}  # id -> incarnation, for those with cleanups
        self._meta: dict[str, str] = {}  # id -> metadata JSON
        # Ids last active at one clock reading keep the order of their activity: by their
        # place where they were queued at that reading, else by stamps (see _stamp).
        self._seq: dict[str, int] = {}
        self._ticks = count()
        self._act_t = -_INF  # the time of the latest activity
        self._act_id: str | None = None  # the first at that time, if touched lazily and alone
        self._stamping_at = -_INF  # the reading at which every activity is stamped
        self.configure(Policy(ttl=3600.0))

    def configure(self, policy: Policy) -> None:
        self._ttl = policy.ttl
        self._max_age = policy.max_age
        self._warn = policy.warning_before
        self._capacity = policy.max_conversations
        # Order among ids last active at one reading is only ever asked by an eviction.
        self._ties = policy.max_conversations is not None
        self._plain = policy.max_age is None and policy.warning_before is None
        self._default = Queue(policy.ttl, self._last, self._moved, self._seq)
        self._fresh = self._default.fresh
        self._queues: dict[float, Queue] = {policy.ttl: self._default}

    def _ttl_for(self, cid: str) -> float:
        return self._ttl_of.get(cid, self._ttl) if self._ttl_of else self._ttl

    def _deadline(self, created: float, last: float, ttl: float) -> float:
        deadline = last + ttl
        if self._max_age is not None:
            capped = created + self._max_age
            if capped < deadline:
                return capped
        return deadline

    def _due(self, created: float, last: float, ttl: float) -> float:
        """The latest reading at which the conversation is still live (``_readings.SLACK``)."""
        return self._deadline(created, last, ttl) + SLACK

    def _reason(self, created: float, last: float, ttl: float) -> ExpiryReason:
        if self._max_age is not None and created + self._max_age < last + ttl:
            return _MAX_AGE
        return _EXPIRED

    def _queue(self, ttl: float) -> Queue:
        q = self._queues.get(ttl)
        if q is None:
            q = self._queues[ttl] = Queue(ttl, self._last, self._moved, self._seq)
        return q

    def _home(self, cid: str, ttl: float) -> Chain:
        """The chain ``cid`` (live, of TTL ``ttl``) is queued on."""
        q = self._queues[ttl]
        return q.warned if self._on_warned and cid in self._on_warned else q.fresh

    def _state(
        self, cid: str, created: float, last: float, ttl: float, offset: float, active: bool = True
    ) -> ConversationState:
        warned = bool(self._warned) and cid in self._warned
        meta = self._meta.get(cid) if self._meta else None
        deadline = self._deadline(created, last, ttl)
        # The TTL itself when it makes the deadline: the span the request path's snapshots
        # carry (``_fused_update``), where ``deadline - last`` may be a rounding off it.
        span = ttl if deadline == last + ttl else deadline - last
        return snapshot((cid, complex(last, created), (span, active, warned, offset, meta)))

    def _stamp(self, cid: str, now: float, lazy: bool) -> None:
        """Note an activity of ``cid`` at ``now`` (``lazy``: left where it is queued).

        Only with a capacity: nothing else asks which of two ids last active at one reading
        was active first. Ids queued at one reading are ordered by their stamp (``_seq``),
        then by their place: -2 the first activity at the reading if it was lazy and others
        followed, -1 (none) ids queued in the order of their activity, then stamps in order.
        A lazy activity at a reading an earlier one had cannot keep its order by place, so it
        is stamped, and so is every later activity at that reading. A stamp left from an
        earlier reading orders nothing (no other id shares that reading with it), so it is not
        removed on the request path, except where it would stand for a place.
        """
        if not self._ties:
            return
        if now > self._act_t:
            self._act_t = now
            self._act_id = cid if lazy else None
            return
        seq = self._seq
        first = self._act_id
        if first is not None:
            self._act_id = None
            if first in self._last:
                seq[first] = -2
        if lazy or self._stamping_at == now or len(self._queues) > 1 or seq.get(cid, -1) != -1:
            self._stamping_at = now  # (with several TTLs, places in two queues do not compare)
            seq[cid] = next(self._ticks)

    def _requeue(self, cid: str, frm: Chain, to: Chain, now: float) -> None:
        """Queue ``cid`` (queued on ``frm``) on ``to`` at ``now``, an activity; any other entry
        goes stale."""
        if self._seq:
            self._seq.pop(cid, None)  # (queued in order now)
        self._stamp(cid, now, False)
        if frm is not to:
            frm.drop_recent(cid)
        to.put(cid, self._last[cid], latest=True)
        self._moved[cid] = now

    def _remove(
        self,
        cid: str,
        reason: ExpiryReason,
        offset: float,
        out: Departures,
        at_head: Chain | None = None,
    ) -> None:
        """Remove ``cid``; ``at_head``: the chain whose ``first()`` it is (its entry goes too)."""
        ttl = self._ttl_for(cid)
        v = self._last[cid]
        if at_head is not None:
            at_head.pop_first(cid)
        else:
            self._home(cid, ttl).forget(cid)  # its entry stays, stale, for a walk to drop
        out.states.append(self._state(cid, v.imag, v.real, ttl, offset, active=False))
        out.reasons.append(reason)
        del self._last[cid]
        if self._moved:
            self._moved.pop(cid, None)
        if self._seq:
            self._seq.pop(cid, None)
        if self._ttl_of:
            self._ttl_of.pop(cid, None)
        if self._warned:
            self._warned.discard(cid)
            self._on_warned.discard(cid)
        if self._meta:
            self._meta.pop(cid, None)
        if self._held:
            token = self._held.pop(cid, None)
            if token is not None:
                out.tokens[cid] = token
        if not self._last:  # nothing left: drop every stale entry at once
            self._moved.clear()
            for q in self._queues.values():
                q.fresh.reset()
                q.warned.reset()

    def _live(self, cid: str, now: float) -> tuple[float, float, float]:
        """(created, last, ttl) of a live ``cid``; raises if unknown or past due."""
        v = self._last.get(cid)
        if v is None:
            raise ConversationNotFoundError(cid)
        ttl = self._ttl_for(cid)
        created, last = v.imag, v.real
        if now > self._due(created, last, ttl):
            raise ConversationExpiredError(cid)
        return created, last, ttl

    def _activity(
        self, cid: str, created: float, ttl: float, new_ttl: float, now: float
    ) -> float:
        """Record activity of ``cid`` (live, TTL ``ttl``) at ``now``, under ``new_ttl``."""
        home = self._home(cid, ttl)
        self._last[cid] = complex(now, created)
        # A warning stands until activity moves the deadline out of the warning window (with
        # max_age it may not); then the id goes back to its fresh chain, to be warned again.
        unwarn = False
        if self._warned and cid in self._warned:
            assert self._warn is not None
            if self._deadline(created, now, new_ttl) - self._warn > now + SLACK:
                self._warned.discard(cid)
                unwarn = cid in self._on_warned
                self._on_warned.discard(cid)
        if new_ttl != ttl or unwarn:
            # To the fresh chain of its TTL; one still warned goes on to its warned chain at
            # the next sweep (without a second warning).
            if self._on_warned:
                self._on_warned.discard(cid)
            self._requeue(cid, home, self._queue(new_ttl).fresh, now)
        else:
            cur = home.cur
            queued = cur.get(cid)
            queued_now = self._ties and queued is not None and queued.real == now
            self._stamp(cid, now, not queued_now)
            if queued_now:  # queued at this very reading: to the end of its order
                del cur[cid]
                cur[cid] = self._last[cid]
            home.tick(now)  # else queued again when a walk reaches it
        return now

    def _victim(self, now: float) -> tuple[str, ExpiryReason, Chain | None]:
        """Whom to remove at capacity: one already past due if any, else the least recently
        active. Past-due ones are at the heads of the queues or, for max_age, first created."""
        oldest: str | None = None
        oldest_chain: Chain | None = None
        oldest_key = (math.inf, 0)
        seq = self._seq
        for q in self._queues.values():
            for chain in (q.warned, q.fresh):
                head = chain.first()
                if head is None:
                    continue
                v = self._last[head]
                created, last = v.imag, v.real
                if now > self._due(created, last, q.ttl):
                    return head, self._reason(created, last, q.ttl), chain
                key = (last, seq.get(head, -1))  # unstamped: active before any stamp
                if key < oldest_key:
                    oldest, oldest_chain, oldest_key = head, chain, key
        if self._max_age is not None:
            first = next(iter(self._last))
            if now > self._last[first].imag + self._max_age + SLACK:
                return first, _MAX_AGE, None
        assert oldest is not None
        return oldest, ExpiryReason.EVICTED, oldest_chain

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
        v = self._last.get(cid)
        if v is not None:
            created, last = v.imag, v.real
            old_ttl = self._ttl_for(cid)
            if now <= self._due(created, last, old_ttl):
                new_ttl = old_ttl
                if ttl is not None and ttl != old_ttl:
                    self._set_ttl(cid, ttl)
                    new_ttl = ttl
                if meta is not None:
                    self._set_meta(cid, meta)
                if extend or new_ttl != old_ttl:  # (a new TTL always comes with activity)
                    last = self._activity(cid, created, old_ttl, new_ttl, now)
                return self._state(cid, created, last, new_ttl, offset), False
            self._remove(cid, self._reason(created, last, old_ttl), offset, out)
        if self._capacity is not None:
            while len(self._last) >= self._capacity:
                victim, reason, chain = self._victim(now)
                self._remove(victim, reason, offset, out, at_head=chain)
        effective = self._ttl if ttl is None else ttl
        if effective != self._ttl:
            self._ttl_of[cid] = effective
        self._stamp(cid, now, False)
        to = self._fresh if effective == self._ttl else self._queue(effective).fresh
        rec = self._last[cid] = complex(now, now)
        to.put(cid, rec, latest=True)
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
        else:
            self._ttl_of.pop(cid, None)

    def _get(self, cid: str, now: float, offset: float) -> ConversationState | None:
        v = self._last.get(cid)
        if v is None:
            return None
        ttl = self._ttl_for(cid)
        created, last = v.imag, v.real
        if now > self._due(created, last, ttl):
            return None
        return self._state(cid, created, last, ttl, offset)

    def _is_live(self, cid: str, now: float) -> bool:
        v = self._last.get(cid)
        if v is None:
            return False
        return now <= self._due(v.imag, v.real, self._ttl_for(cid))

    def _count(self, now: float, budget: int = NO_LIMIT) -> tuple[int, bool]:
        """Live conversations at ``now``, and whether that is the count (else not done: each
        queue reviewed at most about ``budget`` entries; call again with the same ``now``)."""
        past = 0
        done = True
        for q in self._queues.values():  # TTL expiry, from the chains' counts: amortized O(1)
            n, finished = q.past(now - SLACK, budget)
            past += n
            done = done and finished
        if done and self._max_age is not None:  # (walks those capped by max_age: see README)
            for cid, v in self._last.items():
                if now <= v.imag + self._max_age + SLACK:
                    break
                if now <= v.real + self._ttl_for(cid) + SLACK:  # not counted by its queue
                    past += 1
        return len(self._last) - past, done

    def _end(self, cid: str, now: float, offset: float, out: Departures) -> None:
        v = self._last.get(cid)
        if v is not None:
            ttl = self._ttl_for(cid)
            created, last = v.imag, v.real
            reason = (
                self._reason(created, last, ttl)
                if now > self._due(created, last, ttl)
                else ExpiryReason.ENDED
            )
            self._remove(cid, reason, offset, out)

    def _hold(self, cid: str, now: float) -> int:
        self._live(cid, now)
        token = self._held.get(cid)
        if token is None:
            token = self._held[cid] = next(_incarnations)
        return token
