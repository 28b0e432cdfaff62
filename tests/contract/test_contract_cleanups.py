"""Contract tests (API.md guarantee 1, add_cleanup, stop(cleanup_remaining=True)): cleanups run
exactly once, with the reason, last attached first. Time is driven with ManualClock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from support import EVERY_STORE, START, TTL, Recorder

from conversation_expiry import (
    ConversationExpiryManager,
    ExpiryReason,
    ManualClock,
)

STORE_KINDS = EVERY_STORE


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


# ---------------------------------------------------------------------------------------------
# cleanups: exactly once (guarantee 1), last attached first
# ---------------------------------------------------------------------------------------------


def _leave_by_end(m: ConversationExpiryManager, clock: ManualClock) -> None:
    assert m.end_conversation("a") is True


def _leave_by_sweep(m: ConversationExpiryManager, clock: ManualClock) -> None:
    clock.advance(TTL + 1)
    assert m.cleanup_expired() == ["a"]


def _leave_by_register_over_expired(m: ConversationExpiryManager, clock: ManualClock) -> None:
    clock.advance(TTL + 1)
    m.register_conversation("a")


def _leave_by_stop_cleanup_remaining(m: ConversationExpiryManager, clock: ManualClock) -> None:
    m.stop(timeout=5, cleanup_remaining=True)


LEAVE = {
    "end": (_leave_by_end, ExpiryReason.ENDED),
    "sweep": (_leave_by_sweep, ExpiryReason.EXPIRED),
    "register_over_expired": (_leave_by_register_over_expired, ExpiryReason.EXPIRED),
    "stop_cleanup_remaining": (_leave_by_stop_cleanup_remaining, ExpiryReason.SHUTDOWN),
}


@pytest.mark.parametrize("path", list(LEAVE))
def test_cleanups_run_exactly_once_with_the_reason(
    manager: ConversationExpiryManager, clock: ManualClock, recorder: Recorder, path: str
) -> None:
    leave, reason = LEAVE[path]
    if path == "stop_cleanup_remaining" and manager.store.shared:
        pytest.skip("a shared store keeps its conversations at stop(): guarantee 13")
    ran: list[str] = []
    manager.register_conversation("a")
    manager.add_cleanup("a", lambda: ran.append("a"))
    leave(manager, clock)
    assert ran == ["a"]
    assert recorder.reasons("a") == [reason]
    # every other way of removing it afterwards finds nothing more to run
    if "a" in manager:  # the fresh conversation of register_over_expired
        manager.end_conversation("a")
    clock.advance(TTL + 1)
    manager.cleanup_expired()
    manager.stop(timeout=5, cleanup_remaining=True)
    assert ran.count("a") == 1
    assert recorder.reasons("a").count(reason) == 1
    assert recorder.reasons("a")[0] == reason


@pytest.mark.parametrize("path", list(LEAVE))
def test_cleanups_run_last_attached_first(
    manager: ConversationExpiryManager, clock: ManualClock, path: str
) -> None:
    leave, _ = LEAVE[path]
    ran: list[int] = []
    manager.register_conversation("a")
    for i in range(1, 6):
        manager.add_cleanup("a", lambda i=i: ran.append(i))
    leave(manager, clock)
    assert ran == [5, 4, 3, 2, 1]


@pytest.mark.parametrize("path", list(LEAVE))
def test_on_expire_gets_inactive_snapshot(
    manager: ConversationExpiryManager, clock: ManualClock, recorder: Recorder, path: str
) -> None:
    leave, _ = LEAVE[path]
    if path == "stop_cleanup_remaining" and manager.store.shared:
        pytest.skip("a shared store keeps its conversations at stop(): guarantee 13")
    manager.register_conversation("a")
    leave(manager, clock)
    (cid, _, state), *_ = recorder.calls
    assert cid == "a"
    assert state.id == "a"
    assert state.active is False
    assert state.created_at == at(0)
    assert state.last_activity == at(0)
    assert state.expires_at == at(TTL)


def test_stop_cleanup_remaining_cleans_every_live_conversation_with_shutdown(
    manager: ConversationExpiryManager, recorder: Recorder
) -> None:
    if manager.store.shared:
        pytest.skip("a shared store keeps its conversations at stop(): guarantee 13")
    ids = [f"c{i}" for i in range(300)]
    for cid in ids:
        manager.register_conversation(cid)
    manager.stop(timeout=5, cleanup_remaining=True)
    assert sorted(i for i, _, _ in recorder.calls) == sorted(ids)
    assert {r for _, r, _ in recorder.calls} == {ExpiryReason.SHUTDOWN}
    assert len(manager) == 0


def test_stop_cleanup_remaining_also_cleans_past_deadline_conversations_once(
    manager: ConversationExpiryManager, clock: ManualClock, recorder: Recorder
) -> None:
    if manager.store.shared:
        pytest.skip("a shared store keeps its conversations at stop(): guarantee 13")
    manager.register_conversation("old")
    clock.advance(TTL + 1)
    manager.register_conversation("live")
    manager.stop(timeout=5, cleanup_remaining=True)
    assert recorder.reasons("live") == [ExpiryReason.SHUTDOWN]
    assert len(recorder.reasons("old")) == 1
    assert recorder.reasons("old")[0] in (ExpiryReason.EXPIRED, ExpiryReason.SHUTDOWN)


def test_stop_without_cleanup_remaining_runs_no_cleanups(
    manager: ConversationExpiryManager, recorder: Recorder
) -> None:
    ran: list[str] = []
    manager.register_conversation("a")
    manager.add_cleanup("a", lambda: ran.append("a"))
    manager.stop(timeout=5)
    assert ran == []
    assert recorder.calls == []
    assert "a" in manager  # the synchronous calls keep working after stop


def test_cleanups_of_one_conversation_do_not_run_for_another(
    manager: ConversationExpiryManager,
) -> None:
    ran: list[str] = []
    manager.register_conversation("a")
    manager.register_conversation("b")
    manager.add_cleanup("a", lambda: ran.append("a"))
    manager.add_cleanup("b", lambda: ran.append("b"))
    manager.end_conversation("b")
    assert ran == ["b"]
    manager.end_conversation("a")
    assert ran == ["b", "a"]


def test_add_cleanup_returns_none(manager: ConversationExpiryManager) -> None:
    manager.register_conversation("a")
    assert manager.add_cleanup("a", lambda: None) is None


def test_stop_cleanup_remaining_with_a_shared_store_runs_only_this_process_s_cleanups(
    manager: ConversationExpiryManager, clock: ManualClock, recorder: Recorder
) -> None:
    if not manager.store.shared:
        pytest.skip("guarantee 13 is about shared stores")
    ran: list[str] = []
    for cid in ("a", "b"):
        manager.register_conversation(cid)
    manager.add_cleanup("a", lambda: ran.append("a"))
    manager.stop(timeout=5, cleanup_remaining=True)
    assert ran == ["a"]
    assert recorder.calls == []  # the conversations did not leave: no on_expire
    assert len(manager) == 2 and "a" in manager and "b" in manager
    clock.advance(TTL + 1)
    assert sorted(manager.cleanup_expired()) == ["a", "b"]
    assert ran == ["a"]  # released once, at stop
