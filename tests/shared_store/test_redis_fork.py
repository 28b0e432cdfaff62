"""A manager on a Redis store across os.fork(): the child works, the parent keeps its cleanups."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from support import WAIT, in_child

from conversation_expiry import ConversationExpiryManager, ManualClock

pytest.importorskip("redis")

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Threads run while forking: that is the case under test (Python 3.12+ warns).
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def lock_held_by_a_thread(lock: Any, release: threading.Event) -> threading.Thread:
    """A thread that takes ``lock`` (as one running a command does) and keeps it until
    ``release``."""
    taken = threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(WAIT)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(WAIT)
    return thread


@pytest.mark.parametrize("held_for", ["past the fork", "a moment"])
def test_a_child_forked_while_a_thread_held_the_pool_lock_uses_the_store(
    redis_store: Callable[..., Any], held_for: str
) -> None:
    store = redis_store()
    m = ConversationExpiryManager(60, 3600, store=store, autostart=False)
    m.register_conversation("before")
    release = threading.Event()
    thread = lock_held_by_a_thread(store._client.connection_pool._lock, release)
    if held_for == "a moment":
        threading.Timer(0.05, release.set).start()  # within the fork hook's wait

    def child() -> str:
        state = m.register_conversation("in-child")
        return f"{state.id} {'before' in m}"

    try:
        assert in_child(child) == "in-child True"
    finally:
        release.set()
        thread.join(WAIT)
    assert m.update_activity("in-child").id == "in-child"  # the parent's client works too
    m.stop()


def test_cleanups_attached_before_a_fork_run_in_the_parent_only(
    redis_store: Callable[..., Any],
) -> None:
    store = redis_store()
    m = ConversationExpiryManager(60, 3600, store=store, autostart=False, clock=ManualClock())
    ran: list[int] = []
    m.register_conversation("a")
    m.add_cleanup("a", lambda: ran.append(os.getpid()))

    def child() -> str:
        ended = m.end_conversation("a")  # the child ends it: the cleanup is the parent's
        m.cleanup_expired()
        return f"{ended} {ran}"

    assert in_child(child) == "True []"
    m.cleanup_expired()  # the parent reads the departure and runs its own cleanup
    assert ran == [os.getpid()]
    m.stop()


def test_a_child_of_a_single_connection_client_does_not_share_the_parent_s_connection(
    redis_store: Callable[..., Any],
) -> None:
    store = redis_store(single_connection_client=True)
    m = ConversationExpiryManager(60, 3600, store=store, autostart=False)
    m.register_conversation("before")
    release = threading.Event()
    thread = lock_held_by_a_thread(store._client.single_connection_lock, release)

    def child() -> str:
        return m.register_conversation("in-child").id

    try:
        assert in_child(child) == "in-child"
    finally:
        release.set()
        thread.join(WAIT)
    assert m.get("in-child") is not None and m.update_activity("before").id == "before"
    m.stop()
