"""The rings the in-memory store threads its entries on.

A ring is a circular doubly linked list with a sentinel: unlinking and appending are a few
attribute writes and need no test for the ends, which is what keeps activity O(1).
"""

from __future__ import annotations

import math

__all__ = ["Entry", "Queue", "append", "new_ring", "unlink"]


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


class Queue:
    __slots__ = ("fresh", "ttl", "warned")

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.fresh = new_ring()  # not warned, in order of last activity
        self.warned = new_ring()  # warned, in order of deadline


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
