"""How sweeps meet the rest of the manager: stop() mid-sweep, len() cost, warning wake-ups."""

from __future__ import annotations

import math
import sys
import threading

import pytest
from support import WAIT

import conversation_expiry._rwlock as rwlock_module
from conversation_expiry import ConversationExpiryManager, ManualClock, MemoryStore
from conversation_expiry import _book as book_module
from conversation_expiry._buckets import Chain
from conversation_expiry._manager import SWEEP_BATCH
from conversation_expiry._store import Sweep


def test_stop_returns_after_the_batch_in_progress_not_the_whole_sweep(clock: ManualClock) -> None:
    sweeping, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def on_expire(state, reason) -> None:
        calls.append(state.id)
        sweeping.set()
        assert release.wait(WAIT)

    m = ConversationExpiryManager(10, 0.01, clock=clock, on_expire=on_expire)
    for i in range(SWEEP_BATCH * 4):
        m.register_conversation(f"c{i}")
    clock.advance(11)
    assert sweeping.wait(WAIT)  # the thread is inside the first batch's callables
    stopper = threading.Thread(target=m.stop, kwargs={"timeout": WAIT})
    stopper.start()
    release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive() and not m.running
    assert len(calls) == SWEEP_BATCH  # the batch claimed finished; the rest were not claimed
    m.stop(cleanup_remaining=True)
    assert len(calls) == SWEEP_BATCH * 4 and len(set(calls)) == SWEEP_BATCH * 4


