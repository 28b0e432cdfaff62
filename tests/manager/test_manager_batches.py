"""How many conversations a sweep claims at a time: batches sized by how long the last one took."""

from __future__ import annotations

import pytest

import conversation_expiry._manager as manager_module
from conversation_expiry import ConversationExpiryManager, ManualClock, MemoryStore
from conversation_expiry._batches import BATCH_SECONDS, next_batch
from conversation_expiry._manager import SWEEP_BATCH


class ClaimLog(MemoryStore):
    """The in-memory store, noting each limit a sweep asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.limits: list[int] = []

    def claim(self, limit: int):  # type: ignore[no-untyped-def]
        self.limits.append(limit)
        return super().claim(limit)


def sweep_with_callables_taking(
    seconds: float, count: int, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> tuple[ConversationExpiryManager, ClaimLog]:
    """``count`` past-due conversations swept by ``on_expire`` that takes ``seconds`` each (on a
    hand-moved timer the manager reads for batches)."""
    timer = [0.0]
    monkeypatch.setattr(manager_module, "PERF_COUNTER", (lambda: timer[0],))

    def on_expire(state: object, reason: object) -> None:
        timer[0] += seconds

    store = ClaimLog()
    m = ConversationExpiryManager(
        10, 60, clock=clock, on_expire=on_expire, store=store, autostart=False
    )
    for i in range(count):
        m.register_conversation(f"c{i}")
    clock.advance(11)
    return m, store


def test_quick_batches_grow_to_four_times_the_first(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    m, store = sweep_with_callables_taking(0.0, SWEEP_BATCH * 10, clock, monkeypatch)
    assert len(m.cleanup_expired()) == SWEEP_BATCH * 10
    assert store.limits[:3] == [SWEEP_BATCH, SWEEP_BATCH * 4, SWEEP_BATCH * 4]


def test_slow_callables_shrink_the_batches_so_stop_waits_less(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    m, store = sweep_with_callables_taking(0.001, SWEEP_BATCH * 2, clock, monkeypatch)
    assert len(m.cleanup_expired()) == SWEEP_BATCH * 2
    assert store.limits[:3] == [SWEEP_BATCH, SWEEP_BATCH // 16, SWEEP_BATCH // 16]


def test_a_batch_holds_about_what_took_the_batch_time_in_the_last_one(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    per = BATCH_SECONDS / 100  # a hundred conversations a batch
    m, store = sweep_with_callables_taking(per, SWEEP_BATCH * 2, clock, monkeypatch)
    m.cleanup_expired()
    assert store.limits[0] == SWEEP_BATCH and 99 <= store.limits[1] <= 100


def test_the_next_sweep_starts_with_the_size_the_last_one_ended_with(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    m, store = sweep_with_callables_taking(0.001, SWEEP_BATCH, clock, monkeypatch)
    m.cleanup_expired()
    for i in range(10):
        m.register_conversation(f"later{i}")
    clock.advance(11)
    store.limits.clear()
    assert len(m.cleanup_expired()) == 10
    assert store.limits[0] == SWEEP_BATCH // 16


def test_a_batch_that_removed_nothing_leaves_the_size_as_it_was() -> None:
    assert next_batch(256, 512, 5.0, 0) == 512


def test_a_batch_on_a_timer_too_coarse_to_see_it_counts_as_quick() -> None:
    assert next_batch(256, 256, 0.0, 256) == 1024


def test_a_small_base_still_claims_one_at_least() -> None:
    assert next_batch(3, 3, 10.0, 3) == 1
    assert next_batch(3, 3, 0.0, 3) == 12
