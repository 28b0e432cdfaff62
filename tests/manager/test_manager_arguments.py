"""The same argument rules in every configuration, checked before anything changes."""

from __future__ import annotations

import pytest

from conversation_expiry import ConversationExpiryManager, MemoryStore


class Name(str):
    pass


@pytest.fixture(params=["default", "meaningful"])
def m(request, clock):
    meaningful = {"message"} if request.param == "meaningful" else None
    manager = ConversationExpiryManager(
        10, 3600, clock=clock, autostart=False, meaningful_activities=meaningful
    )
    yield manager
    manager.stop()


@pytest.mark.parametrize("call", ["update_activity", "ensure_conversation"])
def test_a_non_str_activity_type_is_refused_in_every_configuration(m, call):
    m.register_conversation("a")
    before = m.get("a")
    with pytest.raises(TypeError, match="activity_type"):
        getattr(m, call)("a", activity_type=123)
    with pytest.raises(TypeError, match="activity_type"):
        getattr(m, call)("new", activity_type=None)
    assert m.get("a") == before and "new" not in m


@pytest.mark.parametrize("call", ["update_activity", "ensure_conversation"])
def test_a_str_subclass_activity_type_is_accepted_in_every_configuration(m, call, clock):
    m.register_conversation("a")
    clock.advance(1)
    getattr(m, call)("a", activity_type=Name("message"))
    assert m.get("a").last_activity == clock.now()


@pytest.mark.parametrize("store", [{}, "redis://localhost", MemoryStore, object()])
def test_a_store_that_is_not_a_store_instance_is_a_type_error(store):
    with pytest.raises(TypeError, match="store"):
        ConversationExpiryManager(10, 60, store=store, autostart=False)


def test_a_store_can_serve_only_one_manager(clock):
    store = MemoryStore()
    ConversationExpiryManager(10, 60, clock=clock, store=store, autostart=False)
    with pytest.raises(RuntimeError, match="already bound"):
        ConversationExpiryManager(10, 60, clock=clock, store=store, autostart=False)


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ([("k", "v")], TypeError),
        ({1: "v"}, TypeError),
        ({"k": object()}, TypeError),
        ({"k": float("nan")}, TypeError),
        ({"k": "x" * 70_000}, ValueError),
    ],
)
def test_bad_metadata_is_refused_and_changes_nothing(m, metadata, error):
    m.register_conversation("a", metadata={"ok": 1})
    with pytest.raises(error, match="metadata"):
        m.register_conversation("a", metadata=metadata)
    with pytest.raises(error, match="metadata"):
        m.register_conversation("b", metadata=metadata)
    assert m.get("a").metadata == {"ok": 1} and "b" not in m


def test_metadata_is_kept_by_a_registration_without_it_and_replaced_by_one_with_it(m):
    m.register_conversation("a", metadata={"user": "u1"})
    assert m.register_conversation("a").metadata == {"user": "u1"}
    assert m.update_activity("a").metadata == {"user": "u1"}
    assert m.register_conversation("a", metadata={"user": "u2"}).metadata == {"user": "u2"}
    assert m.register_conversation("b").metadata == {}


def test_metadata_of_a_state_is_read_only(m):
    state = m.register_conversation("a", metadata={"user": "u1"})
    with pytest.raises(TypeError):
        state.metadata["user"] = "u2"  # type: ignore[index]
    assert m.get("a").metadata == {"user": "u1"}


def test_metadata_reaches_on_expire(clock):
    seen = []
    m = ConversationExpiryManager(
        10, 3600, clock=clock, autostart=False, on_expire=lambda s, r: seen.append(s.metadata)
    )
    m.register_conversation("a", metadata={"user": "u1"})
    m.register_conversation("b")
    clock.advance(11)
    m.cleanup_expired()
    assert sorted(map(dict, seen), key=len) == [{}, {"user": "u1"}]
