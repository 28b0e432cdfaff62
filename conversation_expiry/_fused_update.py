"""``update_activity`` on the in-memory store in one function: the manager's checks and the touch.

The request path an application calls most (issue 12, target 3). The manager's method and the
store's ``touch`` are two Python frames, and ``touch`` calls the clock and the bookkeeping's
general methods; with the in-memory store the manager takes this function as its
``update_activity`` instead: ``ConversationExpiryManager.update_activity`` and
``MemoryStore.touch`` written out together, with ``SystemClock.reading``'s common case and, for
a conversation of the default TTL with no ``max_age`` and no warnings, ``Book._live`` and
``Book._activity`` inlined. Those are its reference versions, and
``tests/manager/test_update_fused.py``, ``tests/memory/test_memory_buckets.py`` and
``tests/stores/test_store_system_clock.py`` hold it to them (the same states, errors and store
layout).
"""
from __future__ import annotations

import time as _time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._errors import ConversationExpiredError, ConversationNotFoundError
from ._memory import _FLOATS, MemoryStore
from ._readings import _REAL, LIMIT, SLACK, WALL_HI, WALL_LO
from ._state import ConversationState, snapshot
from ._validation import check_activity_type, check_id

if TYPE_CHECKING:
    from ._telemetry import Telemetry

__all__ = ["fused_update"]


def fused_update(
    store: MemoryStore,
    telemetry: Telemetry,
    traced: Callable[[object, object], ConversationState],
    meaningful: Callable[[str], object] | None,
    wake: Callable[[ConversationState], None] | None,
) -> Callable[..., ConversationState]:
    """The manager's ``update_activity`` in one function, for a bound store.

    What never changes once the store is bound (its lock's guard, the record dict, the system
    clock, the options, the default chain) is held in cells instead of read from the store.
    ``traced`` (the manager's traced path) runs instead whenever tracing is on (read at every
    call, as the manager's method does) and the sampler may keep the span; one it drops for
    certain is skipped here, as ``Telemetry.traced_update`` skips it. ``meaningful``: the
    manager's ``meaningful_activities`` predicate; ``wake``: what the manager calls with the
    state after a touch when it has warnings (it may have to wake its thread sooner).
    """
    if not store._bound:
        raise RuntimeError("the store must be bound first")
    dropped = telemetry.dropped
    guard = store._guard
    wait_write = guard.wait_write
    records = store._last
    record_of = records.get
    ttl_of, meta = store._ttl_of, store._meta
    plain, ties, default_ttl, chain = store._plain, store._ties, store._ttl, store._fresh
    stock, system = store._stock, store._system
    t, mono, wall = _time, _REAL[0], _REAL[1]  # (cells: where freezegun does not look)

    def update_activity(
        conversation_id: str, activity_type: str = "message"
    ) -> ConversationState:
        # Sampled out (the SDK's sampler drops the span for certain), the span is skipped
        # here as ``Telemetry.traced_update`` would skip it: the same calls, untraced.
        if telemetry.tracing and not dropped(True):
            return traced(conversation_id, activity_type)
        if activity_type.__class__ is not str:
            check_activity_type(activity_type)
        extend = True if meaningful is None else bool(meaningful(activity_type))
        cid = conversation_id
        if type(cid) is not str or not cid:
            cid = check_id(cid)
        # From here on, MemoryStore.touch(cid, extend) written out.
        if (
            system is not None
            and t.monotonic is mono
            and t.time is wall
            and system._freeze is None
            and (now := mono() + system._drift) < system._recheck_at
        ):
            offset = system._offset
        else:
            now, offset = store._reading()  # (read here: a test may wrap it)
        lock = guard.write
        if not lock.acquire(False):
            wait_write()
        try:
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
            v = record_of(cid)
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
        if wake is not None:
            wake(state)
        return state

    return update_activity
