"""Issue 5 features, driven with a ManualClock: meaningful activity and warnings before expiry,
with the combinations the issue lists. Per-conversation TTL and maximum age are in
test_lifecycle_ttl.py.

Capacity eviction is in test_lifecycle_capacity.py, argument validation in
test_lifecycle_validation.py, callbacks and the background thread in test_lifecycle_threads.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from support import EVERY_STORE, at

from conversation_expiry import (
    ConversationExpiredError,
    ConversationExpiryManager,
    ConversationNotFoundError,
    ExpiryReason,
)

# -- meaningful activity ------------------------------------------------------------------------


STORE_KINDS = EVERY_STORE

def test_every_activity_type_is_meaningful_by_default(make, clock):
    m = make()
    m.register_conversation("c")
    clock.advance(4)
    state = m.update_activity("c", "heartbeat")
    assert state.last_activity == at(4)
    assert state.expires_at == at(14)
    clock.advance(4)
    assert m.update_activity("c", activity_type="typing").expires_at == at(18)


@pytest.mark.parametrize(
    "meaningful",
    [{"message"}, ["message", "upload"], frozenset({"message"}), lambda t: t == "message"],
)
def test_a_non_meaningful_activity_does_not_slide_the_expiry(make, clock, meaningful):
    m = make(meaningful_activities=meaningful)
    m.register_conversation("c")
    clock.advance(4)
    state = m.update_activity("c", "heartbeat")
    assert (state.last_activity, state.expires_at, state.active) == (at(0), at(10), True)
    assert m.get("c") == state
    clock.advance(2)
    state = m.update_activity("c")  # default type "message" is meaningful
    assert (state.last_activity, state.expires_at) == (at(6), at(16))


def test_heartbeats_alone_do_not_keep_a_conversation_alive(make, clock, rec):
    m = make(meaningful_activities={"message"})
    m.register_conversation("c")
    for _ in range(10):
        clock.advance(1)
        m.update_activity("c", "heartbeat")  # at t=10, exactly the deadline: still live
    clock.advance(0.5)
    with pytest.raises(ConversationExpiredError):
        m.update_activity("c", "heartbeat")
    assert m.is_expired("c")
    assert m.cleanup_expired() == ["c"]
    assert rec.expired == [("c", ExpiryReason.EXPIRED)]


def test_a_non_meaningful_activity_is_still_rejected_for_unknown_or_expired(make, clock):
    m = make(meaningful_activities={"message"})
    with pytest.raises(ConversationNotFoundError) as info:
        m.update_activity("nobody", "heartbeat")
    assert not isinstance(info.value, ConversationExpiredError)
    m.register_conversation("c")
    clock.advance(10.5)
    with pytest.raises(ConversationExpiredError):
        m.update_activity("c", "heartbeat")
    with pytest.raises(ConversationExpiredError):  # never revived, whatever the type
        m.update_activity("c", "message")
    m.cleanup_expired()
    with pytest.raises(ConversationNotFoundError) as info:
        m.update_activity("c", "heartbeat")
    assert not isinstance(info.value, ConversationExpiredError)


# -- warnings before expiry ---------------------------------------------------------------------


def test_warning_is_sent_once_on_entering_the_window(make, clock, rec):
    m = make(warning_before=3)
    m.register_conversation("c")
    clock.advance(6.5)
    assert m.cleanup_expired() == []
    assert rec.warned == [] and not m.get("c").warning_sent
    clock.advance(0.5)  # now == deadline - warning_before: in the window
    assert m.cleanup_expired() == []
    assert rec.warned_ids == ["c"]
    warned = rec.warned[0]
    assert warned.warning_sent and warned.active
    assert (warned.created_at, warned.last_activity, warned.expires_at) == (at(0), at(0), at(10))
    assert m.get("c") == warned
    for _ in range(3):  # once per idle period, however many sweeps
        clock.advance(1)
        m.cleanup_expired()
    assert rec.warned_ids == ["c"]
    clock.advance(0.5)
    assert m.cleanup_expired() == ["c"]
    assert rec.expired == [("c", ExpiryReason.EXPIRED)]
    assert rec.expired_states[0].warning_sent and not rec.expired_states[0].active
    assert rec.warned_ids == ["c"]


def test_warning_window_accepts_a_timedelta(make, clock, rec):
    m = make(ttl=timedelta(seconds=10), warning_before=timedelta(seconds=3))
    m.register_conversation("c")
    clock.advance(6.9)
    m.cleanup_expired()
    assert rec.warned == []
    clock.advance(0.1)
    m.cleanup_expired()
    assert rec.warned_ids == ["c"]


def test_a_heartbeat_in_the_warning_window_neither_resets_nor_repeats_the_warning(make, clock, rec):
    m = make(warning_before=3, meaningful_activities={"message"})
    m.register_conversation("c")
    clock.advance(8)
    m.cleanup_expired()
    assert rec.warned_ids == ["c"]
    clock.advance(1)
    state = m.update_activity("c", "heartbeat")
    assert state.warning_sent and state.expires_at == at(10)
    m.cleanup_expired()
    assert rec.warned_ids == ["c"]
    clock.advance(1)  # t=10: the original deadline, still live
    assert m.update_activity("c", "heartbeat").warning_sent
    clock.advance(0.5)
    with pytest.raises(ConversationExpiredError):
        m.update_activity("c", "heartbeat")
    assert m.cleanup_expired() == ["c"]
    assert rec.warned_ids == ["c"]
    assert rec.expired == [("c", ExpiryReason.EXPIRED)]


def test_a_warning_then_activity_resets_it_and_the_next_idle_period_warns_again(make, clock, rec):
    m = make(warning_before=3)
    m.register_conversation("c")
    clock.advance(8)
    m.cleanup_expired()
    assert rec.warned_ids == ["c"]
    state = m.update_activity("c")
    assert not state.warning_sent and state.expires_at == at(18)
    assert not m.get("c").warning_sent
    clock.advance(6.5)
    m.cleanup_expired()
    assert rec.warned_ids == ["c"]
    clock.advance(0.5)  # t=15 == 18 - 3
    m.cleanup_expired()
    assert rec.warned_ids == ["c", "c"]
    assert rec.warned[1].last_activity == at(8) and rec.warned[1].expires_at == at(18)
    assert rec.expired == []


@pytest.mark.parametrize("touch", ["update_activity", "ensure_conversation"])
def test_activity_that_resets_a_warning_wakes_the_cleanup_thread_for_the_next(
    make, clock, touch
):
    # The thread last saw nothing left to warn and sleeps a whole interval: the warning the
    # activity makes due sooner would come late, or after the deadline.
    m = make(warning_before=3)
    m.register_conversation("c")
    clock.advance(8)
    m.cleanup_expired()  # warned; nothing else to warn: the next wait is the interval
    woken: list[bool] = []
    m._worker.wake = lambda: woken.append(True)
    getattr(m, touch)("c")
    assert woken == [True]


@pytest.mark.redis
def test_a_process_without_warnings_leaves_them_to_those_that_warn(redis_store, clock, rec):
    # Two processes on one namespace, one configured without warnings: its sweeps used the
    # warnings up, and no on_warning ran anywhere.
    store = redis_store()
    warns = ConversationExpiryManager(
        10, 3600, clock=clock, autostart=False, store=store, warning_before=3,
        on_warning=rec.on_warning,
    )
    quiet = ConversationExpiryManager(
        10, 3600, clock=clock, autostart=False, store=redis_store(namespace=store.namespace)
    )
    try:
        warns.register_conversation("c")
        clock.advance(8)
        assert quiet.cleanup_expired() == []
        assert not warns.get("c").warning_sent
        warns.cleanup_expired()
        assert rec.warned_ids == ["c"]
    finally:
        warns.stop()
        quiet.stop()


def test_re_registering_a_warned_conversation_counts_as_activity_and_resets_it(make, clock, rec):
    m = make(warning_before=3)
    m.register_conversation("c")
    clock.advance(7)
    m.cleanup_expired()
    state = m.register_conversation("c")
    assert not state.warning_sent and state.created_at == at(0) and state.expires_at == at(17)
    clock.advance(7)
    m.cleanup_expired()
    assert rec.warned_ids == ["c", "c"]


def test_activity_before_the_window_postpones_the_warning(make, clock, rec):
    m = make(warning_before=3)
    m.register_conversation("c")
    for _ in range(5):
        clock.advance(5)
        m.update_activity("c")
        m.cleanup_expired()
    assert rec.warned == [] and rec.expired == []


def test_warnings_follow_each_conversations_own_deadline(make, clock, rec):
    m = make(warning_before=3)
    m.register_conversation("a")
    clock.advance(2)
    m.register_conversation("b")
    clock.advance(5)  # t=7: a's window opens, b's at 9
    m.cleanup_expired()
    assert rec.warned_ids == ["a"]
    clock.advance(2)
    m.cleanup_expired()
    assert rec.warned_ids == ["a", "b"]


def test_an_ended_conversation_is_not_warned(make, clock, rec):
    m = make(warning_before=3)
    m.register_conversation("c")
    clock.advance(5)
    assert m.end_conversation("c")
    clock.advance(3)
    m.cleanup_expired()
    assert rec.warned == []
    assert rec.expired == [("c", ExpiryReason.ENDED)]
