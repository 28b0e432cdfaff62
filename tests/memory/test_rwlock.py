"""The store lock: a reader-preferring RW lock whose sweep readers cannot starve."""

from __future__ import annotations

import threading

import pytest
from support import WAIT, run_bounded

import conversation_expiry._rwlock as rwlock_module
from conversation_expiry._rwlock import RWGuard


def test_readers_share_the_lock() -> None:
    guard = RWGuard()
    first = guard.acquire_read()
    inside = threading.Event()

    def second_reader() -> None:
        handle = guard.acquire_read()
        inside.set()
        handle.release()

    t = threading.Thread(target=second_reader)
    t.start()
    assert inside.wait(5)
    t.join(5)
    first.release()


def test_a_waiting_sweep_goes_before_readers_that_arrive_later() -> None:
    guard = RWGuard()
    order: list[str] = []
    reader = guard.acquire_read()
    sweep_in = threading.Event()

    def sweep() -> None:
        handle = guard.acquire_sweep()
        order.append("sweep")
        sweep_in.set()
        handle.release()

    def late_reader() -> None:
        handle = guard.acquire_read()
        order.append("late reader")
        handle.release()

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    for _ in range(1000):  # wait (boundedly) until the sweep is queued at the turnstile
        if guard.sweep_waiting:
            break
        threading.Event().wait(0.005)
    assert guard.sweep_waiting
    late = threading.Thread(target=late_reader)
    late.start()
    late.join(0.2)
    assert late.is_alive()  # held at the turnstile, not let in beside the first reader
    reader.release()
    assert sweep_in.wait(5)
    sweeper.join(5)
    late.join(5)
    assert order == ["sweep", "late reader"]


def test_overlapping_readers_do_not_starve_the_sweep() -> None:
    guard = RWGuard()
    stop = threading.Event()

    def read_forever() -> None:
        while not stop.is_set():
            handle = guard.acquire_read()
            handle.release()

    readers = [threading.Thread(target=read_forever) for _ in range(3)]
    for t in readers:
        t.start()
    done = threading.Event()

    def sweep_many() -> None:
        for _ in range(50):
            guard.acquire_sweep().release()
        done.set()

    sweeper = threading.Thread(target=sweep_many)
    sweeper.start()
    try:
        assert done.wait(10)
    finally:
        stop.set()
        for t in [*readers, sweeper]:
            t.join(5)


def test_reinit_gives_a_free_lock() -> None:
    guard = RWGuard()
    guard.write.acquire()
    guard.reinit()
    assert guard.write.acquire(blocking=False)
    guard.write.release()


def test_try_acquire_write_times_out_while_held() -> None:
    guard = RWGuard()
    reader = guard.acquire_read()
    assert guard.try_acquire_write(0.05) is None
    reader.release()
    handle = guard.try_acquire_write(1)
    assert handle is not None
    handle.release()


def blocked_writer(guard: RWGuard, done: threading.Event) -> threading.Thread:
    """A thread taking the write side (held by the test), counted in ``waiting`` once blocked."""

    def writer() -> None:
        with guard.writing:
            done.set()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    for _ in range(1000):
        if guard.waiting:
            break
        threading.Event().wait(0.005)
    assert len(guard.waiting) == 1
    return t


def test_a_writer_that_waits_is_counted_until_it_has_the_lock() -> None:
    guard = RWGuard()
    guard.write.acquire()
    done = threading.Event()
    t = blocked_writer(guard, done)
    guard.write.release()
    assert done.wait(WAIT)
    t.join(WAIT)
    assert not guard.waiting


def test_an_uncontended_writer_is_never_counted_waiting() -> None:
    guard = RWGuard()
    with guard.writing:
        assert not guard.waiting
    assert not guard.waiting


def test_let_in_returns_once_the_blocked_writers_had_the_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rwlock_module, "_LET_IN_FOR", WAIT)  # (a loaded host may be slow)
    guard = RWGuard()
    guard.write.acquire()
    done = threading.Event()
    t = blocked_writer(guard, done)
    guard.write.release()
    guard.let_in()
    assert done.is_set() and not guard.waiting
    assert guard.write.acquire(False)  # free again: the writer came and went
    guard.write.release()
    t.join(WAIT)


def test_let_in_gives_up_after_its_bound_when_a_writer_does_not_come() -> None:
    guard = RWGuard()
    guard.waiting.append(None)  # counted, but never takes the lock
    run_bounded(guard.let_in)
    assert guard.waiting


def test_let_in_with_nobody_waiting_returns_at_once() -> None:
    guard = RWGuard()
    guard.let_in()
    assert not guard.waiting
