"""Contract tests (API.md "The manager" table, guarantee 5, "Details"): the synchronous calls.

Time is driven with ManualClock; no background thread runs here (autostart=False).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from support import EVERY_STORE, START, TTL, Recorder

from conversation_expiry import (
    ConversationExpiredError,
    ConversationExpiryManager,
    ConversationNotFoundError,
    ConversationState,
    ExpiryReason,
    ManualClock,
)

STORE_KINDS = EVERY_STORE

def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


# ---------------------------------------------------------------------------------------------
# the import surface
# ---------------------------------------------------------------------------------------------


def test_expiry_reason_has_the_four_contract_members() -> None:
    for name in ("EXPIRED", "ENDED", "EVICTED", "SHUTDOWN"):
        assert isinstance(getattr(ExpiryReason, name), ExpiryReason)
    assert (
        len({ExpiryReason.EXPIRED, ExpiryReason.ENDED, ExpiryReason.EVICTED, ExpiryReason.SHUTDOWN})
        == 4
    )


# ---------------------------------------------------------------------------------------------
# register / update / get / is_expired / end
# ---------------------------------------------------------------------------------------------


def test_register_returns_active_state_with_times_from_the_clock(
    manager: ConversationExpiryManager,
) -> None:
    state = manager.register_conversation("a")
    assert isinstance(state, ConversationState)
    assert state.id == "a"
    assert state.active is True
    assert state.created_at == at(0)
    assert state.last_activity == at(0)
    assert state.expires_at == at(TTL)


def test_update_activity_slides_expiry_to_now_plus_ttl_and_keeps_created_at(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    manager.register_conversation("a")
    clock.advance(4)
    state = manager.update_activity("a")
    assert state.created_at == at(0)
    assert state.last_activity == at(4)
    assert state.expires_at == at(4 + TTL)
    assert state.active is True


def test_activity_less_than_ttl_ago_keeps_the_conversation_alive(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    manager.register_conversation("a")
    for _ in range(5):
        clock.advance(TTL - 0.5)
        manager.update_activity("a")
        assert manager.cleanup_expired() == []
    clock.advance(TTL - 0.5)
    assert manager.cleanup_expired() == []
    assert "a" in manager


def test_get_returns_snapshot_of_live_conversation(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    registered = manager.register_conversation("a")
    assert manager.get("a") == registered
    clock.advance(3)
    updated = manager.update_activity("a")
    assert manager.get("a") == updated


def test_get_returns_none_for_unknown_ended_and_past_deadline(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    assert manager.get("unknown") is None
    manager.register_conversation("ended")
    manager.end_conversation("ended")
    assert manager.get("ended") is None
    manager.register_conversation("old")
    clock.advance(TTL + 1)
    assert manager.get("old") is None  # before any sweep


def test_is_expired_true_for_unknown_and_ended(manager: ConversationExpiryManager) -> None:
    assert manager.is_expired("unknown") is True
    manager.register_conversation("a")
    assert manager.is_expired("a") is False
    manager.end_conversation("a")
    assert manager.is_expired("a") is True


def test_is_expired_true_past_deadline_before_any_sweep(
    manager: ConversationExpiryManager, clock: ManualClock, recorder: Recorder
) -> None:
    manager.register_conversation("a")
    clock.advance(TTL + 1)
    assert manager.is_expired("a") is True
    assert recorder.calls == []  # nothing swept it yet


def test_expired_means_strictly_after_the_deadline(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    manager.register_conversation("a")
    clock.advance(TTL)  # now == expires_at: not expired
    assert manager.is_expired("a") is False
    assert "a" in manager
    assert manager.get("a") is not None
    assert manager.cleanup_expired() == []
    clock.advance(0.001)
    assert manager.is_expired("a") is True
    assert manager.cleanup_expired() == ["a"]


def test_update_activity_exactly_at_the_deadline_still_succeeds(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    manager.register_conversation("a")
    clock.advance(TTL)
    state = manager.update_activity("a")
    assert state.expires_at == at(2 * TTL)


def test_end_conversation_removes_now_and_runs_cleanups_with_reason_ended(
    manager: ConversationExpiryManager, recorder: Recorder
) -> None:
    ran: list[str] = []
    manager.register_conversation("a")
    manager.add_cleanup("a", lambda: ran.append("cleanup"))
    assert manager.end_conversation("a") is True
    # before returning, in this thread
    assert ran == ["cleanup"]
    assert recorder.reasons("a") == [ExpiryReason.ENDED]
    assert "a" not in manager
    assert manager.get("a") is None


def test_end_conversation_returns_false_when_not_live(
    manager: ConversationExpiryManager, recorder: Recorder
) -> None:
    assert manager.end_conversation("never") is False
    manager.register_conversation("a")
    assert manager.end_conversation("a") is True
    assert manager.end_conversation("a") is False
    assert recorder.reasons("a") == [ExpiryReason.ENDED]
    assert recorder.reasons("never") == []


def test_end_conversation_past_deadline_returns_false_and_cleans_once_as_expired(
    manager: ConversationExpiryManager, clock: ManualClock, recorder: Recorder
) -> None:
    ran: list[str] = []
    manager.register_conversation("a")
    manager.add_cleanup("a", lambda: ran.append("a"))
    clock.advance(TTL + 1)
    assert manager.end_conversation("a") is False
    manager.cleanup_expired()
    manager.end_conversation("a")
    assert ran == ["a"]
    assert recorder.reasons("a") == [ExpiryReason.EXPIRED]


# ---------------------------------------------------------------------------------------------
# cleanup_expired / len / in
# ---------------------------------------------------------------------------------------------


def test_cleanup_expired_returns_only_the_ids_it_expired(
    manager: ConversationExpiryManager, clock: ManualClock, recorder: Recorder
) -> None:
    for cid in ("a", "b", "c"):
        manager.register_conversation(cid)
    clock.advance(6)
    manager.update_activity("b")
    clock.advance(5)  # a and c past deadline (11 > 10); b not (5 <= 10)
    expired = manager.cleanup_expired()
    assert isinstance(expired, list)
    assert sorted(expired) == ["a", "c"]
    assert all(isinstance(cid, str) for cid in expired)
    assert sorted(i for i, _, _ in recorder.calls) == ["a", "c"]
    assert {r for _, r, _ in recorder.calls} == {ExpiryReason.EXPIRED}
    assert manager.cleanup_expired() == []
    assert "b" in manager


def test_cleanup_expired_with_nothing_to_do_returns_empty_list(
    manager: ConversationExpiryManager,
) -> None:
    assert manager.cleanup_expired() == []
    manager.register_conversation("a")
    assert manager.cleanup_expired() == []


def test_len_and_in_exclude_past_deadline_conversations_before_sweep(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    manager.register_conversation("a")
    manager.register_conversation("b")
    assert len(manager) == 2
    assert "a" in manager and "b" in manager
    clock.advance(6)
    manager.update_activity("b")
    clock.advance(5)
    assert len(manager) == 1
    assert "a" not in manager
    assert "b" in manager
    clock.advance(10)
    assert len(manager) == 0
    assert "b" not in manager


def test_len_and_in_exclude_ended_and_unknown(manager: ConversationExpiryManager) -> None:
    manager.register_conversation("a")
    manager.register_conversation("b")
    manager.end_conversation("a")
    assert len(manager) == 1
    assert "a" not in manager
    assert "zzz" not in manager


def test_len_counts_many_conversations(manager: ConversationExpiryManager) -> None:
    for i in range(500):
        manager.register_conversation(f"c{i}")
    assert len(manager) == 500
    manager.register_conversation("c0")  # re-register is not a new conversation
    assert len(manager) == 500


def test_sweep_of_many_conversations_expires_all_exactly_once(
    manager: ConversationExpiryManager, clock: ManualClock, recorder: Recorder
) -> None:
    ids = [f"c{i}" for i in range(1000)]
    for cid in ids:
        manager.register_conversation(cid)
    clock.advance(TTL + 1)
    assert sorted(manager.cleanup_expired()) == sorted(ids)
    assert sorted(i for i, _, _ in recorder.calls) == sorted(ids)
    assert len(manager) == 0


# ---------------------------------------------------------------------------------------------
# re-registering (guarantee 5 and the table)
# ---------------------------------------------------------------------------------------------


def test_register_of_live_id_counts_as_activity_and_keeps_created_at_and_cleanups(
    manager: ConversationExpiryManager, clock: ManualClock, recorder: Recorder
) -> None:
    ran: list[str] = []
    manager.register_conversation("a")
    manager.add_cleanup("a", lambda: ran.append("old"))
    clock.advance(7)
    state = manager.register_conversation("a")
    assert state.created_at == at(0)
    assert state.last_activity == at(7)
    assert state.expires_at == at(7 + TTL)
    clock.advance(TTL - 1)  # past the first deadline, within the slid one
    assert manager.cleanup_expired() == []
    assert recorder.calls == []
    assert manager.end_conversation("a") is True
    assert ran == ["old"]  # the cleanup attached before the re-register still runs, once


def test_register_of_past_deadline_id_starts_fresh_and_cleans_old_once(
    manager: ConversationExpiryManager, clock: ManualClock, recorder: Recorder
) -> None:
    ran: list[str] = []
    manager.register_conversation("a")
    manager.add_cleanup("a", lambda: ran.append("old"))
    clock.advance(TTL + 1)
    state = manager.register_conversation("a")  # before any sweep
    assert state.created_at == at(TTL + 1)
    assert state.last_activity == at(TTL + 1)
    assert state.active is True
    manager.cleanup_expired()  # must not clean the old one a second time
    assert ran == ["old"]
    assert recorder.reasons("a") == [ExpiryReason.EXPIRED]
    assert recorder.calls[0][2].created_at == at(0)  # the snapshot of the old conversation
    manager.end_conversation("a")
    assert ran == ["old"]  # no old cleanups on the fresh conversation
    assert recorder.reasons("a") == [ExpiryReason.EXPIRED, ExpiryReason.ENDED]


def test_update_activity_never_revives_a_past_deadline_conversation(
    manager: ConversationExpiryManager, clock: ManualClock, recorder: Recorder
) -> None:
    manager.register_conversation("a")
    clock.advance(TTL + 1)
    for _ in range(3):
        with pytest.raises(ConversationExpiredError):
            manager.update_activity("a")
    assert manager.is_expired("a")
    assert "a" not in manager
    assert manager.get("a") is None
    assert manager.cleanup_expired() == ["a"]
    assert recorder.reasons("a") == [ExpiryReason.EXPIRED]
    with pytest.raises(ConversationNotFoundError):
        manager.update_activity("a")


def test_register_after_sweep_starts_fresh(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    manager.register_conversation("a")
    clock.advance(TTL + 1)
    manager.cleanup_expired()
    state = manager.register_conversation("a")
    assert state.created_at == at(TTL + 1)
    assert "a" in manager
