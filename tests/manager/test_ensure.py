"""ensure_conversation: touch a live conversation or start a fresh one, atomically."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from support import EVERY_STORE

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationState,
    ExpiryReason,
    ManualClock,
)

STORE_KINDS = EVERY_STORE


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def left() -> list[tuple[str, ExpiryReason]]:
    return []


@pytest.fixture
def manager(
    clock: ManualClock, left: list[tuple[str, ExpiryReason]], make_store: Any
) -> ConversationExpiryManager:
    return ConversationExpiryManager(
        10,
        60,
        clock=clock,
        autostart=False,
        on_expire=lambda s, r: left.append((s.id, r)),
        store=make_store(),
    )


def test_unknown_id_starts_fresh(manager: ConversationExpiryManager) -> None:
    state, fresh = manager.ensure_conversation("a")
    assert fresh
    assert state.id == "a"
    assert "a" in manager


def test_live_id_is_touched(manager: ConversationExpiryManager, clock: ManualClock) -> None:
    first, _ = manager.ensure_conversation("a")
    clock.advance(5)
    state, fresh = manager.ensure_conversation("a")
    assert not fresh
    assert state.created_at == first.created_at
    assert state.last_activity == clock.now()


def test_expired_id_starts_afresh_and_the_old_one_is_cleaned(
    manager: ConversationExpiryManager,
    clock: ManualClock,
    left: list[tuple[str, ExpiryReason]],
) -> None:
    old, _ = manager.ensure_conversation("a")
    cleaned: list[str] = []
    manager.add_cleanup("a", lambda: cleaned.append("old"))
    clock.advance(11)
    state, fresh = manager.ensure_conversation("a")
    assert fresh
    assert state.created_at > old.created_at
    assert cleaned == ["old"]
    assert left == [("a", ExpiryReason.EXPIRED)]


def test_a_heartbeat_does_not_slide_but_still_starts_afresh(clock: ManualClock) -> None:
    m = ConversationExpiryManager(
        10, 60, clock=clock, autostart=False, meaningful_activities={"message"}
    )
    first, _ = m.ensure_conversation("a")
    clock.advance(5)
    state, fresh = m.ensure_conversation("a", "heartbeat")
    assert not fresh
    assert state.expires_at == first.expires_at
    clock.advance(6)
    _state, fresh = m.ensure_conversation("a", "heartbeat")
    assert fresh


def test_of_racing_requests_only_one_starts_the_conversation(
    manager: ConversationExpiryManager,
) -> None:
    start = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def request() -> None:
        start.wait(5)
        _state, fresh = manager.ensure_conversation("shared")
        with lock:
            results.append(fresh)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(results) == [False] * 7 + [True]


def test_bad_id_is_refused(manager: ConversationExpiryManager) -> None:
    with pytest.raises(ValueError, match="conversation_id"):
        manager.ensure_conversation("")
    assert len(manager) == 0


def test_activity_type_must_be_a_str(manager: ConversationExpiryManager) -> None:
    manager.register_conversation("a")
    with pytest.raises(TypeError, match="activity_type"):
        manager.update_activity("a", 5)  # type: ignore[arg-type]


def test_at_capacity_a_fresh_start_evicts(
    clock: ManualClock, left: list[tuple[str, ExpiryReason]]
) -> None:
    m = ConversationExpiryManager(
        10, 60, clock=clock, autostart=False, max_conversations=1,
        on_expire=lambda s, r: left.append((s.id, r)),
    )
    m.ensure_conversation("a")
    clock.advance(1)
    state, fresh = m.ensure_conversation("b")
    assert fresh and isinstance(state, ConversationState)
    assert left == [("a", ExpiryReason.EVICTED)]


def test_in_answers_false_for_a_non_str(manager: ConversationExpiryManager) -> None:
    manager.register_conversation("1")
    assert 1 not in manager
    assert None not in manager


def test_in_refuses_an_empty_id_like_every_other_call(manager: ConversationExpiryManager) -> None:
    with pytest.raises(ValueError, match="conversation_id"):
        _ = "" in manager
