"""Warning callbacks: faults contained, re-entry without deadlock, outside the lock, and delivered
by the background thread, which wakes in time for them.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone

import pytest

from conversation_expiry import ConversationExpiryManager, ExpiryReason, ManualClock

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
THREAD = "conversation-expiry-cleanup"
WAIT = 5.0  # generous bound for "promptly"; the tests normally finish in milliseconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def managers():
    made: list[ConversationExpiryManager] = []
    yield made
    for m in made:
        m.stop(timeout=WAIT)


def run_in_thread(fn) -> None:
    """Run ``fn`` on a helper thread; fail (instead of hanging) if it does not return."""
    errors: list[BaseException] = []

    def target():
        try:
            fn()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(WAIT)
    assert not t.is_alive(), "deadlock: the call did not return"
    if errors:
        raise errors[0]


# -- faults -------------------------------------------------------------------------------------


def test_a_raising_warning_callback_is_logged_and_the_sweep_goes_on(clock, managers, caplog):
    warned: list[str] = []
    expired: list[tuple[str, ExpiryReason]] = []

    def on_warning(state):
        warned.append(state.id)
        if state.id == "bad":
            raise RuntimeError("boom in on_warning")

    m = ConversationExpiryManager(
        10,
        60,
        clock=clock,
        autostart=False,
        warning_before=3,
        on_warning=on_warning,
        on_expire=lambda s, r: expired.append((s.id, r)),
    )
    managers.append(m)
    m.register_conversation("bad")
    m.register_conversation("good")
    clock.advance(7)
    with caplog.at_level(logging.ERROR, logger="conversation_expiry"):
        assert m.cleanup_expired() == []  # no exception reaches the caller
    assert sorted(warned) == ["bad", "good"]
    records = [r for r in caplog.records if r.name == "conversation_expiry"]
    assert records and records[0].levelno == logging.ERROR
    assert "bad" in records[0].getMessage()
    assert records[0].exc_info and "boom in on_warning" in str(records[0].exc_info[1])
    assert m.get("bad").warning_sent  # a failed callback is not retried on every sweep
    m.cleanup_expired()
    assert sorted(warned) == ["bad", "good"]
    clock.advance(3.5)
    assert sorted(m.cleanup_expired()) == ["bad", "good"]
    assert sorted(expired) == [("bad", ExpiryReason.EXPIRED), ("good", ExpiryReason.EXPIRED)]


def test_a_raising_warning_callback_does_not_kill_the_thread(clock, managers, caplog):
    first = threading.Event()
    seen = threading.Event()
    expired = threading.Event()

    def on_warning(state):
        (seen if state.id == "second" else first).set()
        raise ValueError(f"boom for {state.id}")

    m = ConversationExpiryManager(
        10,
        0.01,
        clock=clock,
        warning_before=3,
        on_warning=on_warning,
        on_expire=lambda s, r: expired.set(),
    )
    managers.append(m)
    with caplog.at_level(logging.ERROR, logger="conversation_expiry"):
        m.register_conversation("first")
        clock.advance(7)
        assert first.wait(WAIT)  # the thread has met the first fault
        m.register_conversation("second")
        clock.advance(7)
        assert seen.wait(WAIT), "the thread stopped delivering warnings after a fault"
        assert expired.wait(WAIT), "the thread stopped expiring after a fault"
        assert m.running
    assert any("first" in r.getMessage() for r in caplog.records)


# -- re-entry -------------------------------------------------------------------------------------


def test_a_warning_callback_may_call_the_manager(clock, managers):
    calls: list[str] = []
    holder: dict = {}

    def on_warning(state):
        m = holder["m"]
        calls.append(state.id)
        if state.id == "keep":
            fresh = m.update_activity("keep")  # resets the warning
            assert not fresh.warning_sent
        elif state.id == "end":
            assert m.end_conversation("end") is True
        elif state.id == "more":
            m.register_conversation("other")
            m.add_cleanup("more", lambda: calls.append("more cleaned"))
            assert m.get("more").warning_sent

    m = holder["m"] = ConversationExpiryManager(
        10,
        60,
        clock=clock,
        autostart=False,
        warning_before=3,
        on_warning=on_warning,
        on_expire=lambda s, r: calls.append(f"{s.id} {r}"),
    )
    managers.append(m)
    for cid in ("keep", "end", "more"):
        m.register_conversation(cid)
    clock.advance(7)
    run_in_thread(m.cleanup_expired)
    assert sorted(calls) == ["end", "end ended", "keep", "more"]
    assert not m.get("keep").warning_sent and m.get("keep").expires_at > m.get("more").expires_at
    assert "end" not in m and "other" in m
    clock.advance(3.5)
    run_in_thread(m.cleanup_expired)
    assert "more cleaned" in calls and "more expired" in calls


def test_a_warning_callback_on_the_thread_may_call_the_manager_and_stop_it(clock, managers):
    done = threading.Event()
    holder: dict = {}

    def on_warning(state):
        m = holder["m"]
        m.register_conversation("other")
        m.update_activity(state.id)
        m.end_conversation("other")
        m.stop()  # from the cleanup thread itself
        done.set()

    m = holder["m"] = ConversationExpiryManager(
        10, 0.01, clock=clock, warning_before=3, on_warning=on_warning
    )
    managers.append(m)
    m.register_conversation("c")
    clock.advance(7.5)
    assert done.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while m.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not m.running
    assert "c" in m and "other" not in m


def test_a_slow_warning_callback_does_not_block_request_threads(clock, managers):
    entered, release = threading.Event(), threading.Event()

    def on_warning(state):
        entered.set()
        release.wait(WAIT)

    m = ConversationExpiryManager(
        10, 60, clock=clock, autostart=False, warning_before=3, on_warning=on_warning
    )
    managers.append(m)
    m.register_conversation("c")
    clock.advance(7)
    sweeper = threading.Thread(target=m.cleanup_expired, daemon=True)
    sweeper.start()
    try:
        assert entered.wait(WAIT)
        run_in_thread(
            lambda: (
                m.update_activity("c"),
                m.register_conversation("d"),
                m.get("c"),
                len(m),
                m.end_conversation("d"),
            )
        )
    finally:
        release.set()
        sweeper.join(WAIT)


# -- the background thread --------------------------------------------------------------------


def test_the_background_thread_delivers_warnings(clock, managers):
    warned = threading.Event()
    got: list = []

    def on_warning(state):
        got.append((state.id, threading.current_thread().name))
        warned.set()

    m = ConversationExpiryManager(10, 0.01, clock=clock, warning_before=3, on_warning=on_warning)
    managers.append(m)
    m.register_conversation("c")
    time.sleep(0.05)
    assert not warned.is_set()
    clock.advance(7)
    assert warned.wait(WAIT)
    time.sleep(0.05)  # several more sweeps: still one warning for this idle period
    assert got == [("c", THREAD)]


@pytest.mark.parametrize("started_first", [True, False])
def test_the_background_thread_wakes_in_time_for_a_warning(managers, started_first):
    """With the real clock and a 60 s interval, a warning due in 0.3 s comes in well under 60 s."""
    warned = threading.Event()
    m = ConversationExpiryManager(
        2.0, 60, warning_before=1.7, on_warning=lambda s: warned.set(), autostart=started_first
    )
    managers.append(m)
    if started_first:
        time.sleep(0.05)  # the thread is asleep for its 60 s interval
    registered = time.monotonic()
    m.register_conversation("c")
    if not started_first:
        m.start()
    assert warned.wait(WAIT), "the warning waited for the cleanup interval"
    assert time.monotonic() - registered >= 0.25  # and not early either


def test_a_shorter_per_conversation_ttl_wakes_the_thread_sooner(managers):
    warned: list[str] = []
    event = threading.Event()

    def on_warning(state):
        warned.append(state.id)
        event.set()

    m = ConversationExpiryManager(60, 60, warning_before=1, on_warning=on_warning)
    managers.append(m)
    m.register_conversation("long")
    time.sleep(0.05)  # the thread now sleeps until the interval (long's window is 59 s away)
    m.register_conversation("short", ttl=1.3)
    assert event.wait(WAIT)
    assert warned == ["short"]


def test_the_background_thread_wakes_in_time_for_a_max_age_warning(managers):
    warned = threading.Event()
    m = ConversationExpiryManager(
        60, 60, max_age=1.5, warning_before=1.2, on_warning=lambda s: warned.set()
    )
    managers.append(m)
    time.sleep(0.05)
    registered = time.monotonic()
    m.register_conversation("c")
    assert warned.wait(WAIT), "the max_age warning waited for the cleanup interval"
    assert time.monotonic() - registered >= 0.25
