"""An ordered queue of conversation ids kept in small dicts that the cyclic GC never visits.

A chain is a list of buckets, each a dict id -> created time (only str and float: CPython's
collector does not track such a dict), in order of last activity: every id of a bucket was last
active no later than any id of the next, and within a bucket insertion order is activity order
(activity pops and re-inserts an id, which moves it to the end). So the chain is one exact queue
whose head is the next to expire, with no Python object per conversation. A bucket takes at most
``CAP`` ids, so a dict resize under the store's lock stays short.

Finding an id's bucket. ``los[i]``, bucket ``i``'s lower bound, is a float object of its own
(made by the chain, never a clock reading): every id of bucket ``i`` was last active at or
after it, every id of an earlier bucket at or before it. An id last active strictly after
``los[i]`` and before ``los[i + 1]`` is in bucket ``i``: a bisection finds it. Ties (many ids at
one clock reading: a hand-moved clock, a bulk load) are told apart by identity: an id whose
last activity *equals* its bucket's bound holds that very float object as its last-activity
time (``put`` returns the object to store), and ``at`` maps ``id(bound)`` to the bucket. So a
lookup is one dict probe (a tie) or a bisection, however many buckets share one time.

The chain also counts the ids at its head known to be past a TTL deadline: those are exactly
the ids past due at ``mark_now`` (the buckets ``[head, mark)``; they never move again, activity
on them raises), so ``advance`` walks each past-due id once however often it is asked (len is
amortized O(1)), and removing an id tells whether it was counted from its time alone.

A dict never shrinks by itself, so buckets that activity left sparse are compacted in place:
each time a bucket opens, the next few buckets (round robin) whose table is much larger than
their ids need get a compact copy of it (``thin``): memory follows the live ids, not the past
activity, at no cost on the request path.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from itertools import islice, repeat
from operator import add
from sys import getsizeof

__all__ = ["CAP", "Chain", "sparse", "thin"]

CAP = 2048  # ids per bucket: a resize copies at most this many entries
TIDY = 8  # buckets looked at (for thinning) each time one opens
_INF = float("inf")


def sparse(b: dict[str, float]) -> bool:
    """Whether a bucket's table is much larger than its ids need (a compact one: ~40 B each)."""
    return getsizeof(b) > 100 * len(b) + 2048


def thin(b: dict[str, float]) -> None:
    """Give a bucket a table sized for the ids it holds, keeping its order and identity."""
    keep = b.copy()  # a copy of a sparse dict is sized for its entries
    b.clear()  # frees the old table
    if keep:
        b.update(keep)  # into an empty dict: takes the copy's compact table


