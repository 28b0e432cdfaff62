"""A queue of conversation ids in small dicts that the cyclic GC never visits, kept lazily.

A chain is a list of buckets, each a dict id -> the record the id had when it was queued (only
str and complex: CPython's collector does not track such a dict). An id is queued at the time
of an activity, and later activity leaves it where it is: a touch rewrites only the store's
record (id -> complex(last activity, created)), so the request path writes one dict. The chain
is put right where it is read. A walk from the head (a sweep, a count, an eviction) reviews the
ids queued before a deadline; one whose record is no longer the one it was queued with was
active since, and is queued again at its last activity, once per walk past it however often
it was touched (the timer wheel's lazy re-scheduling).

Order. Bounds ``los`` never decrease; every id of bucket ``i`` was queued at or after
``los[i]`` and at or before ``los[i + 1]``, and within a bucket in queue order, except in
buckets of ``mixed`` (an id queued again lands behind later ones), which a walk sorts before it
reads them. Ids queued at one clock reading are ordered by the stamps of their activity
where they have them (``seq``, see ``Book._stamp``), else by place. So the head, once reviewed,
is the least recently active id. A bucket takes at most ``CAP`` activities (touches count, so no
bucket collects more than about ``CAP`` ids queued again).

Stale entries. Removal leaves an id's entry where it is unless it is in the current bucket or
was queued at the latest reading (``drop_recent``; nothing else is ever looked for). An entry
is stale when its id is gone, or was queued before its current incarnation was created, or
before ``moved[id]`` (when the store queued it anew elsewhere); walks drop stale entries.

Past-due counts. ``advance`` counts the ids at the head that are past the TTL at ``mark_now``:
the buckets ``[head, mark)`` hold only such ids (and stale entries), so each is walked once
however often the count is asked, and removing an id tells whether it was counted from its
time alone (``_counted``). A count walks a bounded number of entries per call (the store lets
other threads in between), and while one is under way ``part_now`` / ``part_lo`` say what it
has counted so far.

Entries leave a bucket only at the head (walks), from the current bucket and from the buckets
opened at the latest reading, so no bucket is left holding a large table for few ids: memory
follows the live ids.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from itertools import islice, repeat
from operator import add, attrgetter, is_

__all__ = ["CAP", "NO_LIMIT", "Chain"]

CAP = 256  # activities per bucket: a sweep's batch (SWEEP_BATCH) of whole buckets
REVIEWS = 4  # entries a sweep's batch may review, per id it may take
_PROBE = 16  # entries a review reads first, to tell a bucket due in part
_INF = float("inf")
_REAL = attrgetter("real")
NO_LIMIT = 1 << 62  # a budget that never runs out


class Chain:
    """Buckets in order of queue time; the caller holds the lock and passes time forward."""

    __slots__ = (
        "bks", "clean", "cur", "cur_t", "head", "last", "los", "mark", "mark_now", "mixed",
        "moved", "part_lo", "part_now", "past", "room", "seq", "size", "ttl", "walking",
    )

    def __init__(
        self, last: dict[str, complex], moved: dict[str, float], seq: dict[str, int], ttl: float
    ) -> None:
        self.last = last  # the store's id -> complex(last activity, created)
        self.moved = moved  # the store's id -> time it was last queued anew (rarely any)
        self.seq = seq  # the store's id -> stamp of an activity at a reading already seen
        self.ttl = ttl
        self.bks: list[dict[str, complex]] = []
        self.los: list[float] = []
        self.mixed: set[int] = set()  # id() of buckets not in queue order
        self.walking = -1  # the bucket a walk is reviewing, if one is
        self.clean = True  # the last batch taken was all past due (``review``), or none was
        self._reset()

    def _reset(self) -> None:
        self.bks.clear()
        self.los.clear()
        self.mixed.clear()
        self.head = self.mark = self.past = self.size = 0
        self.room = 0  # activities the current bucket still takes (0: open one first)
        self.mark_now = -_INF  # ids past due at this time are counted in ``past``
        self.part_now = -_INF  # a count under way at this time has counted those before:
        self.part_lo = _INF  # (last activity) ``part_lo``
        self.cur: dict[str, complex] = {}
        self.cur_t = -_INF  # the latest time queued in the current bucket

    def open(self, now: float) -> None:
        """Start a new current bucket at ``now`` (not earlier than ``cur_t``)."""
        cur: dict[str, complex] = {}
        self.bks.append(cur)
        self.los.append(now)
        self.cur = cur
        self.cur_t = now
        self.room = CAP

    def tick(self, now: float) -> None:
        """Count an activity at ``now`` (not earlier than any before) into the current bucket:
        an id touched then is queued again into it (or a later one), so it must not outgrow
        ``CAP`` by that."""
        self.room -= 1
        if self.room <= 0:
            self.open(now)

    def put(self, cid: str, rec: complex, latest: bool = False) -> None:
        """Queue ``cid`` with its record ``rec`` at its last activity: an activity
        (``latest``: the latest of all), or one before when queued again."""
        t = rec.real
        if t > self.cur_t or (
            t == self.cur_t and (latest or not self.seq or self._not_before_last(cid, t))
        ):
            if self.room <= 0:  # the usual case: at the tail
                self.open(t)
            cur = self.cur
            if cur.pop(cid, None) is None:  # (present: queued here already, now at the end)
                self.size += 1
            cur[cid] = rec
            self.room -= 1
            self.cur_t = t
            return
        j = self._bucket_for(cid, t)
        b = self.bks[j]
        if b.pop(cid, None) is None:
            self.size += 1
        if b:
            last_cid, last_rec = next(reversed(b.items()))
            if self._key(last_cid, last_rec.real) > self._key(cid, t):
                self.mixed.add(id(b))
        b[cid] = rec
        if b is self.cur:
            self.room -= 1

    def _key(self, cid: str, t: float) -> tuple[float, int]:
        """Queue order: time, then (ids queued at one reading) the stamp of their activity."""
        return t, self.seq.get(cid, -1)

    def _not_before_last(self, cid: str, t: float) -> bool:
        """Whether ``cid`` at ``t`` goes after every id queued: after the last id of the last
        bucket holding any (activity at one reading may leave empty buckets after it; an
        unsorted bucket cannot tell, and ``_bucket_for`` places the id instead)."""
        bks = self.bks
        j = len(bks) - 1
        while j >= self.head and not bks[j]:
            j -= 1
        if j < self.head:
            return True
        b = bks[j]
        if self.mixed and id(b) in self.mixed:
            return False
        last_cid, last_rec = next(reversed(b.items()))
        return self._key(cid, t) >= self._key(last_cid, last_rec.real)

    def _bucket_for(self, cid: str, t: float) -> int:
        """The bucket ``cid``, queued at ``t`` (not after the tail), belongs in."""
        los = self.los
        j = bisect_right(los, t, self.head) - 1
        if j < self.head:  # earlier than the head bucket: a bucket of its own before it
            self._prepend(t)
            return self.head
        if not self.seq:
            # Activity at one clock reading filled many buckets, and ids queued again at that
            # reading would all land in the last: they get one of their own before it (after
            # every id queued before ``t``), unless a walk is in that bucket.
            if los[j] == t and len(self.bks[j]) >= 2 * CAP and j > max(self.head, self.walking):
                self.bks.insert(j, {})
                los.insert(j, t)
                if self.mark > j:  # (never: counted buckets end before any id due later)
                    self.mark += 1
        elif los[j] == t:  # earlier buckets may end with ids queued at ``t``
            key = self._key(cid, t)  # (a bucket's first id is its least but where ids came
            # in earlier than the bucket's start: then it is mixed). Not below a bucket a count
            # has walked (``mark``, or the one a walk is in): those hold only ids past due.
            floor = max(self.head, self.mark, self.walking)
            while j > floor:
                b = self.bks[j]
                if b:
                    first, rec = next(iter(b.items()))
                    if self._key(first, rec.real) <= key:
                        break
                j -= 1
        return j

    def _prepend(self, t: float) -> None:
        if self.head:
            self.head -= 1
            self.bks[self.head] = {}
            self.los[self.head] = t
        else:
            self.bks.insert(0, {})
            self.los.insert(0, t)
            self.mark += 1
        if self.mark > self.head:  # it lands among counted buckets: count afresh
            self.mark = self.head
            self.past = 0
            self.mark_now = self.part_now = -_INF

    def _ordered(self, i: int) -> dict[str, complex]:
        """Bucket ``i``, sorted if it was not: by queue time, then (ids queued at one reading)
        by the stamp of their activity, unstamped (the first at that reading) first."""
        b = self.bks[i]
        if self.mixed and id(b) in self.mixed:
            self.mixed.discard(id(b))
            key = self._key
            items = sorted(b.items(), key=lambda e: key(e[0], e[1].real))
            b.clear()
            b.update(items)
        return b

    def _head(self) -> dict[str, complex] | None:
        """The first bucket with ids, sorted (empty ones before it freed), or None."""
        bks = self.bks
        while self.head < len(bks):
            b = self._ordered(self.head)
            if b:
                return b
            if b is self.cur:
                return None
            self._trim(self.head + 1)
        return None

    def _again(self, cid: str, rec: complex, v: complex | None) -> complex | None:
        """``v`` if ``cid``, queued with ``rec`` and now with record ``v`` (not ``rec``), was
        active since, to be queued again; None if the entry is stale: its id is gone, or
        another incarnation's, or queued anew elsewhere (``moved``)."""
        if v is None:
            return None
        q = rec.real
        if q < v.imag or (self.moved and q < self.moved.get(cid, -_INF)):
            return None
        return v

    def first(self) -> str | None:
        """The least recently active id (reviewing the head until it is one), or None."""
        last = self.last
        while True:
            b = self._head()
            if b is None:
                return None
            cid, rec = next(iter(b.items()))
            v = last.get(cid)
            if v is rec:  # not active since it was queued
                return cid
            del b[cid]
            self.size -= 1
            live = self._again(cid, rec, v)
            if live is not None:
                self.put(cid, live)  # queued again at its last activity

    def pop_first(self, cid: str) -> None:
        """Remove ``first()``'s id from the head (call ``first`` just before)."""
        self._uncount(cid)
        del self.bks[self.head][cid]
        self.size -= 1
        if not self.size:
            self._reset()

    def _counted(self, last: float) -> bool:
        """Whether an id last active at ``last`` (and queued here) is counted in ``past``."""
        due = last + self.ttl
        return self.mark_now > due or (self.part_now > due and last < self.part_lo)

    def _uncount(self, cid: str) -> None:
        if self._counted(self.last[cid].real):
            self.past -= 1

    def forget(self, cid: str) -> None:
        """``cid``, queued here, leaves the store (call before its record goes): uncount it,
        and drop its entry if it is at hand."""
        self._uncount(cid)
        self.drop_recent(cid)

    def drop_recent(self, cid: str) -> None:
        """Drop ``cid``'s entries queued at the latest reading (call while its record is there):
        a walk could not tell such a copy from one of a new incarnation created at that reading
        (or from a move then: ``moved``). They are in the current bucket, and in the buckets
        opened at that reading when activity filled them (a hand clock, a coarse one)."""
        dropped = 1 if self.cur.pop(cid, None) is not None else 0
        v = self.last.get(cid)
        if v is not None and v.real == self.cur_t:  # (else every entry was queued earlier)
            bks, los, t = self.bks, self.los, self.cur_t
            j = len(bks) - 2
            while j >= self.head and los[j + 1] == t:
                if bks[j].pop(cid, None) is not None:
                    dropped += 1
                j -= 1
        if dropped:
            self.size -= dropped
            if not self.size:
                self._reset()

    def _trim(self, i: int) -> None:
        """Buckets before ``i`` are empty: free them (the list is compacted now and then)."""
        if i > self.head:
            bks, los = self.bks, self.los
            for j in range(self.head, i):
                self.mixed.discard(id(bks[j]))
                bks[j].clear()
            self.head = i
            if self.mark < i:
                self.mark = i
            if i >= 64 and 2 * i > len(bks):
                del bks[:i]
                del los[:i]
                self.head = 0
                self.mark -= i

    def review(
        self, b: dict[str, complex], now: float, ttl: float, limit: int, take: bool
    ) -> tuple[list[str], list[complex], int]:
        """Review the ids at the front of ``b`` (sorted) queued before ``now - ttl``, at most
        ``limit``: stale ones are dropped, ones active since queued again (``b`` may get some
        back). Returns those past due and their records, and how many were reviewed; with
        ``take`` they leave ``b`` and the records, else they stay at its front.

        An entry holds the record its id had when queued, so "not active since" is one
        identity test, and the loops over ids run in C: this is most of a sweep's cost.
        """
        whole = limit >= len(b)
        wanted = len(b) if whole else limit
        # A record is an object, each read a cache miss when cold (~70 ns): the front first, so
        # a bucket that is due only in part (the last of a sweep) is not read whole.
        recs = list(islice(b.values(), min(wanted, _PROBE)))
        if len(recs) < wanted and now > recs[-1].real + ttl:  # the front is due: the rest too
            recs = list(b.values()) if whole else list(islice(b.values(), limit))
        if not recs or not now > recs[0].real + ttl:
            return [], [], 0
        if not now > recs[-1].real + ttl:
            dues = list(map(add, map(_REAL, recs), repeat(ttl)))
            del recs[bisect_left(dues, now) :]  # the first k: queued before now - ttl
            whole = False
        n = len(recs)
        some = list(b) if whole else list(islice(b, n))
        lastd = self.last
        # Popping saves a second lookup (~35 ns at 1M), but a record put back takes a new slot
        # in the record dict, and CPython compacts a dict whose slots are used up (O(size),
        # 50 ms at 1M): so only while the last batch was all past due (``clean``). In a run of
        # batches with ids active since, records are read, not popped.
        pop = take and self.clean
        vals = list(map(lastd.pop if pop else lastd.get, some, repeat(None)))
        # None stale, none active since: all past due. A take (a sweep of the one queue, so
        # every id has this chain's TTL) compares the records by value, the list's own loop
        # (~15 ns an id less than ``is_`` by map): equal times are the same deadline. A count
        # keeps the identity test: it walks every chain, where equal times need not mean one TTL.
        if (vals == recs) if take else all(map(is_, vals, recs)):
            if take:
                if not pop:
                    deque(map(lastd.__delitem__, some), 0)
                self.clean = True
                if n == len(b):
                    b.clear()
                else:
                    deque(map(b.__delitem__, some), 0)
                self.size -= n
            return some, recs, n
        if take:
            self.clean = False
        due: list[str] = []
        kept: list[complex] = []
        again: list[tuple[str, complex]] = []
        for cid, rec, v in zip(some, recs, vals, strict=True):
            if v is rec:
                due.append(cid)
                kept.append(v)
                if take:
                    del b[cid]
                    if not pop:
                        del lastd[cid]
                    self.size -= 1
                continue
            del b[cid]
            self.size -= 1
            if pop and v is not None:
                lastd[cid] = v  # not this entry's to take: the record goes back
            live = self._again(cid, rec, v)
            if live is not None:
                again.append((cid, live))
        for cid, live in again:
            self.put(cid, live)
        return due, kept, n

    def _settled(
        self, i: int, now: float, ttl: float, limit: int, take: bool
    ) -> tuple[dict[str, complex], list[str], list[complex], int]:
        """``review`` of bucket ``i`` until what it queued again into ``i`` is reviewed too.

        A count (not ``take``) goes on past ``limit`` until ``i`` is in order again, so that
        what it counted is a prefix of ``i`` (it reviews the bucket once more, at most)."""
        work = 0
        ids: list[str] = []
        recs: list[complex] = []
        again = False
        self.walking = i
        while True:
            b = self._ordered(i)
            due, their, n = self.review(b, now, ttl, len(b) if again else limit - work, take)
            work += n
            if take:
                ids += due
                recs += their
                k = 0
            else:
                ids, recs = due, their
                k = len(due)
            mixed = id(b) in self.mixed
            if len(b) > k and (
                (mixed and not take)
                or (work < limit and (mixed or now > next(islice(b.values(), k, None)).real + ttl))
            ):
                again = not take
                continue  # some came back into ``b`` and are due for review
            self.walking = -1
            return b, ids, recs, work

    def pop_due(self, now: float, limit: int) -> tuple[list[str], list[complex], bool]:
        """Remove up to ``limit`` past-due ids from the head, forgetting their records.

        Returns them, their records (complex(last, created)), and whether there may be more:
        at most ``REVIEWS`` x ``limit`` entries are reviewed (stale ones, ones queued again),
        which bounds the time under the lock. With ``limit`` a bucket or more, the batch may
        stop short of it at a bucket all past due that does not fit (``more`` is then True).
        """
        ttl = self.ttl
        ids: list[str] = []
        recs: list[complex] = []
        budget = REVIEWS * limit
        whole = False  # stopped short of ``limit`` at a bucket the next call takes whole
        while len(ids) < limit and budget > 0:
            b = self._head()
            if b is None:
                break
            if ids and limit >= CAP and len(b) > limit - len(ids):
                # A batch of a bucket or more ends before a bucket that is all past due and
                # does not fit: deleting part of a bucket costs ~4x clearing it, and the next
                # batch takes this one whole. A bucket due only in part (where a sweep ends)
                # is taken in part now: a batch of its own would cost a claim (~35 us).
                whole = now > next(reversed(b.values())).real + ttl
                if whole:
                    break
            _b, due, their, work = self._settled(self.head, now, ttl, limit - len(ids), True)
            budget -= work
            ids += due
            recs += their
            if not work:  # nothing at the head is due for review
                break
        if ids:
            self.dropped_head(recs)
        return ids, recs, whole or len(ids) >= limit or budget <= 0

    def advance(self, ttl: float, now: float, budget: int = NO_LIMIT) -> bool:
        """Count the ids at the head past ``ttl`` at ``now`` into ``past``, each walked once
        ever; at most about ``budget`` reviewed per call: False if the count is not done (call
        again with the same ``now``; removals meanwhile keep ``past`` right)."""
        i = self.mark if self.mark > self.head else self.head
        past = self.past
        work = 0
        done = True
        while i < len(self.bks):
            b, due, _recs, n = self._settled(i, now, ttl, budget - work, False)
            work += n
            past += len(due)
            k = len(due)
            if len(b) > k:  # the rest is not due, or the budget ran out: split the counted off
                done = not now > next(islice(b.values(), k, None)).real + ttl
                if due:
                    self._split(i, due)
                    i += 1
                break
            i += 1
            if b is self.cur:
                break
            if work >= budget:
                done = False
                break
        self.mark = i
        self.past = past
        if done:
            if i >= len(self.bks):
                self.room = 0  # every bucket is counted: new ids go to a new one
            self.mark_now = now
            self.part_now, self.part_lo = -_INF, _INF
        else:
            self.part_now, self.part_lo = now, self.los[i]
        return done

    def _split(self, i: int, due: list[str]) -> None:
        """Move ``due``, a prefix of bucket ``i``, into a bucket of its own just before it."""
        b = self.bks[i]
        front = {cid: b.pop(cid) for cid in due}
        lo = next(iter(b.values())).real  # the rest's earliest: later than all of ``due``
        self.bks.insert(i, front)
        self.los.insert(i + 1, lo)

    def dropped_head(self, recs: list[complex]) -> None:
        """Ids with records ``recs`` left from the head: uncount those counted."""
        if self.past:
            if self.part_now == -_INF:
                deadlines = map(add, map(_REAL, recs), repeat(self.ttl))
                counted = sum(map(self.mark_now.__gt__, deadlines))
            else:
                counted = sum(map(self._counted, map(_REAL, recs)))
            self.past = self.past - counted if counted < self.past else 0
        if not self.size:
            self._reset()
