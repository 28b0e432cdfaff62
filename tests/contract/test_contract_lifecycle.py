"""Contract tests (API.md "Lifecycle", guarantee 8, the context manager): start, stop, with.

Elapsed-time assertions are bounds measured with a monotonic timer, never sleeps.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from support import EVERY_STORE, TTL, WAIT, run_bounded

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationState,
    ExpiryReason,
)

STORE_KINDS = EVERY_STORE

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in set(threading.enumerate()) - before if t.is_alive()]




# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------


def test_autostart_starts_the_cleanup_thread_in_the_constructor(make_manager) -> None:
    before = set(threading.enumerate())
    make_manager()
    assert len(new_threads(before)) == 1


def test_autostart_false_starts_no_thread_until_start(make_manager) -> None:
    before = set(threading.enumerate())
    m = make_manager(autostart=False)
    assert new_threads(before) == []
    m.start()
    assert len(new_threads(before)) == 1


def test_start_on_a_running_manager_does_nothing(make_manager) -> None:
    before = set(threading.enumerate())
    m = make_manager()
    (thread,) = new_threads(before)
    m.start()
    m.start()
    assert new_threads(before) == [thread]


# ---------------------------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------------------------


def test_stop_joins_the_cleanup_thread(make_manager) -> None:
    before = set(threading.enumerate())
    m = make_manager()
    (thread,) = new_threads(before)
    m.stop()
    assert not thread.is_alive()


def test_stop_returns_promptly_with_a_one_hour_interval(make_manager) -> None:
    before = set(threading.enumerate())
    m = make_manager(TTL, 3600)
    (thread,) = new_threads(before)
    started = time.monotonic()
    m.stop()
    elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert not thread.is_alive()


def test_stop_is_idempotent(make_manager) -> None:
    m = make_manager()
    started = time.monotonic()
    for _ in range(3):
        assert m.stop() is None
    m.stop(timeout=1)
    m.stop(cleanup_remaining=True)
    assert time.monotonic() - started < 2.0


def test_stop_of_never_started_manager_is_fine_and_final(make_manager) -> None:
    m = make_manager(autostart=False)
    m.stop()
    m.stop()
    with pytest.raises(RuntimeError):
        m.start()


def test_start_after_stop_raises_runtime_error(make_manager) -> None:
    before = set(threading.enumerate())
    m = make_manager()
    m.stop()
    with pytest.raises(RuntimeError):
        m.start()
    assert new_threads(before) == []


def test_synchronous_calls_keep_working_after_stop(make_manager, clock) -> None:
    reasons: list[tuple[str, ExpiryReason]] = []
    m = make_manager(clock=clock, on_expire=lambda s, r: reasons.append((s.id, r)))
    m.stop()
    m.register_conversation("a")
    m.register_conversation("b")
    m.add_cleanup("a", lambda: reasons.append(("a", "cleanup")))  # type: ignore[arg-type]
    clock.advance(5)
    assert m.update_activity("b").last_activity == clock.now()
    assert m.get("a") is not None
    assert len(m) == 2 and "a" in m
    clock.advance(6)
    assert m.is_expired("a")
    assert m.cleanup_expired() == ["a"]
    assert m.end_conversation("b") is True
    assert reasons == [("a", "cleanup"), ("a", ExpiryReason.EXPIRED), ("b", ExpiryReason.ENDED)]


def test_stop_timeout_bounds_the_wait_for_a_slow_callable(make_manager, clock) -> None:
    entered = threading.Event()
    release = threading.Event()

    def slow(state: ConversationState, reason: ExpiryReason) -> None:
        entered.set()
        release.wait(WAIT * 2)

    before = set(threading.enumerate())
    m = make_manager(TTL, 0.01, clock=clock, on_expire=slow)
    (thread,) = new_threads(before)
    m.register_conversation("a")
    clock.advance(TTL + 1)
    try:
        assert entered.wait(WAIT)
        started = time.monotonic()
        m.stop(timeout=0.3)
        elapsed = time.monotonic() - started
        assert elapsed < 0.3 + 1.0, f"stop(timeout=0.3) took {elapsed:.2f}s"
        assert thread.is_alive()  # the callable is still running
    finally:
        release.set()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_stop_takes_its_timeout_as_a_timedelta(make_manager, clock) -> None:
    m = make_manager(TTL, 3600, clock=clock)
    assert m.running
    m.stop(timeout=timedelta(seconds=WAIT))
    assert m.stopped and not m.running


def test_stop_without_timeout_waits_for_a_running_callable(make_manager, clock) -> None:
    entered = threading.Event()
    release = threading.Event()
    finished: list[str] = []

    def slow(state: ConversationState, reason: ExpiryReason) -> None:
        entered.set()
        release.wait(WAIT * 2)
        finished.append(state.id)

    before = set(threading.enumerate())
    m = make_manager(TTL, 0.01, clock=clock, on_expire=slow)
    (thread,) = new_threads(before)
    m.register_conversation("a")
    clock.advance(TTL + 1)
    assert entered.wait(WAIT)
    stopped = threading.Event()
    stopper = threading.Thread(target=lambda: (m.stop(), stopped.set()))
    stopper.start()
    try:
        assert not stopped.wait(0.3), "stop() returned while the callable still ran"
    finally:
        release.set()
    assert stopped.wait(WAIT)
    stopper.join(WAIT)
    assert finished == ["a"]
    assert not thread.is_alive()


# ---------------------------------------------------------------------------------------------
# the context manager
# ---------------------------------------------------------------------------------------------


def test_context_manager_starts_on_enter_and_stops_on_exit() -> None:
    before = set(threading.enumerate())
    m = ConversationExpiryManager(TTL, 3600, autostart=False)
    assert new_threads(before) == []
    with m as entered:
        assert entered is m
        (thread,) = new_threads(before)
        m.register_conversation("a")
        assert "a" in m
    assert not thread.is_alive()
    with pytest.raises(RuntimeError):
        m.start()


def test_context_manager_does_not_start_a_second_thread_when_autostarted() -> None:
    before = set(threading.enumerate())
    with ConversationExpiryManager(TTL, 3600) as m:
        assert len(new_threads(before)) == 1
        assert isinstance(m, ConversationExpiryManager)
    assert new_threads(before) == []


def test_context_manager_stops_when_the_body_raises() -> None:
    before = set(threading.enumerate())
    with pytest.raises(RuntimeError, match="body fails"), ConversationExpiryManager(TTL, 3600):
        assert len(new_threads(before)) == 1
        raise RuntimeError("body fails")
    assert new_threads(before) == []


def test_context_manager_exit_is_prompt_with_one_hour_interval() -> None:
    started = time.monotonic()
    with ConversationExpiryManager(TTL, 3600) as m:
        m.register_conversation("a")
    assert time.monotonic() - started < 2.0


def test_context_manager_background_sweep_works_inside_the_block(clock) -> None:
    done = threading.Event()
    with ConversationExpiryManager(
        TTL, 0.01, clock=clock, on_expire=lambda s, r: done.set(), autostart=False
    ) as m:
        m.register_conversation("a")
        clock.advance(TTL + 1)
        assert done.wait(WAIT)


# ---------------------------------------------------------------------------------------------
# no thread left behind
# ---------------------------------------------------------------------------------------------


def test_no_thread_left_after_300_create_stop_cycles() -> None:
    baseline = threading.active_count()
    started = time.monotonic()
    for i in range(300):
        m = ConversationExpiryManager(TTL, 3600)
        m.register_conversation(f"c{i}")
        m.stop()
    assert threading.active_count() == baseline
    assert time.monotonic() - started < 30


def test_no_thread_left_after_300_context_manager_cycles() -> None:
    baseline = threading.active_count()
    for i in range(300):
        with ConversationExpiryManager(TTL, 0.001) as m:
            m.register_conversation(f"c{i}")
    assert threading.active_count() == baseline


def test_stop_from_another_thread_while_sweeping_often_leaves_no_thread(clock) -> None:
    baseline = threading.active_count()
    for _ in range(50):
        m = ConversationExpiryManager(TTL, 0.0005, clock=clock)
        m.register_conversation("a")
        run_bounded(m.stop)
    assert threading.active_count() == baseline
