"""Contract tests (API.md "States", ConversationState): frozen, by value, UTC, active."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone

import pytest
from support import START, TTL

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationState,
    ManualClock,
)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


# ---------------------------------------------------------------------------------------------
# ConversationState
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field_name", ["id", "created_at", "last_activity", "expires_at", "active"]
)
def test_state_is_frozen(manager: ConversationExpiryManager, field_name: str) -> None:
    state = manager.register_conversation("a")
    before = getattr(state, field_name)
    with pytest.raises(AttributeError):
        setattr(state, field_name, "changed")
    with pytest.raises(AttributeError):
        delattr(state, field_name)
    assert getattr(state, field_name) == before


def test_state_rejects_new_attributes(manager: ConversationExpiryManager) -> None:
    state = manager.register_conversation("a")
    with pytest.raises(AttributeError):
        state.extra = 1  # type: ignore[attr-defined]


def test_states_compare_by_value(manager: ConversationExpiryManager, clock: ManualClock) -> None:
    a1 = manager.register_conversation("a")
    a2 = manager.get("a")
    assert a2 is not None
    assert a1 == a2
    assert not (a1 != a2)  # noqa: SIM202 - __ne__ is part of comparing by value
    assert hash(a1) == hash(a2)
    clock.advance(1)
    a3 = manager.update_activity("a")
    assert a3 != a1
    b = manager.register_conversation("b")
    assert b != a3


def test_state_timestamps_are_timezone_aware_utc(manager: ConversationExpiryManager) -> None:
    state = manager.register_conversation("a")
    for value in (state.created_at, state.last_activity, state.expires_at):
        assert isinstance(value, datetime)
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)


def test_state_reports_utc_even_when_clock_started_in_another_zone() -> None:
    start = datetime(2024, 6, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    m = ConversationExpiryManager(TTL, 3600, clock=ManualClock(start), autostart=False)
    try:
        state = m.register_conversation("a")
        assert state.created_at == start  # same instant
        assert state.created_at.utcoffset() == timedelta(0)
        assert state.created_at.hour == 12
    finally:
        m.stop(timeout=5)


def test_a_state_built_from_datetimes_equals_the_managers_snapshot(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    clock.advance(2)
    state = manager.register_conversation("a")
    built = ConversationState("a", state.created_at, state.last_activity, state.expires_at)
    assert built == state and hash(built) == hash(state)
    assert type(built) is ConversationState


def test_a_state_built_by_hand_names_the_field_that_is_not_an_aware_datetime() -> None:
    naive = datetime(2024, 1, 1)
    with pytest.raises(TypeError, match="last_activity"):
        ConversationState("a", START, naive, START)
    with pytest.raises(TypeError, match="expires_at"):
        ConversationState("a", START, START, "soon")  # type: ignore[arg-type]


def test_every_state_the_manager_hands_out_is_exactly_a_conversation_state(
    clock: ManualClock,
) -> None:
    seen: list[ConversationState] = []
    m = ConversationExpiryManager(
        TTL, 3600, clock=clock, autostart=False, on_expire=lambda s, r: seen.append(s)
    )
    states = [m.register_conversation("a"), m.update_activity("a"), m.get("a")]
    clock.advance(TTL + 1)
    m.cleanup_expired()
    states += seen
    assert len(states) == 4
    assert all(type(s) is ConversationState for s in states)
    assert seen[0].active is False


def test_a_state_survives_pickling_by_value(manager: ConversationExpiryManager) -> None:
    state = manager.register_conversation("a", metadata={"user": "u1"})
    again = pickle.loads(pickle.dumps(state))
    assert again == state and type(again) is ConversationState
    assert again.metadata == {"user": "u1"}


def test_a_pickled_state_holds_its_fields_not_the_stores_layout(
    manager: ConversationExpiryManager,
) -> None:
    # So that a state pickled by one release loads in another whose layout differs.
    state = manager.register_conversation("a", metadata={"user": "u1"})
    again = pickle.loads(pickle.dumps(state))
    rebuilt, args = state.__reduce__()
    assert rebuilt is ConversationState
    assert args == (
        "a", state.created_at, state.last_activity, state.expires_at, True, False, {"user": "u1"}
    )
    assert again.to_dict() == state.to_dict()
