"""``ConversationExpiryManager.update_activity``: the manager's checks and the touch, in one.

The request path an application calls most (issue 12, target 3). Written as the manager's
method over two calls (its checks, then ``store.touch``), it is two Python frames, and
``MemoryStore.touch`` calls the clock and the bookkeeping's general methods. With the in-memory
store this method does the touch itself: ``SystemClock.reading``'s common case and, for a
conversation of the default TTL with no ``max_age`` and no warnings, ``Book._live`` and
``Book._activity``, inlined. Any other store (a subclass of ``MemoryStore`` too) gets
``store.touch``, the reference: ``tests/manager/test_update_fused.py``,
``tests/memory/test_memory_buckets.py`` and ``tests/stores/test_store_system_clock.py`` hold the
inlined path to it (the same states, errors and store layout).

It is the class's method, defined here to keep the manager's module small: an instance
attribute would save a little more (closure cells instead of attribute reads) but would hide a
``mock.patch`` of the class's method and make each manager a reference cycle (it would hold a
method bound to the manager), kept alive until a full collection.
"""

from __future__ import annotations

import time as _time
from typing import TYPE_CHECKING, Any

from ._errors import ConversationExpiredError, ConversationNotFoundError
from ._memory import _FLOATS, MemoryStore
from ._readings import _REAL, LIMIT, SLACK, WALL_HI, WALL_LO
from ._state import ConversationState, snapshot
from ._validation import check_activity_type, check_id

if TYPE_CHECKING:
    from ._manager import ConversationExpiryManager

__all__ = ["inline_parts", "update_activity"]

# What the method reads that never changes once the store is bound, in one tuple it unpacks
# (one attribute read instead of a dozen; the unpacking costs ~30 ns of ~590 at 10k).
InlineParts = tuple[Any, ...]


def inline_parts(store: object) -> InlineParts | None:
    """What ``update_activity`` needs to touch ``store`` itself; None for any other store.

    Nothing here refers to the manager, so it makes no reference cycle.
    """
    if type(store) is not MemoryStore:
        return None
    assert store._bound
    # Set once by bind (configure): the lock's guard, the record dict, the options, the default
    # chain, the clock.
    return (
        store, store._guard, store._last, store._plain, store._ttl_of, store._meta,
        store._ties, store._ttl, store._fresh, store._stock, store._system,
    )  # fmt: skip


def update_activity(
    self: ConversationExpiryManager,
    conversation_id: str,
    activity_type: str = "message",
) -> ConversationState:
    """Slide the expiry to now + ttl (Go: ``UpdateActivity``); never revives an expired one.

    With ``meaningful_activities`` set, other activity types only check the conversation.
    """
    telemetry = self._telemetry
    if telemetry.tracing and not telemetry.dropped(True):
        # The checks run inside the span, so bad input is recorded; a span the sampler drops
        # for certain is skipped, as ``Telemetry.traced_update`` would skip it.
        return self._traced_update(conversation_id, activity_type)
    # ConversationExpiryManager._checked_touch written out: the same checks.
    if activity_type.__class__ is not str:
        check_activity_type(activity_type)
    meaningful = self._meaningful
    extend = True if meaningful is None else bool(meaningful(activity_type))
    cid = conversation_id
    if type(cid) is not str or not cid:
        cid = check_id(cid)
    parts = self._inline
    if parts is None:  # another store: its touch
        return self._touch(cid, extend)
    store, guard, records, plain, ttl_of, meta, ties, default_ttl, chain, stock, system = parts
    # MemoryStore.touch(cid, extend), written out.
    # SystemClock.reading's common case. The real time functions are kept where freezegun
    # does not look (a tuple); keyword-only defaults would cost ~15 ns each, per call.
    if (
        system is not None
        and _time.monotonic is (mono := _REAL[0])
        and _time.time is _REAL[1]
        and system._freeze is None
        and (now := mono() + system._drift) < system._recheck_at
    ):
        offset = system._offset
    else:
        now, offset = store._reading()
    lock = guard.write
    if not lock.acquire(False):
        guard.wait_write()  # (the sweep lets us in before its next batch)
    try:
        # Store time: MemoryStore._checked's common case (a stock clock's reading is a float).
        if (
            stock
            or (
                now.__class__ is float
                and offset.__class__ in _FLOATS
                and -LIMIT < offset < LIMIT
                and WALL_LO < now + offset < WALL_HI
            )
        ) and store._floor <= now:
            store._floor = now
        else:
            now, offset = store._checked((now, offset))
        state: ConversationState
        v = records.get(cid)
        if v is None:
            raise ConversationNotFoundError(cid)
        if not plain or ttl_of or meta:
            created, last, ttl = store._live(cid, now)
            if extend:
                last = store._activity(cid, created, ttl, ttl, now)
            state = store._state(cid, created, last, ttl, offset)
        else:
            # No max_age, no warnings, the default TTL: Book._live and Book._activity
            # written out (the id stays where it is queued).
            last = v.real
            if now > last + default_ttl and now > last + default_ttl + SLACK:
                raise ConversationExpiredError(cid)  # (the slack only near it)
            if extend:
                # complex(now, created) exactly (v.real - last is 0.0, and 0.0 + now is
                # now), ~50 ns cheaper than reading v.imag and calling complex().
                rec = records[cid] = v - last + now
                if ties:  # Book._stamp (only evictions ask the order of activity)
                    if now > store._act_t:
                        store._act_t = now
                        store._act_id = cid
                    else:  # the reading of an earlier activity: as Book._activity does
                        cur = chain.cur
                        queued_now = v is cur.get(cid) and last == now
                        store._stamp(cid, now, not queued_now)
                        if queued_now:  # queued at this very reading: to its order's end
                            del cur[cid]
                            cur[cid] = rec
                v = rec
                room = chain.room = chain.room - 1  # Chain.tick
                if room <= 0:
                    chain.open(now)
            # The record is the snapshot's times and the TTL its span (``Book._state``'s
            # layout); the rest is the same for every snapshot at this offset.
            rest = store._rest
            if rest[3] is not offset:
                rest = store._rest = (default_ttl, True, False, offset, None)
            state = snapshot((cid, v, rest))
    finally:
        lock.release()
    # ConversationExpiryManager._touch's wake: its warning may now fall due before the thread wakes.
    if self.warning_before is not None and not self._wake_pending:
        self._wake_for(state)
    return state
