"""The store lock: a reader-preferring RW lock whose sweep readers cannot starve."""

from __future__ import annotations

import threading

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


def test_a_writer_that_waits_marks_the_lock_contended() -> None:
    guard = RWGuard()
    guard.write.acquire()
    entered = threading.Event()

    def writer() -> None:
        with guard.writing:
            entered.set()

    t = threading.Thread(target=writer)
    t.start()
    for _ in range(1000):
        if guard.contended:
            break
        threading.Event().wait(0.005)
    guard.write.release()
    assert entered.wait(5)
    t.join(5)
    assert guard.contended


def test_an_uncontended_writer_leaves_no_mark() -> None:
    guard = RWGuard()
    with guard.writing:
        pass
    assert not guard.contended
