"""A freezegun ``tick()`` counts however long before the manager's first reading it was made.

The clock continues from where it stood when the freeze started (README, "Testing code that uses
it"), so that point is taken when the freeze starts, not at the clock's first reading in it:
then a tick made before that reading (or, after a nested freeze ended, by the outer freeze
before the clock read again) still moves the manager's time.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import freezegun.api
import pytest
from freezegun import freeze_time
from support import WAIT

from conversation_expiry import ConversationState, ExpiryReason, SystemClock

TTL = 30.0

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


def test_a_tick_before_the_first_reading_in_a_freeze_expires(make_manager) -> None:
    m = make_manager(TTL, autostart=False)
    m.register_conversation("a")  # before the freeze
    with freeze_time("2024-01-01") as frozen:
        frozen.tick(TTL + 1)  # before the manager read the frozen clock at all
        assert m.is_expired("a")
        assert m.cleanup_expired() == ["a"]


def test_a_tick_before_the_first_reading_counts_exactly(make_manager) -> None:
    m = make_manager(TTL, autostart=False)
    m.register_conversation("a")
    with freeze_time("2024-01-01") as frozen:
        frozen.tick(timedelta(seconds=TTL - 1))  # registered a moment before the freeze
        assert not m.is_expired("a")
        assert m.cleanup_expired() == []
        frozen.tick(2)
        assert m.cleanup_expired() == ["a"]


def test_a_tick_of_the_outer_freeze_after_a_nested_one_ended_expires(make_manager) -> None:
    with freeze_time("2024-01-01") as outer:
        m = make_manager(TTL, autostart=False)
        m.register_conversation("a")
        with freeze_time("1990-06-01"):
            assert not m.is_expired("a")  # the clock reads inside the nested freeze
        outer.tick(TTL + 1)  # before the clock read the outer freeze again
        assert m.is_expired("a")
        assert m.cleanup_expired() == ["a"]


def test_ticks_of_nested_freezes_add_up_whoever_reads_when(make_manager) -> None:
    with freeze_time("2024-01-01") as outer:
        m = make_manager(TTL, autostart=False)
        m.register_conversation("a")
        outer.tick(10)  # unread
        with freeze_time("2999-01-01") as inner:
            inner.tick(10)  # unread
        outer.tick(TTL - 20)  # a has been idle exactly TTL: not yet expired
        assert not m.is_expired("a")
        outer.tick(timedelta(microseconds=1))
        assert m.cleanup_expired() == ["a"]


def test_a_tick_in_a_nested_freeze_never_read_still_counts(make_manager) -> None:
    with freeze_time("2024-01-01"):
        m = make_manager(TTL, autostart=False)
        m.register_conversation("a")
        with freeze_time("2024-01-01") as inner:
            inner.tick(TTL + 1)
        assert m.cleanup_expired() == ["a"]


def test_moving_a_freeze_back_before_the_first_reading_neither_expires_nor_revives(
    make_manager,
) -> None:
    m = make_manager(TTL, autostart=False)
    m.register_conversation("a")
    with freeze_time("2024-01-01") as frozen:
        frozen.move_to("2023-01-01")  # back a year: the clock stands still, never backwards
        assert not m.is_expired("a")
        frozen.tick(TTL + 1)
        assert m.cleanup_expired() == ["a"]


class Blocker:
    """on_expire that, for ``blocker``, parks the cleanup thread until released."""

    def __init__(self) -> None:
        self.parked = threading.Event()
        self.release = threading.Event()
        self.expired: dict[str, threading.Event] = {"a": threading.Event()}

    def __call__(self, state: ConversationState, reason: ExpiryReason) -> None:
        if state.id == "blocker":
            self.parked.set()
            self.release.wait(WAIT)
        elif state.id in self.expired:
            self.expired[state.id].set()


def test_a_tick_while_the_cleanup_thread_is_busy_is_seen_by_its_next_sweep(make_manager) -> None:
    # The thread is parked in a callback, so it cannot read the clock between the freeze's
    # start and the tick: the tick must still count when it reads next.
    hooks = Blocker()
    m = make_manager(TTL, 0.005, on_expire=hooks)
    m.register_conversation("blocker", ttl=0.01)  # real time: expires at once
    m.register_conversation("a")
    assert hooks.parked.wait(WAIT), "the cleanup thread never took the blocker"
    try:
        with freeze_time("2024-01-01") as frozen:
            frozen.tick(TTL + 1)
            hooks.release.set()
            assert hooks.expired["a"].wait(WAIT), "the cleanup thread lost the tick"
            assert m.is_expired("a")
    finally:
        hooks.release.set()


def test_a_tick_after_a_nested_freeze_is_seen_by_the_cleanup_thread(make_manager) -> None:
    hooks = Blocker()
    with freeze_time("2024-01-01") as outer:
        m = make_manager(TTL, 0.005, on_expire=hooks)
        m.register_conversation("a")
        m.register_conversation("blocker", ttl=0.01)
        with freeze_time("1990-06-01") as inner:
            inner.tick(1)
            assert hooks.parked.wait(WAIT), "the cleanup thread never took the blocker"
        try:
            outer.tick(TTL + 1)
            hooks.release.set()
            assert hooks.expired["a"].wait(WAIT), "the cleanup thread lost the outer tick"
        finally:
            hooks.release.set()


def test_the_clock_never_runs_backwards_across_nested_freezes(make_manager) -> None:
    m = make_manager(3600, autostart=False)
    seen: list[float] = []
    with freeze_time("2024-01-01") as outer:
        seen.append(m.clock.monotonic())
        with freeze_time("1971-01-01") as inner:
            inner.move_to("1970-06-01")
            seen.append(m.clock.monotonic())
            inner.tick(5)
        seen.append(m.clock.monotonic())
        outer.move_to("2023-01-01")
        seen.append(m.clock.monotonic())
    seen.append(m.clock.monotonic())
    assert seen == sorted(seen)
    assert seen[2] - seen[0] == pytest.approx(5)


def test_a_freeze_the_clock_did_not_see_start_is_followed_from_its_first_reading(
    make_manager,
) -> None:
    # freezegun imported after the clock last read: its start went unrecorded. The clock then
    # continues from where it stands at its first reading in the freeze (the fallback).
    import freezegun.api

    m = make_manager(TTL, autostart=False)
    m.register_conversation("a")
    freeze = freeze_time("2024-01-01")
    frozen = type(freeze).start.__wrapped__(freeze)  # the unrecorded start
    try:
        before = m.clock.monotonic()
        assert not m.is_expired("a")
        frozen.tick(TTL + 1)
        assert m.clock.monotonic() == before + TTL + 1
        assert m.cleanup_expired() == ["a"]
    finally:
        type(freeze).stop.__wrapped__(freeze)
    assert not freezegun.api.freeze_factories
    assert m.clock.monotonic() >= before + TTL + 1  # never backwards after it


def test_a_reading_while_freezegun_stops_a_freeze_is_the_real_clock_going_on() -> None:
    # freezegun's stop() pops freeze_factories before ignore_lists: another thread reading the
    # time in between gets IndexError from its patched functions. Held at that point here.
    clock = SystemClock()
    with freeze_time("1971-01-01") as ft:
        ft.tick(5)
        before = clock.monotonic()
        factory = freezegun.api.freeze_factories.pop()
        try:
            with pytest.raises(IndexError):
                time.monotonic()  # what the clock would have honoured
            mono, offset = clock.reading()
        finally:
            freezegun.api.freeze_factories.append(factory)
    assert mono >= before
    assert abs(mono + offset - time.time()) < 5  # the real timeline: the freeze is ending


def test_a_sweep_while_freezegun_stops_a_freeze_does_not_fail(make_manager) -> None:
    expired: list[str] = []
    with freeze_time("1971-01-01") as ft:
        m = make_manager(10, 3600, autostart=False, on_expire=lambda s, r: expired.append(s.id))
        m.register_conversation("a")
        ft.tick(11)
        assert m.is_expired("a")  # the clock has read the tick
        factory = freezegun.api.freeze_factories.pop()
        try:
            assert m.cleanup_expired() == ["a"]
        finally:
            freezegun.api.freeze_factories.append(factory)
    assert expired == ["a"]


def test_a_tick_after_the_last_reading_counts_when_the_freeze_ends(make_manager) -> None:
    m = make_manager(TTL, autostart=False)
    with freeze_time("2024-01-01") as frozen:
        m.register_conversation("a")
        frozen.tick(TTL + 1)  # and nothing reads the clock before the freeze ends
    assert m.is_expired("a")
    assert m.cleanup_expired() == ["a"]


def test_a_move_back_to_after_the_freeze_start_counts_the_ticks_after_it(make_manager) -> None:
    m = make_manager(TTL, autostart=False)
    with freeze_time("2024-01-01 12:00:00") as frozen:
        frozen.tick(100)
        m.register_conversation("a")
        frozen.move_to("2024-01-01 12:00:50")  # back, but still after the freeze started
        b = m.register_conversation("b")
        assert b.created_at.isoformat() == "2024-01-01T12:00:50+00:00"
        frozen.tick(TTL - 1)
        assert not m.is_expired("b")
        frozen.tick(2)
        assert m.is_expired("a") and m.is_expired("b")


def test_ticks_after_a_move_back_the_clock_read_count_when_the_freeze_ends(make_manager) -> None:
    m = make_manager(4, autostart=False)
    with freeze_time("2020-01-01 00:00:00") as frozen:
        m.register_conversation("a")
        frozen.tick(4)
        m.update_activity("a")  # deadline 4 s from here
        frozen.move_to("2020-01-01 00:00:01")
        assert not m.is_expired("a")  # read at the moved-back time
        frozen.tick(5)  # and not read again before the freeze ends
    assert m.is_expired("a")
