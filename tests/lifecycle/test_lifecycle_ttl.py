"""Issue 5 features, driven with a ManualClock: per-conversation TTL, maximum age (and their
combinations with warnings), ensure_conversation. Meaningful activity and warnings are in
test_lifecycle_features.py.

Capacity eviction is in test_lifecycle_capacity.py, argument validation in
test_lifecycle_validation.py, callbacks and the background thread in test_lifecycle_threads.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from support import EVERY_STORE, at

from conversation_expiry import (
    ConversationExpiredError,
    ExpiryReason,
)

# -- per-conversation TTL -----------------------------------------------------------------------


STORE_KINDS = EVERY_STORE

def test_a_per_conversation_ttl_shorter_than_the_default(make, clock, rec):
    m = make(ttl=10)
    m.register_conversation("short", ttl=2)
    m.register_conversation("default")
    assert m.get("short").expires_at == at(2)
    clock.advance(1)
    assert m.update_activity("short").expires_at == at(3)
    clock.advance(2)  # t=3: exactly its deadline
    assert "short" in m and len(m) == 2
    clock.advance(0.5)
    assert m.is_expired("short") and "short" not in m and len(m) == 1
    assert not m.is_expired("default")
    assert m.cleanup_expired() == ["short"]
    assert rec.expired == [("short", ExpiryReason.EXPIRED)]
    assert rec.expired_states[0].expires_at == at(3)


def test_a_per_conversation_ttl_longer_than_the_default(make, clock, rec):
    m = make(ttl=10)
    m.register_conversation("long", ttl=timedelta(seconds=30))
    m.register_conversation("default")
    clock.advance(20)
    assert m.cleanup_expired() == ["default"]
    assert "long" in m and m.get("long").expires_at == at(30)
    assert m.update_activity("long").expires_at == at(50)  # slides by its own TTL
    clock.advance(30)
    assert "long" in m
    clock.advance(0.5)
    assert m.cleanup_expired() == ["long"]
    assert rec.expired == [("default", ExpiryReason.EXPIRED), ("long", ExpiryReason.EXPIRED)]


def test_re_registering_a_live_conversation_with_a_ttl_changes_it(make, clock):
    m = make(ttl=10)
    m.register_conversation("c", ttl=30)
    clock.advance(5)
    state = m.register_conversation("c", ttl=2)
    assert (state.created_at, state.last_activity, state.expires_at) == (at(0), at(5), at(7))
    assert m.update_activity("c").expires_at == at(7)
    clock.advance(2.5)
    assert m.is_expired("c")
    assert m.cleanup_expired() == ["c"]


def test_an_expired_conversation_registered_again_gets_the_default_ttl(make, clock, rec):
    m = make(ttl=10)
    m.register_conversation("c", ttl=2)
    m.add_cleanup("c", lambda: rec.expired.append(("c", "cleanup")))
    clock.advance(3)
    state = m.register_conversation("c")
    assert (state.created_at, state.expires_at) == (at(3), at(13))
    assert rec.expired == [("c", "cleanup"), ("c", ExpiryReason.EXPIRED)]


def test_per_conversation_ttls_with_warnings(make, clock, rec):
    m = make(ttl=10, warning_before=3)
    m.register_conversation("long", ttl=20)  # window opens at 17
    m.register_conversation("short", ttl=5)  # window opens at 2
    clock.advance(2)
    m.cleanup_expired()
    assert rec.warned_ids == ["short"]
    clock.advance(14.5)
    assert m.cleanup_expired() == ["short"]
    assert rec.warned_ids == ["short"]
    clock.advance(0.5)
    m.cleanup_expired()
    assert rec.warned_ids == ["short", "long"]


# -- maximum age --------------------------------------------------------------------------------


def test_max_age_reached_while_active(make, clock, rec):
    m = make(ttl=10, max_age=5)
    state = m.register_conversation("c")
    assert state.expires_at == at(5)
    for t in range(1, 6):
        clock.advance(1)
        state = m.update_activity("c")
        assert state.last_activity == at(t) and state.expires_at == at(5)
    assert "c" in m  # t=5: exactly the cap
    clock.advance(0.5)
    assert m.is_expired("c") and m.get("c") is None and len(m) == 0
    with pytest.raises(ConversationExpiredError):
        m.update_activity("c")
    assert m.cleanup_expired() == ["c"]
    assert rec.expired == [("c", ExpiryReason.MAX_AGE)]
    assert rec.expired_states[0].expires_at == at(5)


def test_max_age_is_not_reset_by_registering_again_while_live(make, clock, rec):
    m = make(ttl=10, max_age=5)
    m.register_conversation("c")
    clock.advance(4)
    state = m.register_conversation("c")
    assert state.created_at == at(0) and state.expires_at == at(5)
    clock.advance(2)
    fresh = m.register_conversation("c")  # past its cap: a fresh conversation
    assert fresh.created_at == at(6) and fresh.expires_at == at(11)
    assert rec.expired == [("c", ExpiryReason.MAX_AGE)]


def test_idle_expiry_before_max_age_keeps_the_expired_reason(make, clock, rec):
    m = make(ttl=2, max_age=5)
    m.register_conversation("c")
    clock.advance(2.5)
    assert m.cleanup_expired() == ["c"]
    assert rec.expired == [("c", ExpiryReason.EXPIRED)]


def test_max_age_with_end_and_shutdown(make, clock, rec):
    m = make(ttl=10, max_age=5)
    if m.store.shared:
        pytest.skip("a shared store keeps its conversations at stop(): guarantee 13")
    m.register_conversation("a")
    m.register_conversation("b")
    clock.advance(6)
    assert m.end_conversation("a") is False  # already past its cap: not "ended"
    m.stop(cleanup_remaining=True)
    assert sorted(rec.expired) == [("a", ExpiryReason.MAX_AGE), ("b", ExpiryReason.MAX_AGE)]


def test_max_age_with_a_per_conversation_ttl(make, clock, rec):
    m = make(ttl=10, max_age=6)
    m.register_conversation("c", ttl=4)
    clock.advance(3)
    assert m.update_activity("c").expires_at == at(6)  # min(3 + 4, 0 + 6)
    clock.advance(3.5)
    assert m.cleanup_expired() == ["c"]
    assert rec.expired == [("c", ExpiryReason.MAX_AGE)]


def test_max_age_warning_is_not_reset_by_activity_that_cannot_move_the_deadline(make, clock, rec):
    m = make(ttl=10, max_age=12, warning_before=3)
    m.register_conversation("c")
    clock.advance(6)
    m.update_activity("c")  # deadline min(16, 12) = 12, window opens at 9
    clock.advance(3)
    m.cleanup_expired()
    assert rec.warned_ids == ["c"] and rec.warned[0].expires_at == at(12)
    clock.advance(1)
    state = m.update_activity("c")  # still capped at 12: stays warned
    assert state.warning_sent and state.expires_at == at(12)
    clock.advance(1)
    m.cleanup_expired()
    assert rec.warned_ids == ["c"]
    clock.advance(1.5)
    assert m.cleanup_expired() == ["c"]
    assert rec.expired == [("c", ExpiryReason.MAX_AGE)]


# -- ensure_conversation ------------------------------------------------------------------------


def test_ensure_conversation(make, clock, rec):
    m = make(ttl=10, meaningful_activities={"message"})
    state, fresh = m.ensure_conversation("c")
    assert fresh and state.created_at == at(0)
    m.add_cleanup("c", lambda: rec.expired.append(("c", "cleanup")))
    clock.advance(5)
    state, fresh = m.ensure_conversation("c")
    assert not fresh and state.expires_at == at(15)
    clock.advance(5)
    state, fresh = m.ensure_conversation("c", "heartbeat")
    assert not fresh and state.expires_at == at(15)
    clock.advance(5.5)
    state, fresh = m.ensure_conversation("c")
    assert fresh and state.created_at == at(15.5)
    assert rec.expired == [("c", "cleanup"), ("c", ExpiryReason.EXPIRED)]
