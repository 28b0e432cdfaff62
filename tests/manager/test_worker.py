"""The cleanup thread: named daemon, paced by an Event, never killed by a failing sweep."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time

import pytest
from support import logging_raises

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationState,
    ExpiryReason,
    ManualClock,
    MemoryStore,
    StoreUnavailableError,
)
from conversation_expiry._store import Sweep
from conversation_expiry._worker import CleanupThread


def threads_named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def test_thread_is_a_named_daemon() -> None:
    with ConversationExpiryManager(10, 60, thread_name="ce-test-named") as m:
        assert m.running
        (thread,) = threads_named("ce-test-named")
        assert thread.daemon


def test_autostart_false_starts_no_thread() -> None:
    m = ConversationExpiryManager(10, 60, autostart=False, thread_name="ce-test-lazy")
    assert not m.running
    assert threads_named("ce-test-lazy") == []
    m.stop()


class FlakyStore(MemoryStore):
    """Fails its first sweep, as a broken shared store might."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = threading.Event()

    def claim(self, limit: int) -> Sweep:
        if not self.failed.is_set():
            self.failed.set()
            raise ConnectionError("store unreachable")
        return super().claim(limit)


def test_a_failing_sweep_is_logged_and_the_thread_goes_on(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    expired = threading.Event()
    store = FlakyStore()
    with ConversationExpiryManager(
        1, 0.01, clock=clock, store=store, on_expire=lambda s, r: expired.set()
    ) as m:
        m.register_conversation("a")
        assert store.failed.wait(5)
        clock.advance(2)
        assert expired.wait(5)
        assert m.running
    assert "sweep failed" in caplog.text
    assert "ConnectionError" in caplog.text


def test_thread_of_a_forgotten_manager_ends() -> None:
    m = ConversationExpiryManager(10, 0.01, thread_name="ce-test-forgotten")
    (thread,) = threads_named("ce-test-forgotten")
    del m
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def test_warning_due_before_the_interval_wakes_the_thread() -> None:
    warned = threading.Event()
    # A one-minute interval: only the wake-up for the warning can deliver it in time.
    with ConversationExpiryManager(
        0.4, 60, warning_before=0.3, on_warning=lambda s: warned.set()
    ) as m:
        started = time.monotonic()
        m.register_conversation("a")
        assert warned.wait(10)
        assert time.monotonic() - started < 10


def test_stop_from_a_callback_on_the_cleanup_thread_does_not_deadlock(clock: ManualClock) -> None:
    stopped = threading.Event()
    holder: list[ConversationExpiryManager] = []

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        holder[0].stop()
        stopped.set()

    m = ConversationExpiryManager(1, 0.01, clock=clock, on_expire=on_expire)
    holder.append(m)
    m.register_conversation("a")
    clock.advance(2)
    assert stopped.wait(5)
    m.stop(timeout=5)
    assert not m.running


def test_create_and_stop_leaves_no_thread_behind() -> None:
    before = len(threading.enumerate())
    for _ in range(200):
        ConversationExpiryManager(10, 3600, thread_name="ce-test-cycle").stop()
    assert threads_named("ce-test-cycle") == []
    assert len(threading.enumerate()) <= before


def test_debug_log_has_one_line_per_sweep(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    m = ConversationExpiryManager(1, 60, clock=clock, autostart=False)
    m.register_conversation("a")
    clock.advance(2)
    with caplog.at_level(logging.DEBUG, logger="conversation_expiry"):
        m.cleanup_expired()
    lines = [r for r in caplog.records if r.name == "conversation_expiry"]
    assert len(lines) == 1
    assert "expired 1" in lines[0].getMessage()


def test_stopped_tells_a_stopped_manager_from_a_fresh_one() -> None:
    m = ConversationExpiryManager(10, 60, autostart=False)
    assert not m.stopped
    m.stop()
    assert m.stopped
    assert not m.running


def test_in_cleanup_thread_is_true_only_on_the_cleanup_thread(clock: ManualClock) -> None:
    seen: list[bool] = []
    done = threading.Event()

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        seen.append(holder[0].in_cleanup_thread())
        done.set()

    holder: list[ConversationExpiryManager] = []
    with ConversationExpiryManager(1, 0.01, clock=clock, on_expire=on_expire) as m:
        holder.append(m)
        assert not m.in_cleanup_thread()
        m.register_conversation("a")
        clock.advance(2)
        assert done.wait(5)
    assert seen == [True]


class Cancelled(BaseException):
    """A BaseException that is not an Exception, as a framework's cancellation might be."""


class FailingStore(MemoryStore):
    """Raises ``error`` from its first ``times`` sweeps, then sweeps normally."""

    def __init__(self, error: type[BaseException], times: int) -> None:
        super().__init__()
        self.error, self.left = error, times
        self.done_failing = threading.Event()

    def claim(self, limit: int) -> Sweep:
        if self.left:
            self.left -= 1
            if not self.left:
                self.done_failing.set()
            raise self.error("sweep broke")
        return super().claim(limit)


def expires_after_failing(clock: ManualClock, store: FailingStore, interval: float = 0.01) -> None:
    """The cleanup thread gets through the store's failing sweeps, then expires as usual."""
    expired = threading.Event()
    with ConversationExpiryManager(
        1, interval, clock=clock, store=store, on_expire=lambda s, r: expired.set()
    ) as m:
        m.register_conversation("a")
        assert store.done_failing.wait(5)
        clock.advance(2)
        assert expired.wait(5), "the cleanup thread died: later expiries are never cleaned"
        assert m.running


BASE_EXCEPTIONS = [
    pytest.param(asyncio.CancelledError, id="CancelledError"),
    pytest.param(GeneratorExit, id="GeneratorExit"),
    pytest.param(Cancelled, id="custom-BaseException"),
    pytest.param(SystemExit, id="SystemExit"),
    pytest.param(KeyboardInterrupt, id="KeyboardInterrupt"),
]


@pytest.mark.parametrize("error", BASE_EXCEPTIONS)
def test_a_base_exception_from_the_sweep_does_not_kill_the_thread(
    clock: ManualClock, caplog: pytest.LogCaptureFixture, error: type[BaseException]
) -> None:
    expires_after_failing(clock, FailingStore(error, times=1))
    failures = [r for r in caplog.records if "sweep failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelname == "ERROR"
    assert failures[0].exc_info is not None and failures[0].exc_info[0] is error


def test_the_thread_survives_logging_that_raises_while_it_reports_a_failed_sweep(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    with logging_raises("sweep failed", times=1) as raising:
        expires_after_failing(clock, FailingStore(ConnectionError, times=1))
    assert raising.left == 0
    # The report that could not be made is not lost: the recovery line counts that failure.
    (recovered,) = [r.getMessage() for r in caplog.records if "works again" in r.getMessage()]
    assert "1 failed sweeps in a row" in recovered and "ConnectionError" in recovered


def test_a_failure_whose_report_raised_is_reported_at_its_next_occurrence(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FailingStore(ConnectionError, times=3)
    with logging_raises("sweep failed", times=1), ConversationExpiryManager(
        1, 0.001, clock=clock, store=store
    ):
        assert store.done_failing.wait(5)
    assert sum("sweep failed" in r.getMessage() for r in caplog.records) == 1


def test_a_burst_of_failing_sweeps_is_logged_once_then_counted(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    # backing off from 1 ms: about 0.25 s in all
    expires_after_failing(clock, FailingStore(Cancelled, times=8), interval=0.001)
    messages = [r.getMessage() for r in caplog.records if r.name == "conversation_expiry"]
    assert sum("sweep failed" in text for text in messages) == 1  # one traceback for the burst
    (recovered,) = [text for text in messages if "works again" in text]
    assert "8 failed sweeps in a row" in recovered and "Cancelled" in recovered


def test_failures_still_going_on_at_stop_are_summarised(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FailingStore(ConnectionError, times=10**9)
    m = ConversationExpiryManager(1, 0.001, clock=clock, store=store)
    failed = threading.Event()
    original = store.claim

    def claim(limit: int) -> Sweep:
        if store.left < 10**9 - 3:
            failed.set()
        return original(limit)

    store.claim = claim  # type: ignore[method-assign]
    assert failed.wait(5)
    m.stop(timeout=5)
    assert not m.running
    text = caplog.text
    assert text.count("sweep failed") == 1
    assert "was still failing when it ended" in text


class Sweeper:
    def sweep(self) -> float:
        return 60.0


def test_stopping_is_true_once_stop_was_called() -> None:
    sweeper = Sweeper()
    worker = CleanupThread(sweeper.sweep, 60.0, "ce-test-stopping")
    assert worker.stopping is False
    worker.start()
    assert worker.stop(5) and worker.stopping is True
    with pytest.raises(AttributeError):
        worker.stopping = False  # type: ignore[misc]


def failures_over(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException, minutes: int
) -> None:
    """A run of failed sweeps, one a minute and a bit, then a sweep that works."""
    from conversation_expiry import _worker

    now = [1000.0]
    monkeypatch.setattr(_worker, "_REAL", (lambda: now[0],))
    failures = _worker._Failures(0.5)
    for _ in range(minutes):
        failures.failed(exc)
        now[0] += 61.0
    failures.succeeded()


def test_an_outage_is_logged_once_and_its_end_once_however_long(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="conversation_expiry")
    failures_over(monkeypatch, StoreUnavailableError("Redis is unavailable: down"), 30)
    records = [r for r in caplog.records if r.name == "conversation_expiry"]
    assert [r.levelname for r in records] == ["WARNING", "WARNING"]
    assert "unavailable" in records[0].getMessage()
    assert "works again" in records[1].getMessage()


def test_a_sweep_failing_for_another_reason_is_recalled_every_minute(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="conversation_expiry")
    failures_over(monkeypatch, RuntimeError("a bug"), 3)
    messages = [r.getMessage() for r in caplog.records if r.name == "conversation_expiry"]
    assert sum("still failing" in text for text in messages) == 2


class EventPausedInClear(threading.Event):
    """The cleanup thread's event: its first clear() waits for the next set() (stop()'s)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_clear = threading.Event()
        self.stop_set = threading.Event()

    def clear(self) -> None:
        if not self.in_clear.is_set():
            self.in_clear.set()
            self.stop_set.wait(5)
        super().clear()

    def set(self) -> None:
        super().set()
        if self.in_clear.is_set():
            self.stop_set.set()


def test_a_stop_while_the_thread_wakes_is_not_lost() -> None:
    m = ConversationExpiryManager(60, 3600, autostart=False)
    event = m._worker._event = EventPausedInClear()
    m.start()
    m._worker.wake()  # the thread wakes, as at the end of an interval
    assert event.in_clear.wait(5)
    m.stop(timeout=5)  # (within the thread's wake-up: its clear() would erase the stop)
    assert not m.running
