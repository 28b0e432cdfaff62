"""A fork while another thread holds one of the library's locks: the child's first call completes.

Each test holds one lock on a helper thread (deterministically: the thread signals an Event once
it holds it), forks, and has the child make the first call that takes that lock. The child
reports through its exit status; the parent waits for it with a bounded loop and kills it on
timeout, so a deadlock fails the test instead of hanging it.
"""

from __future__ import annotations

import gc
import os
import threading
import types
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from support import WAIT, in_child

from conversation_expiry import (
    ConversationExpiryManager,
    ExpiryReason,
    ManualClock,
    SystemClock,
    _fork,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

@contextmanager
def held(lock: Any) -> Iterator[None]:
    """Hold ``lock`` on another thread for the duration of the block."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold, name="lock-holder", daemon=True)
    holder.start()
    assert holding.wait(WAIT), "the helper thread never took the lock"
    try:
        yield
    finally:
        release.set()
        holder.join(WAIT)
    assert not holder.is_alive()


@pytest.fixture
def managers() -> Iterator[list[ConversationExpiryManager]]:
    made: list[ConversationExpiryManager] = []
    yield made
    for m in made:
        m.stop(timeout=WAIT)


def test_child_reads_the_system_clock_while_the_parent_held_its_lock(managers) -> None:
    m = ConversationExpiryManager(10, 3600, autostart=False)
    managers.append(m)
    m.register_conversation("a")
    clock = m.clock
    assert isinstance(clock, SystemClock)

    def child() -> str:
        clock._recheck_at = float("-inf")  # the next reading re-measures the wall offset
        return f"ok {m.update_activity('a').id}"

    with held(clock._lock):
        assert in_child(child) == "ok a"
    assert m.update_activity("a").id == "a"  # and the parent's lock works after the release


def test_child_advances_a_manual_clock_while_the_parent_held_its_lock(managers) -> None:
    clock = ManualClock()
    m = ConversationExpiryManager(10, 3600, clock=clock, autostart=False)
    managers.append(m)
    m.register_conversation("a")

    def child() -> str:
        clock.advance(11)
        return f"ok {m.cleanup_expired()}"

    with held(clock._lock):
        assert in_child(child) == "ok ['a']"
    clock.advance(1)


def test_child_logs_a_failing_callable_while_the_parent_held_the_fault_log_lock(managers) -> None:
    def on_expire(state: object, reason: ExpiryReason) -> None:
        raise RuntimeError("boom")

    m = ConversationExpiryManager(10, 3600, clock=ManualClock(), on_expire=on_expire,
                                  autostart=False)
    managers.append(m)
    m.register_conversation("a")
    faults = m._callbacks.faults

    def child() -> str:
        return f"ok ended={m.end_conversation('a')}"  # on_expire raises: the fault log reports

    with held(faults._windows._lock):
        assert in_child(child) == "ok ended=True"


def test_child_starts_and_stops_the_thread_while_the_parent_held_its_lock(managers) -> None:
    m = ConversationExpiryManager(10, 3600, clock=ManualClock(), autostart=False)
    managers.append(m)

    def child() -> str:
        m.start()
        running = m.running
        m.stop(timeout=WAIT)
        return f"ok running={running} stopped={m.stopped} alive={m.running}"

    with held(m._worker._lock):
        assert in_child(child) == "ok running=True stopped=True alive=False"


def test_child_stops_the_thread_while_the_parent_held_its_event(managers) -> None:
    m = ConversationExpiryManager(10, 3600, clock=ManualClock())
    managers.append(m)

    def child() -> str:
        running = m.running  # restarted in the child
        m.stop(timeout=WAIT)  # sets the event: takes its lock
        return f"ok running={running} alive={m.running}"

    with held(m._worker._event._cond):
        assert in_child(child) == "ok running=True alive=False"


def test_child_builds_a_manager_while_the_parent_held_the_fork_registry_lock(managers) -> None:
    def child() -> str:
        fresh = ConversationExpiryManager(10, 3600, clock=ManualClock(), autostart=False)
        fresh.register_conversation("x")
        return f"ok {len(fresh)}"

    with held(_fork._registry_lock):
        assert in_child(child) == "ok 1"  # the fork waited a second for the lock, then went on
    managers.append(ConversationExpiryManager(10, 3600, autostart=False))


def test_renew_after_fork_renews_a_module_level_lock() -> None:
    module = types.ModuleType("holder_of_a_lock")
    module.LOCK = threading.Lock()  # type: ignore[attr-defined]
    _fork.renew_after_fork(module, LOCK=threading.Lock)

    def child() -> str:
        with module.LOCK:  # type: ignore[attr-defined]
            return "ok"

    with held(module.LOCK):  # type: ignore[attr-defined]
        assert in_child(child) == "ok"


def test_renew_after_fork_does_not_keep_its_objects_alive() -> None:
    clock = ManualClock()
    ref = weakref.ref(clock)
    del clock
    gc.collect()
    assert ref() is None


def test_child_adds_a_cleanup_while_the_parent_held_the_held_cleanups_lock(managers) -> None:
    m = ConversationExpiryManager(10, 3600, clock=ManualClock(), autostart=False)
    managers.append(m)
    m.register_conversation("a")
    ran: list[str] = []

    def child() -> str:
        m.add_cleanup("a", lambda: ran.append("a"))
        m.end_conversation("a")
        return f"ok {ran}"

    with held(m._held._lock):
        assert in_child(child) == "ok ['a']"


def test_child_counts_live_conversations_while_the_parent_held_the_metrics_lock(managers) -> None:
    from conversation_expiry import _metrics

    def child() -> str:
        fresh = ConversationExpiryManager(10, 3600, clock=ManualClock(), autostart=False)
        fresh.register_conversation("x")
        return f"ok {len(fresh)}"

    with held(_metrics._INSTRUMENTS_LOCK):
        assert in_child(child) == "ok 1"


def test_child_logs_a_rejected_id_while_the_parent_held_the_reject_log_lock() -> None:
    from conversation_expiry._web_ids import RejectLog

    log = RejectLog()

    def child() -> str:
        log.report("bad id", "it is empty")
        return "ok"

    with held(log._windows._lock):
        assert in_child(child) == "ok"
