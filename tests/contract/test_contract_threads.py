"""Contract tests (API.md guarantees 2, 3, 8 and "Where cleanups run"): the cleanup thread.

Real threads with short intervals; every wait is bounded so that a deadlock fails the test
instead of hanging it; every manager is stopped and no thread may be left behind.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from support import EVERY_STORE, TTL, WAIT, run_bounded

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationState,
    ExpiryReason,
)

STORE_KINDS = EVERY_STORE

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


def start_manager(make: Callable[..., ConversationExpiryManager], *args: Any, **kwargs: Any):
    """Make a manager and return it with the cleanup thread it started."""
    before = set(threading.enumerate())
    m = make(*args, **kwargs)
    new = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert len(new) == 1, f"expected one cleanup thread, got {new}"
    return m, new[0]




# ---------------------------------------------------------------------------------------------
# the cleanup thread
# ---------------------------------------------------------------------------------------------


def test_cleanup_thread_is_a_named_daemon_thread(make_manager) -> None:
    _, thread = start_manager(make_manager)
    assert isinstance(thread, threading.Thread)
    assert thread.daemon is True
    assert thread.name
    assert not re.fullmatch(r"Thread-\d+( \(.*\))?", thread.name), thread.name


def test_background_thread_sweeps_with_manual_clock_after_advance(make_manager, clock) -> None:
    expired = threading.Event()
    seen: list[tuple[str, ExpiryReason]] = []

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        seen.append((state.id, reason))
        expired.set()

    make_manager(TTL, 0.01, clock=clock, on_expire=on_expire).register_conversation("a")
    assert not expired.wait(0.2)  # about 20 sweeps: the clock has not moved
    clock.advance(TTL + 1)
    assert expired.wait(WAIT)
    assert seen == [("a", ExpiryReason.EXPIRED)]


def test_background_sweep_runs_cleanups_on_the_cleanup_thread(make_manager, clock) -> None:
    done = threading.Event()
    where: dict[str, threading.Thread] = {}

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        where["on_expire"] = threading.current_thread()
        done.set()

    m, thread = start_manager(make_manager, TTL, 0.01, clock=clock, on_expire=on_expire)
    m.register_conversation("a")
    m.add_cleanup("a", lambda: where.__setitem__("cleanup", threading.current_thread()))
    clock.advance(TTL + 1)
    assert done.wait(WAIT)
    assert where == {"on_expire": thread, "cleanup": thread}


@pytest.mark.parametrize("call", ["end_conversation", "cleanup_expired"])
def test_sync_calls_run_cleanups_in_the_callers_thread_before_returning(
    make_manager, clock, call: str
) -> None:
    where: list[tuple[str, threading.Thread]] = []
    m = make_manager(
        TTL,
        3600,
        clock=clock,
        on_expire=lambda s, r: where.append(("on_expire", threading.current_thread())),
    )
    m.register_conversation("a")
    m.add_cleanup("a", lambda: where.append(("cleanup", threading.current_thread())))
    if call == "cleanup_expired":
        clock.advance(TTL + 1)

    def in_helper() -> tuple[threading.Thread, list[str]]:
        if call == "end_conversation":
            m.end_conversation("a")
        else:
            m.cleanup_expired()
        return threading.current_thread(), [w for w, _ in where]  # what had run at return

    helper, ran_at_return = run_bounded(in_helper)
    assert sorted(ran_at_return) == ["cleanup", "on_expire"]
    assert {t for _, t in where} == {helper}


# ---------------------------------------------------------------------------------------------
# callbacks that call the manager (guarantee 2)
# ---------------------------------------------------------------------------------------------


def test_callback_from_sweep_can_register_end_and_read_without_deadlock(
    make_manager, clock
) -> None:
    reasons: dict[str, list[ExpiryReason]] = defaultdict(list)
    m = make_manager(TTL, 3600, clock=clock, on_expire=lambda s, r: reasons[s.id].append(r))
    m.register_conversation("a")
    observed: dict[str, Any] = {}

    def cleanup() -> None:
        observed["register_same"] = m.register_conversation("a")
        observed["register_new"] = m.register_conversation("b")
        observed["end_other"] = m.end_conversation("to-end")
        observed["end_self_again"] = m.end_conversation("gone-never-was")
        observed["update"] = m.update_activity("other")
        observed["get"] = m.get("other")
        observed["len"] = len(m)
        observed["in"] = "other" in m
        observed["is_expired"] = m.is_expired("other")
        m.add_cleanup("other", lambda: None)

    m.add_cleanup("a", cleanup)
    clock.advance(TTL + 1)
    m.register_conversation("other")
    m.register_conversation("to-end")
    assert run_bounded(m.cleanup_expired) == ["a"]
    assert observed["register_same"].created_at == clock.now()  # fresh conversation
    assert observed["end_other"] is True
    assert observed["len"] == 3 and observed["in"] is True and observed["is_expired"] is False
    assert reasons["to-end"] == [ExpiryReason.ENDED]
    assert "a" in m and "b" in m


def test_cleanup_that_ends_its_own_conversation_gets_false(make_manager) -> None:
    m = make_manager()
    result: list[bool] = []
    m.register_conversation("a")
    m.add_cleanup("a", lambda: result.append(m.end_conversation("a")))
    assert run_bounded(lambda: m.end_conversation("a")) is True
    assert result == [False]


@pytest.mark.parametrize("cleanup_remaining", [False, True])
def test_callback_from_sync_sweep_can_stop_the_manager(
    make_manager, clock, cleanup_remaining: bool
) -> None:
    reasons: dict[str, list[ExpiryReason]] = defaultdict(list)
    m, thread = start_manager(
        make_manager, TTL, 3600, clock=clock, on_expire=lambda s, r: reasons[s.id].append(r)
    )
    m.register_conversation("a")
    m.add_cleanup("a", lambda: m.stop(cleanup_remaining=cleanup_remaining))
    clock.advance(TTL + 1)
    m.register_conversation("live")
    assert run_bounded(m.cleanup_expired) == ["a"]
    thread.join(WAIT)
    assert not thread.is_alive()
    assert reasons["a"] == [ExpiryReason.EXPIRED]
    shutdown = cleanup_remaining and not m.store.shared  # guarantee 13
    assert reasons["live"] == ([ExpiryReason.SHUTDOWN] if shutdown else [])


def test_callback_from_end_conversation_can_stop_the_manager(make_manager) -> None:
    m, thread = start_manager(make_manager)
    m.register_conversation("a")
    m.add_cleanup("a", m.stop)
    assert run_bounded(lambda: m.end_conversation("a")) is True
    thread.join(WAIT)
    assert not thread.is_alive()


def test_callback_on_background_thread_can_register_and_end(make_manager, clock) -> None:
    done = threading.Event()
    reasons: dict[str, list[ExpiryReason]] = defaultdict(list)
    results: dict[str, Any] = {}

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        reasons[state.id].append(reason)
        if state.id == "a":
            results["register"] = m.register_conversation("b")
            results["end"] = m.end_conversation("c")
            results["len"] = len(m)
            done.set()

    m = make_manager(TTL, 0.01, clock=clock, on_expire=on_expire)
    m.register_conversation("a")
    clock.advance(TTL + 1)
    m.register_conversation("c")
    assert done.wait(WAIT)
    assert results["end"] is True
    assert results["len"] == 1
    assert "b" in m
    assert reasons["c"] == [ExpiryReason.ENDED]


def test_callback_on_background_thread_can_stop_the_manager(make_manager, clock) -> None:
    done = threading.Event()
    m = None

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        assert m is not None
        m.stop()
        done.set()

    m, thread = start_manager(make_manager, TTL, 0.01, clock=clock, on_expire=on_expire)
    m.register_conversation("a")
    clock.advance(TTL + 1)
    assert done.wait(WAIT), "stop() from the cleanup thread deadlocked"
    thread.join(WAIT)
    assert not thread.is_alive()
    with pytest.raises(RuntimeError):
        m.start()
    m.register_conversation("b")  # synchronous calls keep working
    assert "b" in m


# ---------------------------------------------------------------------------------------------
# faults and slow callables (guarantees 2, 3, 8)
# ---------------------------------------------------------------------------------------------


def test_raising_callbacks_leave_the_background_thread_alive(make_manager, clock, caplog) -> None:
    caplog.set_level("CRITICAL", logger="conversation_expiry")  # the faults are expected
    b_expired = threading.Event()
    a_done = threading.Event()

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        if state.id == "a":
            a_done.set()
            raise RuntimeError("on_expire fails for a")
        b_expired.set()

    m, thread = start_manager(make_manager, TTL, 0.01, clock=clock, on_expire=on_expire)
    m.register_conversation("a")
    m.add_cleanup("a", lambda: 1 / 0)
    clock.advance(TTL + 1)
    assert a_done.wait(WAIT)
    m.register_conversation("b")
    m.add_cleanup("b", lambda: [][1])
    clock.advance(TTL + 1)
    assert b_expired.wait(WAIT), "the cleanup thread stopped sweeping after a fault"
    assert thread.is_alive()


def test_slow_callable_on_cleanup_thread_does_not_block_request_threads(
    make_manager, clock
) -> None:
    entered = threading.Event()
    release = threading.Event()

    def slow(state: ConversationState, reason: ExpiryReason) -> None:
        if state.id == "slow":
            entered.set()
            release.wait(WAIT * 2)

    m = make_manager(TTL, 0.01, clock=clock, on_expire=slow)
    m.register_conversation("slow")
    m.register_conversation("other")
    clock.advance(TTL / 2)
    m.update_activity("other")
    clock.advance(TTL / 2 + 1)
    try:
        assert entered.wait(WAIT)
        # all of these must get through while the callable still runs
        run_bounded(lambda: m.register_conversation("x"), timeout=2)
        run_bounded(lambda: m.update_activity("other"), timeout=2)
        assert run_bounded(lambda: m.get("other"), timeout=2) is not None
        assert run_bounded(lambda: len(m), timeout=2) == 2
        assert run_bounded(lambda: "x" in m, timeout=2) is True
        assert run_bounded(lambda: m.is_expired("x"), timeout=2) is False
        run_bounded(lambda: m.add_cleanup("x", lambda: None), timeout=2)
        assert run_bounded(lambda: m.end_conversation("x"), timeout=2) is True
        assert run_bounded(m.cleanup_expired, timeout=2) == []
        assert not release.is_set()
    finally:
        release.set()
