"""The manager keeps working in a child after os.fork() (gunicorn --preload, multiprocessing)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
from support import in_child

from conversation_expiry import ConversationExpiryManager, ExpiryReason, ManualClock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def expired() -> list[tuple[str, ExpiryReason]]:
    return []


@pytest.fixture
def manager(
    clock: ManualClock, expired: list[tuple[str, ExpiryReason]]
) -> Iterator[ConversationExpiryManager]:
    m = ConversationExpiryManager(
        10, 0.01, clock=clock, on_expire=lambda s, r: expired.append((s.id, r))
    )
    yield m
    m.stop(timeout=5)


def test_child_restarts_the_cleanup_thread_and_expires(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    manager.register_conversation("inherited")

    def child() -> str:
        seen = threading.Event()
        manager._callbacks.on_expire = lambda s, r: seen.set()
        manager.register_conversation("born-in-child")
        clock.advance(11)
        if not seen.wait(10):
            return f"no expiry in the child; running={manager.running}"
        return f"ok running={manager.running} left={len(manager)}"

    assert in_child(child) == "ok running=True left=0"


def test_parent_keeps_its_thread_and_its_conversations_after_a_fork(
    manager: ConversationExpiryManager,
) -> None:
    manager.register_conversation("a")
    in_child(lambda: "done")
    assert manager.running
    assert "a" in manager
    assert manager.update_activity("a").id == "a"


def test_child_does_not_deadlock_when_another_thread_held_the_lock(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    manager.register_conversation("a")
    holding = threading.Event()
    release = threading.Event()
    lock = manager._store._guard.write  # type: ignore[attr-defined]

    def hold() -> None:
        with lock:
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    try:

        def child() -> str:
            manager.register_conversation("b")
            clock.advance(11)
            return f"ok expired={sorted(manager.cleanup_expired())}"

        assert in_child(child) == "ok expired=['a', 'b']"
    finally:
        release.set()
        holder.join(5)
    assert manager.update_activity("a").id == "a"  # the parent's lock was released


def test_a_stopped_manager_stays_stopped_in_the_child(manager: ConversationExpiryManager) -> None:
    manager.stop()

    def child() -> str:
        return f"running={manager.running}"

    assert in_child(child) == "running=False"


def test_child_sweeps_with_a_real_clock() -> None:
    with ConversationExpiryManager(0.05, 0.01) as m:

        def child() -> str:
            done = threading.Event()
            m._callbacks.on_expire = lambda s, r: done.set()
            m.register_conversation("short")
            deadline = time.monotonic() + 10
            while not done.wait(0.05) and time.monotonic() < deadline:
                pass
            return f"expired={done.is_set()}"

        assert in_child(child) == "expired=True"


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_wakes_its_own_thread_for_warnings(clock: ManualClock) -> None:
    warned = threading.Event()
    m = ConversationExpiryManager(
        10, 3600, clock=clock, warning_before=5, on_warning=lambda s: warned.set()
    )
    m._wake_pending = True  # the parent has woken its thread for a warning, not swept yet

    def child() -> str:
        m.register_conversation("a")  # due for its warning 5 s on
        clock.advance(6)
        m.register_conversation("b")  # wakes the thread: "a" is due now
        return "warned" if warned.wait(5) else "never warned"

    try:
        assert in_child(child) == "warned"
    finally:
        m.stop(timeout=5)
