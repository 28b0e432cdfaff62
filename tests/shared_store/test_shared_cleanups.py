"""Guarantee 11 in one process: two managers on one Redis namespace stand for two workers."""

from __future__ import annotations

from typing import Any

import pytest
from support import TTL

from conversation_expiry import ConversationExpiryManager, ExpiryReason, ManualClock

pytestmark = pytest.mark.redis


@pytest.fixture
def pair(redis_store: Any, clock: ManualClock) -> Any:
    """Managers A and B on one namespace; B records its on_expire calls."""
    first = redis_store()
    seen: list[tuple[str, ExpiryReason]] = []
    a = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False, store=first)
    b = ConversationExpiryManager(
        TTL, 3600, clock=clock, autostart=False,
        store=redis_store(namespace=first.namespace),
        on_expire=lambda s, r: seen.append((s.id, r)),
    )
    yield a, b, seen
    a.stop()
    b.stop()


def test_cleanups_attached_in_one_process_run_there_when_another_ends_it(pair) -> None:
    a, b, seen = pair
    ran: list[str] = []
    a.register_conversation("c")
    a.add_cleanup("c", lambda: ran.append("closed in A"))
    assert b.end_conversation("c") is True
    assert ran == [] and seen == [("c", ExpiryReason.ENDED)]
    a.cleanup_expired()  # A's next sweep learns that it left
    assert ran == ["closed in A"]
    a.cleanup_expired()
    assert ran == ["closed in A"]  # once


def test_cleanups_attached_in_one_process_run_there_when_another_expires_it(pair, clock) -> None:
    a, b, seen = pair
    ran: list[str] = []
    a.register_conversation("c")
    a.add_cleanup("c", lambda: ran.append("closed in A"))
    clock.advance(TTL + 1)
    assert b.cleanup_expired() == ["c"] and seen == [("c", ExpiryReason.EXPIRED)]
    a.cleanup_expired()
    assert ran == ["closed in A"]


def test_an_id_started_again_elsewhere_never_runs_the_old_incarnation_s_cleanups(
    pair, clock
) -> None:
    a, b, _ = pair
    ran: list[str] = []
    a.register_conversation("c")
    a.add_cleanup("c", lambda: ran.append("old"))
    clock.advance(TTL + 1)
    b.register_conversation("c")  # B claims the old incarnation and starts a new one
    b.add_cleanup("c", lambda: ran.append("new, in B"))
    a.cleanup_expired()
    assert ran == ["old"]
    assert b.end_conversation("c") is True
    assert ran == ["old", "new, in B"]


def test_cleanups_attached_elsewhere_run_while_the_claimant_s_on_expire_still_runs(
    pair, clock
) -> None:
    # Guarantee 11's "within about two cleanup_intervals", whatever the claimant's hook costs.
    a, b, _events = pair
    cleaned: list[str] = []
    a.register_conversation("slow")
    a.add_cleanup("slow", lambda: cleaned.append("in a"))
    clock.advance(TTL + 1)

    def a_sweeps_during_b_s_hook(state: Any, reason: ExpiryReason) -> None:
        a.cleanup_expired()  # a's next sweep, while b's on_expire for it has not returned

    b._callbacks.on_expire = a_sweeps_during_b_s_hook
    assert b.cleanup_expired() == ["slow"]
    assert cleaned == ["in a"]


def test_an_exit_in_limited_time_runs_its_own_cleanups_while_the_thread_is_busy(
    redis_store: Any, clock: ManualClock
) -> None:
    # The integrations' exit (EXIT_TIMEOUT): the thread may be stuck in a slow hook, or in a
    # call to an unreachable Redis, for longer than the time the exit has; the process's own
    # cleanups need neither.
    import threading

    from support import WAIT

    busy, release = threading.Event(), threading.Event()

    def on_expire(state: Any, reason: ExpiryReason) -> None:
        busy.set()
        release.wait(WAIT)

    m = ConversationExpiryManager(TTL, 0.01, clock=clock, store=redis_store(), on_expire=on_expire)
    ran: list[str] = []
    m.register_conversation("slow")
    clock.advance(TTL - 1)
    m.register_conversation("kept")
    m.add_cleanup("kept", lambda: ran.append("kept"))
    clock.advance(2)  # "slow" is past due: the thread claims it and stays in its hook
    assert busy.wait(WAIT)
    try:
        m._stop(0.2, True, 0.2)
        assert ran == ["kept"]
    finally:
        release.set()
        m.stop(timeout=WAIT)
