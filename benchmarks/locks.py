"""Cost of one uncontended acquire + release of each ``readerwriterlock`` class (lock choice).

Every ``update_activity`` takes a write side, so this cost is paid on the hot path. Handles are
made once and reused, as a careful caller does; ``threading.Lock`` is the reference.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import perf_counter_ns

from readerwriterlock import rwlock

from .measure import Stat, gc_paused, interleave, summarize

__all__ = ["lock_costs"]

CLASSES: dict[str, Callable[[], rwlock.RWLockable]] = {
    "RWLockRead (reader-preferring)": rwlock.RWLockRead,
    "RWLockFair": rwlock.RWLockFair,
    "RWLockWrite (writer-preferring)": rwlock.RWLockWrite,
}


def _cycle_us(acquire: Callable[[], object], release: Callable[[], object], n: int) -> float:
    with gc_paused():
        start = perf_counter_ns()
        for _ in range(n):
            acquire()
            release()
        return (perf_counter_ns() - start) / n / 1_000


def lock_costs(ops: int, rounds: int) -> dict[str, Stat]:
    """us per acquire + release, by "<class> write" / "<class> read" and "threading.Lock"."""
    plain = threading.Lock()
    cases: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "threading.Lock": (plain.acquire, plain.release)
    }
    for name, make in CLASSES.items():
        lock = make()
        w = lock.gen_wlock()
        r = lock.gen_rlock()
        cases[f"{name} write"] = (w.acquire, w.release)
        cases[f"{name} read"] = (r.acquire, r.release)
    samples = interleave(list(cases), rounds, lambda name, _r: _cycle_us(*cases[name], ops))
    return {name: summarize(values) for name, values in samples.items()}
