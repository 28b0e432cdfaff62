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
where they have them (``seq``, see ``Book._stamp``), else by place; an id touched again at that
reading keeps its entry where it was, early, and a walk queues it again where its new stamp
puts it (so a placement reads every entry of a bucket at that reading, not its first or last
alone: ``_stamps_at``). So the head, once reviewed, is the least recently active id. A bucket
takes at most ``CAP`` activities (touches count, so no bucket collects more than about ``CAP``
ids queued again).

Stale entries. Removal leaves an id's entry where it is unless it is in the current bucket or
was queued at the latest reading (``drop_recent``; nothing else is ever looked for). An entry
is stale when its id is gone, or was queued before its current incarnation was created, or
before ``moved[id]`` (when the store queued it anew elsewhere); walks drop stale entries.

The walks from the head that review, take and count are in ``_walks``. Past-due counts:
``past`` ids at the head are counted past the TTL at ``mark_now``, the buckets ``[head, mark)``
holding only such ids (and stale entries), and ``part_now`` / ``part_lo`` say what a count under
way has counted so far.

Entries leave a bucket only at the head (walks), from the current bucket and from the buckets
opened at the latest reading, so no bucket is left holding a large table for few ids: memory
follows the live ids.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

__all__ = ["CAP", "NO_LIMIT", "Chain"]

CAP = 256  # activities per bucket: a sweep's batch (SWEEP_BATCH) of whole buckets
_INF = float("inf")
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
        self.clean = True  # the last batch taken was all past due (``_walks.review``), or none was
        self.reset()

    def reset(self) -> None:
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
            before = next(reversed(b.values())).real
            if before > t or (
                before == t
                and self.seq
                and id(b) not in self.mixed
                and any(s > self.seq.get(cid, -1) for s in self._stamps_at(b, t))
            ):
                self.mixed.add(id(b))
        b[cid] = rec
        if b is self.cur:
            self.room -= 1

    def _key(self, cid: str, t: float) -> tuple[float, int]:
        """Queue order: time, then (ids queued at one reading) the stamp of their activity."""
        return t, self.seq.get(cid, -1)

    def _stamps_at(self, b: dict[str, complex], t: float) -> Iterator[int]:
        """The stamps of the entries of ``b`` queued at ``t`` whose id was last active at ``t``.

        Such an entry belongs where its id's stamp puts it, and a walk queues it there if it is
        not: an id touched at ``t`` again, away from where it was queued, keeps its entry and
        gets a new stamp, so its entry stands early, and the first entry of a bucket need not
        hold its least stamp. An id last active at a later reading orders nothing at ``t`` (a
        walk queues it again past them), whatever its stamp. (An entry's time is its own: the
        walks need every entry in time order.)
        """
        last, seq = self.last, self.seq
        for cid, rec in b.items():
            if rec.real == t:
                v = last.get(cid)
                if v is not None and v.real == t:
                    yield seq.get(cid, -1)

    def _not_before_last(self, cid: str, t: float) -> bool:
        """Whether ``cid`` at ``t`` goes after every id queued: after the ids of the last
        buckets holding any, back to one holding an id that orders it (``_stamps_at``) or one
        queued before ``t`` (activity at one reading may leave empty buckets after it; an
        unsorted bucket cannot tell, and ``_bucket_for`` places the id instead)."""
        bks = self.bks
        stamp = self.seq.get(cid, -1)
        for j in range(len(bks) - 1, self.head - 1, -1):
            b = bks[j]
            if not b:
                continue
            if self.mixed and id(b) in self.mixed:
                return False
            before = next(reversed(b.values())).real
            if before != t:
                return before < t
            ordered_here = False
            for theirs in self._stamps_at(b, t):
                if theirs > stamp:
                    return False
                ordered_here = True
            if ordered_here:
                return True
            if next(iter(b.values())).real < t:
                return True  # (and so are the buckets before)
        return True

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
            stamp = self.seq.get(cid, -1)  # (a bucket's first id is its least but where ids
            # came in earlier than the bucket's start: then it is mixed). Not below a bucket a
            # count has walked (``mark``, or the one a walk is in): those hold only ids past due.
            floor = max(self.head, self.mark, self.walking)
            while j > floor and los[j] == t:  # (below them, the last bucket before ``t``)
                b = self.bks[j]
                if b:
                    first = next(iter(b.values())).real
                    if first < t:
                        break
                    if first == t and any(s <= stamp for s in self._stamps_at(b, t)):
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

    def ordered(self, i: int) -> dict[str, complex]:
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

    def head_bucket(self) -> dict[str, complex] | None:
        """The first bucket with ids, sorted (empty ones before it freed), or None."""
        bks = self.bks
        while self.head < len(bks):
            b = self.ordered(self.head)
            if b:
                return b
            if b is self.cur:
                return None
            self._trim(self.head + 1)
        return None

    def again(self, cid: str, rec: complex, v: complex | None) -> complex | None:
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
            b = self.head_bucket()
            if b is None:
                return None
            cid, rec = next(iter(b.items()))
            v = last.get(cid)
            if v is rec:  # not active since it was queued
                return cid
            del b[cid]
            self.size -= 1
            live = self.again(cid, rec, v)
            if live is not None:
                self.put(cid, live)  # queued again at its last activity

    def pop_first(self, cid: str) -> None:
        """Remove ``first()``'s id from the head (call ``first`` just before)."""
        self._uncount(cid)
        del self.bks[self.head][cid]
        self.size -= 1
        if not self.size:
            self.reset()

    def counted(self, last: float) -> bool:
        """Whether an id last active at ``last`` (and queued here) is counted in ``past``."""
        due = last + self.ttl
        return self.mark_now > due or (self.part_now > due and last < self.part_lo)

    def _uncount(self, cid: str) -> None:
        if self.counted(self.last[cid].real):
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
                self.reset()

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
