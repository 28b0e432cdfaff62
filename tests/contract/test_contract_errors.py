"""Contract tests (API.md guarantee 6, "Errors"): bad input gets a clear error, changes nothing.

Black-box: only the public import surface is used.
"""

from __future__ import annotations

import pytest
from support import TTL

from conversation_expiry import (
    ConversationExpiredError,
    ConversationExpiryError,
    ConversationExpiryManager,
    ConversationNotFoundError,
    ManualClock,
)


def _snapshot(m: ConversationExpiryManager, ids: list[str]) -> tuple:
    return (len(m), tuple(m.get(cid) for cid in ids))


# ---------------------------------------------------------------------------------------------
# the exception hierarchy
# ---------------------------------------------------------------------------------------------


def test_error_hierarchy_matches_the_contract() -> None:
    assert issubclass(ConversationExpiryError, Exception)
    assert issubclass(ConversationNotFoundError, ConversationExpiryError)
    assert issubclass(ConversationNotFoundError, KeyError)
    assert issubclass(ConversationExpiredError, ConversationNotFoundError)
    assert issubclass(ConversationExpiredError, KeyError)


# ---------------------------------------------------------------------------------------------
# conversation ids
# ---------------------------------------------------------------------------------------------

# Every call that takes an id; each lambda takes (manager, cid).
ID_CALLS = {
    "register_conversation": lambda m, cid: m.register_conversation(cid),
    "update_activity": lambda m, cid: m.update_activity(cid),
    "is_expired": lambda m, cid: m.is_expired(cid),
    "get": lambda m, cid: m.get(cid),
    "end_conversation": lambda m, cid: m.end_conversation(cid),
    "add_cleanup": lambda m, cid: m.add_cleanup(cid, lambda: None),
}

NON_STR_IDS = [
    pytest.param(None, "None", id="None"),
    pytest.param(123, "123", id="int"),
    pytest.param(4.5, "4.5", id="float"),
    pytest.param(b"abc", "b'abc'", id="bytes"),
    pytest.param(["a"], "['a']", id="list"),
    pytest.param(True, "True", id="bool"),
]


@pytest.mark.parametrize("call", list(ID_CALLS), ids=list(ID_CALLS))
@pytest.mark.parametrize(("bad_id", "shown"), NON_STR_IDS)
def test_non_str_id_raises_type_error_naming_conversation_id_and_showing_it(
    manager: ConversationExpiryManager, call: str, bad_id: object, shown: str
) -> None:
    with pytest.raises(TypeError) as info:
        ID_CALLS[call](manager, bad_id)
    message = str(info.value)
    assert "conversation_id" in message
    assert shown in message


@pytest.mark.parametrize("call", list(ID_CALLS), ids=list(ID_CALLS))
def test_empty_id_raises_value_error_naming_conversation_id(
    manager: ConversationExpiryManager, call: str
) -> None:
    with pytest.raises(ValueError) as info:
        ID_CALLS[call](manager, "")
    assert "conversation_id" in str(info.value)
    # not a lookup failure dressed up as a ValueError
    assert not isinstance(info.value, ConversationExpiryError)


@pytest.mark.parametrize("call", list(ID_CALLS), ids=list(ID_CALLS))
@pytest.mark.parametrize("bad_id", [123, "", None])
def test_bad_id_changes_nothing(
    manager: ConversationExpiryManager, clock: ManualClock, call: str, bad_id: object
) -> None:
    ran: list[str] = []
    manager.register_conversation("keep")
    manager.add_cleanup("keep", lambda: ran.append("keep"))
    before = _snapshot(manager, ["keep"])
    with pytest.raises((TypeError, ValueError)):
        ID_CALLS[call](manager, bad_id)
    assert _snapshot(manager, ["keep"]) == before
    assert ran == []
    # and the manager still works normally afterwards
    clock.advance(TTL + 1)
    assert manager.cleanup_expired() == ["keep"]
    assert ran == ["keep"]


@pytest.mark.parametrize("bad_id", [123, None, b"x", 1.5, object(), ("a",)])
def test_in_answers_false_for_non_str_instead_of_raising(
    manager: ConversationExpiryManager, bad_id: object
) -> None:
    manager.register_conversation("123")
    assert (bad_id in manager) is False


