"""The rings the in-memory store threads its entries on.

A ring is a circular doubly linked list with a sentinel: unlinking and appending are a few
attribute writes and need no test for the ends, which is what keeps activity O(1).
"""

from __future__ import annotations

import math

__all__ = ["Entry", "Queue", "Tally", "append", "new_ring", "unlink"]


class Entry:
    __slots__ = ("cid", "created", "last", "next", "prev")

    cid: str
    created: float
    last: float
    next: Entry
    prev: Entry


def new_ring() -> Entry:
    sentinel = Entry()
    sentinel.cid = ""
    # Never due: a walk that compares times stops at the sentinel without testing for it.
    sentinel.created = sentinel.last = math.inf
    sentinel.prev = sentinel.next = sentinel
    return sentinel


class Tally:
    """How many entries at the head of a ring are known to be past their TTL deadline.

    Those entries never move again (activity on them raises), and store time never runs back,
    so the counted ones are always a prefix of the ring ending at ``mark``: counting the live
    conversations walks each entry once, however often it is asked.
    """

    __slots__ = ("mark", "past")

    def __init__(self, ring: Entry) -> None:
        self.mark = ring  # the last counted entry, or the ring's sentinel
        self.past = 0

    def advance(self, ttl: float, now: float) -> int:
        e = self.mark.next
        past = self.past
        while now > e.last + ttl:  # the sentinel's last is +inf: the walk stops there
            past += 1
            self.mark = e
            e = e.next
        self.past = past
        return past

    def dropped_head(self, ring: Entry, n: int) -> None:
        """``n`` entries left from the head of the ring."""
        if n >= self.past:
            self.mark = ring
            self.past = 0
        else:
            self.past -= n


class Queue:
    __slots__ = ("fresh", "fresh_tally", "ttl", "warned", "warned_tally")

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.fresh = new_ring()  # not warned, in order of last activity
        self.warned = new_ring()  # warned, in order of deadline
        self.fresh_tally = Tally(self.fresh)
        self.warned_tally = Tally(self.warned)

    def dropped(self, e: Entry, now: float) -> None:
        """``e``, past its TTL deadline, is about to leave its ring (still linked)."""
        ring = e.prev
        if ring is self.fresh or ring is self.warned:
            tally = self.fresh_tally if ring is self.fresh else self.warned_tally
            tally.dropped_head(ring, 1)
        elif self.warned.next is self.warned:  # out of the middle of the fresh ring
            tally = self.fresh_tally
            if tally.past and e.last <= tally.mark.last:  # in the counted prefix
                tally.past -= 1
                if tally.mark is e:
                    tally.mark = e.prev
        else:  # out of the middle of one of two rings: count afresh
            self.fresh_tally = Tally(self.fresh)
            self.warned_tally = Tally(self.warned)

    def past(self, now: float) -> int:
        return self.fresh_tally.advance(self.ttl, now) + self.warned_tally.advance(self.ttl, now)


def unlink(e: Entry) -> None:
    p = e.prev
    n = e.next
    p.next = n
    n.prev = p


def append(ring: Entry, e: Entry) -> None:
    p = ring.prev
    e.prev = p
    e.next = ring
    p.next = e
    ring.prev = e
