"""Walks from the head of a chain (``_buckets.Chain``): a sweep's take, and a count's review.

A walk reviews the ids queued before a deadline, bucket by bucket from the head: an entry
whose record is still the one it was queued with is past due; one active since is queued
again at its last activity; a stale one is dropped. A sweep takes what is past due
(``pop_due``); a count only counts it (``advance``).

Past-due counts. ``advance`` counts the ids at the head that are past the TTL at ``mark_now``:
the buckets ``[head, mark)`` hold only such ids (and stale entries), so each is walked once
however often the count is asked, and removing an id tells whether it was counted from its
time alone (``Chain.counted``). A count walks a bounded number of entries per call (the store
lets other threads in between), and while one is under way ``part_now`` / ``part_lo`` say what
it has counted so far.

The caller holds the store's lock, as for every ``Chain`` method.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from itertools import islice, repeat
from operator import add, attrgetter, is_

from . import _buckets
from ._buckets import NO_LIMIT, Chain

__all__ = ["advance", "pop_due", "review"]

REVIEWS = 4  # entries a sweep's batch may review, per id it may take
_PROBE = 16  # entries a review reads first, to tell a bucket due in part
_INF = float("inf")
_REAL = attrgetter("real")


def review(
    chain: Chain, b: dict[str, complex], now: float, ttl: float, limit: int, take: bool
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
        # The first k, queued before now - ttl, by a binary search: it reads ~8 records of a
        # bucket, not every one.
        del recs[bisect_left(recs, now, key=lambda rec: rec.real + ttl) :]
        whole = False
    n = len(recs)
    some = list(b) if whole else list(islice(b, n))
    lastd = chain.last
    # Popping saves a second lookup (~35 ns at 1M), but a record put back takes a new slot
    # in the record dict, and CPython compacts a dict whose slots are used up (O(size),
    # 50 ms at 1M): so only while the last batch was all past due (``clean``). In a run of
    # batches with ids active since, records are read, not popped.
    pop = take and chain.clean
    vals = list(map(lastd.pop if pop else lastd.get, some, repeat(None)))
    # None stale, none active since: all past due. A take (a sweep of the one queue, so
    # every id has this chain's TTL) compares the records by value, the list's own loop
    # (~15 ns an id less than ``is_`` by map): equal times are the same deadline. A count
    # keeps the identity test: it walks every chain, where equal times need not mean one TTL.
    if (vals == recs) if take else all(map(is_, vals, recs)):
        if take:
            if not pop:
                deque(map(lastd.__delitem__, some), 0)
            chain.clean = True
            if n == len(b):
                b.clear()
            else:
                deque(map(b.__delitem__, some), 0)
            chain.size -= n
        return some, recs, n
    if take:
        chain.clean = False
    due: list[str] = []
    kept: list[complex] = []
    again: list[tuple[str, complex]] = []
    _sort_out(chain, b, some, recs, vals, take, pop, due, kept, again)
    for cid, live in again:
        chain.put(cid, live)
    return due, kept, n


def _sort_out(
    chain: Chain,
    b: dict[str, complex],
    some: list[str],
    recs: list[complex],
    vals: list[complex | None],
    take: bool,
    pop: bool,
    due: list[str],
    kept: list[complex],
    again: list[tuple[str, complex]],
) -> None:
    """Entries ``some`` of ``b`` (queued with ``recs``, now with records ``vals``) one by one:
    the past due to ``due`` and ``kept`` (with ``take`` they leave ``b`` and the records), the
    rest leave ``b``, those active since to ``again`` (queue them again after)."""
    lastd = chain.last
    for cid, rec, v in zip(some, recs, vals, strict=True):
        if v is rec:
            due.append(cid)
            kept.append(v)
            if take:
                del b[cid]
                if not pop:
                    del lastd[cid]
                chain.size -= 1
            continue
        del b[cid]
        chain.size -= 1
        if pop and v is not None:
            lastd[cid] = v  # not this entry's to take: the record goes back
        live = chain.again(cid, rec, v)
        if live is not None:
            again.append((cid, live))


def _take_whole(
    chain: Chain, now: float, ttl: float, room: int
) -> tuple[list[str], list[complex], int]:
    """Take the buckets from the head that are past due whole (by their latest entry), fit in
    ``room`` together and are in order, each as ``review`` takes one, and how many entries
    were reviewed: none if the head bucket is not such. A bucket with ids active since or
    stale is reviewed as ``review`` does, and is the last: the caller goes on from there.

    One call for them all, with the loops over ids in C: ``review`` and its callers cost
    ~2.5 us a bucket besides its ids, ~4% of a sweep of 1,000 at 10k.
    """
    bks, mixed, cur, lastd = chain.bks, chain.mixed, chain.cur, chain.last
    ids: list[str] = []
    recs: list[complex] = []
    n = 0
    i = chain.head
    while i < len(bks):
        b = bks[i]
        if b:
            k = len(b)
            if (
                n + k > room
                or (mixed and id(b) in mixed)
                or not now > next(reversed(b.values())).real + ttl
            ):
                break
            n += k
            theirs = list(b.values())
            pop = chain.clean  # (as in ``review``)
            vals = list(map(lastd.pop if pop else lastd.get, b, repeat(None)))
            if vals == theirs:
                if not pop:
                    deque(map(lastd.__delitem__, b), 0)
                ids += b
                recs += theirs
                b.clear()
                chain.size -= k
                chain.clean = True
            else:
                chain.clean = False
                again: list[tuple[str, complex]] = []
                chain.walking = i
                _sort_out(chain, b, list(b), theirs, vals, True, pop, ids, recs, again)
                for cid, live in again:
                    chain.put(cid, live)
                chain.walking = -1
                break
        if b is cur:
            break
        i += 1
    return ids, recs, n


def _settled(
    chain: Chain, i: int, now: float, ttl: float, limit: int, take: bool
) -> tuple[dict[str, complex], list[str], list[complex], int, float]:
    """``review`` of bucket ``i`` until what it queued again into ``i`` is reviewed too.

    A count (not ``take``) goes on past ``limit`` until ``i`` is in order again, so that
    what it counted is a prefix of ``i`` (it reviews the bucket once more, at most). The last
    value is the earliest last activity taken (a take; else infinity): what one review takes
    is in queue order, but an id it queued again into ``i`` may be taken after later ones."""
    work = 0
    ids: list[str] = []
    recs: list[complex] = []
    earliest = _INF
    again = False
    chain.walking = i
    while True:
        b = chain.ordered(i)
        due, their, n = review(chain, b, now, ttl, len(b) if again else limit - work, take)
        work += n
        if take:
            if ids:
                ids += due
                recs += their
            else:  # (the lists are the review's own)
                ids, recs = due, their
            if their and their[0].real < earliest:
                earliest = their[0].real
            k = 0
        else:
            ids, recs = due, their
            k = len(due)
        mixed = id(b) in chain.mixed
        if len(b) > k and (
            (mixed and not take)
            or (work < limit and (mixed or now > next(islice(b.values(), k, None)).real + ttl))
        ):
            again = not take
            continue  # some came back into ``b`` and are due for review
        chain.walking = -1
        return b, ids, recs, work, earliest


def pop_due(
    chain: Chain, now: float, limit: int
) -> tuple[list[str], list[complex], bool, float]:
    """Remove up to ``limit`` past-due ids from the head, forgetting their records.

    Returns them, their records (complex(last, created)), whether there may be more, and the
    earliest last activity among them (infinity if none). At most ``REVIEWS`` x ``limit``
    entries are reviewed (stale ones, ones queued again), which bounds the time under the
    lock. With ``limit`` a bucket or more, the batch may stop short of it at a bucket all past
    due that does not fit (``more`` is then True).
    """
    ttl = chain.ttl
    ids: list[str] = []
    recs: list[complex] = []
    earliest = _INF
    budget = REVIEWS * limit
    whole = False  # stopped short of ``limit`` at a bucket the next call takes whole
    while len(ids) < limit and budget > 0:
        b = chain.head_bucket()
        if b is None:
            break
        if ids and limit >= _buckets.CAP and len(b) > limit - len(ids):
            # A batch of a bucket or more ends before a bucket that is all past due and
            # does not fit: deleting part of a bucket costs ~4x clearing it, and the next
            # batch takes this one whole. A bucket due only in part (where a sweep ends)
            # is taken in part now: a batch of its own would cost a claim (~35 us).
            whole = now > next(reversed(b.values())).real + ttl
            if whole:
                break
        room = limit - len(ids)
        due, their, work = _take_whole(chain, now, ttl, room)
        if work:  # buckets past due whole, taken in one call
            left = None
            first = their[0].real if their else _INF
        else:
            left, due, their, work, first = _settled(chain, chain.head, now, ttl, room, True)
        budget -= work
        if ids:
            ids += due
            recs += their
        else:  # (the lists are the walk's own)
            ids, recs = due, their
        if first < earliest:
            earliest = first
        # Nothing at the head is due for review; or ``_settled`` stopped within its budget
        # at ids not due yet (the bucket is in order then): reviewing it again would cost
        # ~3 us to find nothing.
        if not work or (left and work < room):
            break
    if ids:
        _dropped_head(chain, recs)
    return ids, recs, whole or len(ids) >= limit or budget <= 0, earliest


def advance(chain: Chain, ttl: float, now: float, budget: int = NO_LIMIT) -> bool:
    """Count the ids at the head past ``ttl`` at ``now`` into ``past``, each walked once
    ever; at most about ``budget`` reviewed per call: False if the count is not done (call
    again with the same ``now``; removals meanwhile keep ``past`` right)."""
    i = chain.mark if chain.mark > chain.head else chain.head
    past = chain.past
    work = 0
    done = True
    while i < len(chain.bks):
        b, due, _recs, n, _ = _settled(chain, i, now, ttl, budget - work, False)
        work += n
        past += len(due)
        k = len(due)
        if len(b) > k:  # the rest is not due, or the budget ran out: split the counted off
            done = not now > next(islice(b.values(), k, None)).real + ttl
            if due:
                _split(chain, i, due)
                i += 1
            break
        i += 1
        if b is chain.cur:
            break
        if work >= budget:
            done = False
            break
    chain.mark = i
    chain.past = past
    if done:
        if i >= len(chain.bks):
            chain.room = 0  # every bucket is counted: new ids go to a new one
        chain.mark_now = now
        chain.part_now, chain.part_lo = -_INF, _INF
    else:
        chain.part_now, chain.part_lo = now, chain.los[i]
    return done


def _split(chain: Chain, i: int, due: list[str]) -> None:
    """Move ``due``, a prefix of bucket ``i``, into a bucket of its own just before it."""
    b = chain.bks[i]
    front = {cid: b.pop(cid) for cid in due}
    lo = next(iter(b.values())).real  # the rest's earliest: later than all of ``due``
    chain.bks.insert(i, front)
    chain.los.insert(i + 1, lo)


def _dropped_head(chain: Chain, recs: list[complex]) -> None:
    """Ids with records ``recs`` left from the head: uncount those counted."""
    if chain.past:
        if chain.part_now == -_INF:
            deadlines = map(add, map(_REAL, recs), repeat(chain.ttl))
            counted = sum(map(chain.mark_now.__gt__, deadlines))
        else:
            counted = sum(map(chain.counted, map(_REAL, recs)))
        chain.past = chain.past - counted if counted < chain.past else 0
    if not chain.size:
        chain.reset()