def test_str_subclass_id_is_accepted(manager: ConversationExpiryManager) -> None:
    class Cid(str):
        pass

    manager.register_conversation(Cid("abc"))
    assert "abc" in manager
    assert manager.get("abc") is not None
    assert manager.update_activity(Cid("abc")).id == "abc"


def test_str_subclass_id_is_the_str_it_holds_whatever_its_str_says(
    manager: ConversationExpiryManager,
) -> None:
    class Cid(str):
        def __str__(self) -> str:
            return "other"

    state = manager.register_conversation(Cid("abc"))
    assert type(state.id) is str and state.id == "abc"
    assert "abc" in manager and "other" not in manager


# ---------------------------------------------------------------------------------------------
# NotFound vs Expired
# ---------------------------------------------------------------------------------------------


def test_update_activity_on_never_registered_id_raises_not_found_not_expired(
    manager: ConversationExpiryManager,
) -> None:
    with pytest.raises(ConversationNotFoundError) as info:
        manager.update_activity("ghost")
    assert not isinstance(info.value, ConversationExpiredError)
    assert "ghost" in str(info.value)


def test_update_activity_on_ended_id_raises_not_found_not_expired(
    manager: ConversationExpiryManager,
) -> None:
    manager.register_conversation("a")
    assert manager.end_conversation("a") is True
    with pytest.raises(ConversationNotFoundError) as info:
        manager.update_activity("a")
    assert not isinstance(info.value, ConversationExpiredError)


def test_update_activity_on_swept_id_raises_not_found_not_expired(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    manager.register_conversation("a")
    clock.advance(TTL + 1)
    assert manager.cleanup_expired() == ["a"]
    with pytest.raises(ConversationNotFoundError) as info:
        manager.update_activity("a")
    assert not isinstance(info.value, ConversationExpiredError)


def test_update_activity_past_deadline_before_sweep_raises_expired(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    manager.register_conversation("a")
    clock.advance(TTL + 0.5)
    with pytest.raises(ConversationExpiredError) as info:
        manager.update_activity("a")
    assert "a" in str(info.value)


def test_not_found_error_can_be_caught_as_key_error(manager: ConversationExpiryManager) -> None:
    with pytest.raises(KeyError):
        manager.update_activity("ghost")


# ---------------------------------------------------------------------------------------------
# add_cleanup errors
# ---------------------------------------------------------------------------------------------


def test_add_cleanup_on_unknown_id_raises_not_found_and_never_runs(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    ran: list[int] = []
    with pytest.raises(ConversationNotFoundError) as info:
        manager.add_cleanup("ghost", lambda: ran.append(1))
    assert not isinstance(info.value, ConversationExpiredError)
    # registering the id later must not pick the rejected callable up
    manager.register_conversation("ghost")
    manager.end_conversation("ghost")
    assert ran == []


def test_add_cleanup_on_ended_id_raises_not_found_and_never_runs(
    manager: ConversationExpiryManager,
) -> None:
    ran: list[int] = []
    manager.register_conversation("a")
    manager.end_conversation("a")
    with pytest.raises(ConversationNotFoundError) as info:
        manager.add_cleanup("a", lambda: ran.append(1))
    assert not isinstance(info.value, ConversationExpiredError)
    manager.register_conversation("a")
    manager.end_conversation("a")
    assert ran == []


def test_add_cleanup_past_deadline_raises_expired_and_never_runs(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    ran: list[str] = []
    manager.register_conversation("a")
    manager.add_cleanup("a", lambda: ran.append("attached-while-live"))
    clock.advance(TTL + 1)
    with pytest.raises(ConversationExpiredError):
        manager.add_cleanup("a", lambda: ran.append("rejected"))
    assert manager.cleanup_expired() == ["a"]
    assert ran == ["attached-while-live"]


@pytest.mark.parametrize("not_callable", [None, 42, "fn", [lambda: None]])
def test_add_cleanup_with_non_callable_raises_type_error_and_attaches_nothing(
    manager: ConversationExpiryManager, not_callable: object
) -> None:
    manager.register_conversation("a")
    before = manager.get("a")
    with pytest.raises(TypeError):
        manager.add_cleanup("a", not_callable)  # type: ignore[arg-type]
    assert manager.get("a") == before
    # ending runs the (empty) cleanups without tripping over a bogus entry
    assert manager.end_conversation("a") is True
