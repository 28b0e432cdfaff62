"""Bad input for the issue-5 and capacity arguments gets a clear error, and nothing changes."""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta, timezone

import pytest

from conversation_expiry import ConversationExpiryManager, ManualClock

START = datetime(2024, 1, 1, tzinfo=timezone.utc)

NOT_POSITIVE = [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, timedelta(0), timedelta(-1)]
WRONG_TYPE = ["5", b"5", True, False, [5], object(), 5j]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def make(clock):
    made: list[ConversationExpiryManager] = []

    def factory(ttl=10, **kwargs) -> ConversationExpiryManager:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("autostart", False)
        m = ConversationExpiryManager(ttl, 60, **kwargs)
        made.append(m)
        return m

    yield factory
    for m in made:
        m.stop(timeout=5)


def cleanup_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "conversation-expiry-cleanup")


# -- constructor arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["max_age", "warning_before"])
@pytest.mark.parametrize("value", NOT_POSITIVE, ids=repr)
def test_optional_durations_must_be_positive_and_finite(make, name, value):
    before = cleanup_threads()
    with pytest.raises(ValueError, match=name):
        make(**{name: value}, autostart=True)
    assert cleanup_threads() == before


@pytest.mark.parametrize("name", ["max_age", "warning_before"])
@pytest.mark.parametrize("value", WRONG_TYPE, ids=repr)
def test_optional_durations_of_a_wrong_type(make, name, value):
    with pytest.raises(TypeError, match=name):
        make(**{name: value})


@pytest.mark.parametrize(
    "ttl, warning_before",
    [(10, 10), (10, 10.0), (10, 11), (10, timedelta(seconds=10)), (timedelta(minutes=1), 60)],
)
def test_warning_before_must_be_less_than_the_ttl(make, ttl, warning_before):
    before = cleanup_threads()
    with pytest.raises(ValueError, match="warning_before"):
        make(ttl, warning_before=warning_before, on_warning=print, autostart=True)
    assert cleanup_threads() == before


def test_warning_before_just_under_the_ttl_is_accepted(make):
    m = make(10, warning_before=9.999, on_warning=print)
    assert m.warning_before == pytest.approx(9.999)


def test_max_age_may_be_shorter_than_the_ttl(make, clock):
    m = make(10, max_age=3)
    assert m.register_conversation("c").expires_at == START + timedelta(seconds=3)


@pytest.mark.parametrize("value", [0, -1])
def test_max_conversations_must_be_at_least_one(make, value):
    with pytest.raises(ValueError, match="max_conversations"):
        make(max_conversations=value)


@pytest.mark.parametrize("value", [True, 2.0, 2.5, "3", [3]], ids=repr)
def test_max_conversations_of_a_wrong_type(make, value):
    with pytest.raises(TypeError, match="max_conversations"):
        make(max_conversations=value)


@pytest.mark.parametrize("value", [1, "print", object()], ids=repr)
def test_on_warning_must_be_callable(make, value):
    with pytest.raises(TypeError, match="on_warning"):
        make(warning_before=3, on_warning=value)


@pytest.mark.parametrize("value", ["message", 5, object(), [1], {"message", 2}], ids=repr)
def test_meaningful_activities_must_be_names_or_a_predicate(make, value):
    with pytest.raises(TypeError, match="meaningful_activities"):
        make(meaningful_activities=value)


# -- per-conversation ttl ------------------------------------------------------------------------


@pytest.mark.parametrize("value", NOT_POSITIVE, ids=repr)
def test_a_per_conversation_ttl_must_be_positive_and_finite(make, value):
    events = []
    m = make(on_expire=lambda s, r: events.append((s.id, r)))
    with pytest.raises(ValueError, match="ttl"):
        m.register_conversation("new", ttl=value)
    assert "new" not in m and len(m) == 0
    live = m.register_conversation("live")
    with pytest.raises(ValueError, match="ttl"):
        m.register_conversation("live", ttl=value)
    assert m.get("live") == live and events == []


@pytest.mark.parametrize("value", WRONG_TYPE, ids=repr)
def test_a_per_conversation_ttl_of_a_wrong_type(make, clock, value):
    m = make()
    with pytest.raises(TypeError, match="ttl"):
        m.register_conversation("new", ttl=value)
    assert "new" not in m
    live = m.register_conversation("live")
    clock.advance(1)
    with pytest.raises(TypeError, match="ttl"):
        m.register_conversation("live", ttl=value)
    assert m.get("live") == live  # not even counted as activity


def test_a_per_conversation_ttl_must_be_passed_by_keyword(make):
    m = make()
    with pytest.raises(TypeError):
        m.register_conversation("c", 5)  # type: ignore[misc]
    assert "c" not in m


@pytest.mark.parametrize("bad_id, error", [(5, TypeError), ("", ValueError), (None, TypeError)])
def test_a_bad_id_with_a_ttl_names_the_id(make, bad_id, error):
    m = make()
    with pytest.raises(error, match="conversation_id"):
        m.register_conversation(bad_id, ttl=5)
    with pytest.raises(error, match="conversation_id"):
        m.update_activity(bad_id, "heartbeat")
    with pytest.raises(error, match="conversation_id"):
        m.ensure_conversation(bad_id)
    assert len(m) == 0


def test_a_per_conversation_ttl_within_the_warning_window(make, clock):
    """A ttl not above warning_before: rejected naming ttl, or accepted and warned at once."""
    warned = []
    m = make(10, warning_before=3, on_warning=warned.append)
    try:
        m.register_conversation("c", ttl=2)
    except ValueError as exc:
        assert "ttl" in str(exc)
        assert "c" not in m
    else:
        m.cleanup_expired()
        assert [s.id for s in warned] == ["c"]