class Chain:
    """Buckets in order of last activity; the caller holds the lock and passes time forward."""

    __slots__ = (
        "at", "bks", "cur", "cur_lo", "head", "last", "los", "mark", "mark_now", "past", "room",
        "size", "tidy", "ttl",
    )

    def __init__(self, last: dict[str, float], ttl: float) -> None:
        self.last = last  # the store's id -> last activity (shared by every chain)
        self.ttl = ttl
        self.bks: list[dict[str, float]] = []
        self.los: list[float] = []
        self.at: dict[int, tuple[float, dict[str, float]]] = {}  # id(bound) -> (bound, bucket)
        self._reset()

    def _reset(self) -> None:
        self.bks.clear()
        self.los.clear()
        self.at.clear()
        self.head = self.mark = self.past = self.size = self.tidy = 0
        self.room = 0  # puts the current bucket still takes (0: open one first)
        self.mark_now = -_INF  # ids past due at this time are counted in ``past``
        self.cur: dict[str, float] = {}
        self.cur_lo = _INF  # the fast path "still in the current bucket" never fires

    def open(self, now: float) -> dict[str, float]:
        """Start a new current bucket at ``now`` (``put`` does when ``room`` is 0)."""
        lo = now + 0.0  # a float object of the chain's own: no id holds it unless put here
        cur: dict[str, float] = {}
        bks = self.bks
        bks.append(cur)
        self.los.append(lo)
        self.at[id(lo)] = (lo, cur)
        self.cur = cur
        self.cur_lo = lo
        self.room = CAP
        j = self.tidy
        for _ in range(TIDY):  # thin a few of the older buckets, round robin
            if not self.head <= j < len(bks) - 1:
                j = self.head
                if j >= len(bks) - 1:
                    break
            b = bks[j]
            if sparse(b):
                thin(b)
            j += 1
        self.tidy = j
        return cur

    def put(self, cid: str, created: float, now: float) -> float:
        """Append ``cid`` (last active at ``now``, no earlier than any id here).

        Returns the float to keep as its last activity: ``now``, or the bucket's bound itself
        when ``now`` equals it (how ties are told apart).
        """
        if self.room <= 0:
            self.open(now)
        self.cur[cid] = created
        self.room -= 1
        self.size += 1
        lo = self.cur_lo
        return now if now > lo else lo

    def move(self, b: dict[str, float], cid: str, now: float) -> float:
        """Move ``cid`` (live, in bucket ``b``) to the tail, active at ``now``; as ``put``."""
        if b is self.cur:  # stays in its bucket: to its end, no room taken
            b[cid] = b.pop(cid)
        else:
            created = b.pop(cid)
            if self.room <= 0:
                self.open(now)
            self.cur[cid] = created
            self.room -= 1
        lo = self.cur_lo
        return now if now > lo else lo

    def find(self, cid: str, last: float) -> dict[str, float] | None:
        """The bucket holding ``cid`` (last active at ``last``, the object the store keeps)."""
        hit = self.at.get(id(last))
        if hit is not None and hit[0] is last:  # a bound itself: that bound's bucket
            b = hit[1]
        else:
            los = self.los
            head = self.head
            i = bisect_right(los, last, head) - 1
            if i < head:
                return None
            if not los[i] < last:  # equal to a bound, not that object: the bucket before
                i = bisect_left(los, last, head) - 1
                if i < head:
                    return self._search(cid)
            b = self.bks[i]
        return b if cid in b else self._search(cid)

    def _search(self, cid: str) -> dict[str, float] | None:
        """Every bucket, in case ``cid`` is not where its time says (never expected)."""
        for b in islice(self.bks, self.head, None):
            if cid in b:
                return b
        return None

    def take(self, b: dict[str, float], cid: str, last: float) -> float:
        """Remove ``cid`` (last active at ``last``) from its bucket ``b``; its created time."""
        created = b.pop(cid)
        self.size -= 1
        if self.mark_now > last + self.ttl:  # past due when last counted: it was counted
            self.past -= 1
        if not self.size:
            self._reset()
        return created

    def first(self) -> str | None:
        """The id at the head (the least recently active), or None."""
        bks = self.bks
        n = len(bks)
        i = self.head
        while i < n:
            b = bks[i]
            if b:
                self._trim(i)
                return next(iter(b))
            i += 1
        return None

    def head_bucket(self) -> dict[str, float]:
        """The bucket of ``first()``'s id (call it first)."""
        return self.bks[self.head]

    def _trim(self, i: int) -> None:
        """Buckets before ``i`` are empty: free them (the list is compacted now and then)."""
        if i > self.head:
            at, bks, los = self.at, self.bks, self.los
            for j in range(self.head, i):
                at.pop(id(los[j]), None)
                bks[j].clear()
            self.head = i
            if self.mark < i:
                self.mark = i
            if i >= 64 and 2 * i > len(bks):
                del bks[:i]
                del los[:i]
                self.head = 0
                self.mark -= i

    def dropped_head(self, n: int) -> None:
        """``n`` ids left from the head (a sweep): those counted past due go first."""
        self.size -= n
        self.past = self.past - n if n < self.past else 0
        if not self.size:
            self._reset()

    def pop_due(self, now: float, limit: int) -> tuple[list[str], list[float], list[float]]:
        """Remove up to ``limit`` past-due ids from the head, forgetting their last activity.

        Returns (ids, created, last). The loops over ids run in C (map, islice): this is most
        of a sweep's cost per conversation.
        """
        lastd = self.last
        get, forget = lastd.__getitem__, lastd.__delitem__
        ttl = self.ttl
        ids: list[str] = []
        created: list[float] = []
        lasts: list[float] = []
        bks = self.bks
        n = len(bks)
        i = self.head
        while limit > 0 and i < n:
            b = bks[i]
            if not b:
                i += 1
                continue
            if len(b) <= limit and now > get(next(reversed(b))) + ttl:  # the whole bucket
                some = list(b)
                their = list(map(lastd.pop, some))
                created += b.values()
                b.clear()
                k = len(some)
            else:
                some = list(islice(b, limit))
                if now > get(some[-1]) + ttl:  # all of them (the usual case): one pass
                    their = list(map(lastd.pop, some))
                    k = len(some)
                elif not now > get(some[0]) + ttl:  # none of them
                    break
                else:
                    their = list(map(get, some))
                    k = bisect_left(list(map(add, their, repeat(ttl))), now)  # first k: < now
                    del some[k:], their[k:]
                    deque(map(forget, some), 0)
                created += map(b.pop, some)
            ids += some
            lasts += their
            limit -= k
            if b:
                break
            i += 1
        if ids:
            self.dropped_head(len(ids))
            if self.size:
                self.first()
        return ids, created, lasts

    def advance(self, ttl: float, now: float) -> int:
        """How many ids at the head are past ``ttl``; each is walked once, ever."""
        bks = self.bks
        last = self.last
        n = len(bks)
        i = self.mark if self.mark > self.head else self.head
        past = self.past
        while i < n:
            b = bks[i]
            if not b:
                if i == n - 1:
                    break  # the current bucket: ids may still come
                i += 1
                continue
            if now > last[next(reversed(b))] + ttl:  # all of it: counted at once
                past += len(b)
                i += 1
                continue
            due = []
            for cid in b:  # part of it: split off the past-due prefix, walked once
                if now <= last[cid] + ttl:
                    break
                due.append(cid)
            if due:
                self._split(i, due)
                past += len(due)
                i += 1
            break
        self.mark = i
        if i >= len(bks):
            self.room = 0  # every bucket is counted: new ids go to a new one
        self.mark_now = now
        self.past = past
        return past

    def _split(self, i: int, due: list[str]) -> None:
        """Move ``due``, a prefix of bucket ``i``, into a bucket of its own just before it."""
        b = self.bks[i]
        front = {cid: b.pop(cid) for cid in due}
        old = self.los[i]
        lo = self.last[due[-1]] + 0.0  # the prefix's latest time; the rest are all later
        self.bks.insert(i, front)
        self.los.insert(i + 1, lo)
        self.at[id(old)] = (old, front)
        self.at[id(lo)] = (lo, b)
        if b is self.cur:
            self.cur_lo = lo