def test_len_counts_each_past_due_conversation_once_however_often_it_is_asked(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = ConversationExpiryManager(10, 3600, clock=clock, autostart=False)
    for i in range(1000):
        m.register_conversation(f"c{i}")
    clock.advance(5)
    m.register_conversation("live")
    clock.advance(6)
    walked: list[int] = []
    advance = book_module.advance

    def counting(chain: Chain, ttl: float, now: float, budget: int) -> bool:
        before = chain.past
        done = advance(chain, ttl, now, budget)
        walked.append(chain.past - before)
        return done

    monkeypatch.setattr(book_module, "advance", counting)
    assert len(m) == 1 and len(m) == 1 and len(m) == 1
    assert walked[::2] == [1000, 0, 0]  # later calls walk nothing: O(1), not O(past due)
    assert m.end_conversation("c500") is False  # past due: out of the middle of the ring
    assert len(m) == 1
    assert sum(walked) == 1000
    assert len(m.cleanup_expired()) == 999 and len(m) == 1


def test_registrations_with_warnings_wake_the_thread_only_when_a_warning_is_due_sooner(
    clock: ManualClock,
) -> None:
    class CountingStore(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.claims = 0
            self.swept = threading.Event()

        def claim(self, limit: int) -> Sweep:
            sweep = super().claim(limit)
            self.claims += 1
            self.swept.set()
            return sweep

    store = CountingStore()
    m = ConversationExpiryManager(
        60, 3600, clock=clock, warning_before=5, on_warning=lambda s: None, store=store
    )
    try:
        m.register_conversation("first")  # nothing known yet: wakes the thread
        assert store.swept.wait(WAIT)
        idle = threading.Event()  # until the sweep has said when the thread wakes next
        for _ in range(int(WAIT / 0.01)):
            if m._covered_until > -math.inf or idle.wait(0.01):
                break
        for i in range(200):
            m.register_conversation(f"c{i}")  # warnings due no sooner than first's
        assert store.claims == 1
        clock.advance(1)
        m.register_conversation("later")  # due later still: the thread's wait covers it
        assert store.claims == 1
    finally:
        m.stop(timeout=WAIT)


def test_a_request_blocked_during_a_batch_gets_the_lock_before_the_next_batch(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lock does not queue its waiters: the sweep, locking again at once, would win the race
    # against the woken request thread batch after batch. So it waits for it (RWGuard.let_in).
    monkeypatch.setattr(rwlock_module, "_LET_IN_FOR", WAIT)  # (a loaded host may be slow)
    store = MemoryStore()
    m = ConversationExpiryManager(10, 3600, clock=clock, autostart=False, store=store)
    for i in range(SWEEP_BATCH * 2):
        m.register_conversation(f"c{i}")
    clock.advance(5)
    m.register_conversation("live")
    clock.advance(6)
    touched_at = store._last["live"].real + 6
    collect = store._collect
    lasts: list[float] = []
    requests: list[threading.Thread] = []

    def collecting(now: float, offset: float, limit: int):  # type: ignore[no-untyped-def]
        lasts.append(store._last["live"].real)  # under the sweep's lock
        if not requests:  # the first batch: a request arrives while the lock is held
            t = threading.Thread(target=m.update_activity, args=("live",), daemon=True)
            requests.append(t)
            t.start()
            for _ in range(int(WAIT / 0.005)):
                if store._guard.waiting or threading.Event().wait(0.005):
                    break
            assert store._guard.waiting
        return collect(now, offset, limit)

    monkeypatch.setattr(store, "_collect", collecting)
    assert len(m.cleanup_expired()) == SWEEP_BATCH * 2
    requests[0].join(WAIT)
    assert len(lasts) >= 2 and lasts[0] < touched_at
    assert lasts[1] == touched_at  # the second batch came after the request's touch


class KeepingStore(MemoryStore):
    """Keeps each claim's states, and counts who else holds the last ones at the next claim."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[object]] = []
        self.held_at_next_claim: list[int] = []

    def claim(self, limit: int) -> Sweep:
        if self.batches:
            self.held_at_next_claim.append(held_elsewhere(self.batches))
        sweep = super().claim(limit)
        self.batches.append(sweep.departures.states)
        return sweep


def held_elsewhere(batches: list[list[object]]) -> int:
    """References to the last of ``batches`` besides that list's and getrefcount's own.

    (Given the list, not the batch: a Python call holds its arguments once more before 3.11.)
    """
    return sys.getrefcount(batches[-1]) - 2


def test_a_sweep_lets_go_of_a_batch_before_it_claims_the_next(clock: ManualClock) -> None:
    # Freed first, the batch's states give their memory to the next batch's: else the
    # allocator hands out fresh pages (a page fault each) for every batch.
    store = KeepingStore()
    m = ConversationExpiryManager(10, 3600, clock=clock, autostart=False, store=store)
    for i in range(SWEEP_BATCH * 3):
        m.register_conversation(f"c{i}")
    clock.advance(11)
    assert len(m.cleanup_expired()) == SWEEP_BATCH * 3
    assert len(store.batches) >= 2 and store.held_at_next_claim
    assert set(store.held_at_next_claim) == {0}


def _swept_once(clock: ManualClock) -> tuple[ConversationExpiryManager, KeepingStore]:
    store = KeepingStore()
    m = ConversationExpiryManager(10, 3600, clock=clock, autostart=False, store=store)
    m.register_conversation("a")
    clock.advance(11)
    assert m.cleanup_expired() == ["a"]
    return m, store


def test_a_sweep_keeps_its_last_states_until_the_next_sweep(clock: ManualClock) -> None:
    # Freed at once, their memory would go to whatever the process allocates until the next
    # sweep, whose states would then land on fresh pages, faulted in under the lock.
    _alive, store = _swept_once(clock)  # (the manager is what holds them)
    held = held_elsewhere(store.batches)  # (outside the assert: its rewrite holds values)
    assert held == 1


def test_the_next_sweep_lets_go_of_the_last_states_before_its_first_claim(
    clock: ManualClock,
) -> None:
    m, store = _swept_once(clock)
    m.register_conversation("b")
    clock.advance(11)
    assert m.cleanup_expired() == ["b"]
    assert store.held_at_next_claim == [0]


def test_stop_lets_go_of_the_last_sweeps_states(clock: ManualClock) -> None:
    m, store = _swept_once(clock)
    m.stop()
    held = held_elsewhere(store.batches)
    assert held == 0
