"""A sweep of many live conversations of which some expired: alone, and under request load.

The population is built on a hand-moved clock: the first ``expired`` ids are registered, the
clock moves ttl/2, the rest are registered, and the clock moves just past the first ids'
deadline, so exactly ``expired`` of ``total`` are past their deadline. Both implementations have
an ``on_expire`` callable set (a counter).

(a) ``alone``: the duration of one sweep with nothing else running.
(b) ``under load``: a fresh population is swept while another thread loops ``update_activity``
over live ids, timing every call; the figure is the longest call that overlapped the sweep.
"""

from __future__ import annotations

import gc
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import cycle
from typing import Any

from conversation_expiry import ManualClock

from .adapters import NAIVE, OURS, Adapter, naive, ours, populate
from .measure import gc_paused

__all__ = ["SweepRun", "sweep_runs"]

TTL = 60.0
UPDATER_IDS = 20_000  # live ids the concurrent updater cycles through


class ManualNow:
    """A hand-moved ``now()`` for the naive port (it reads aware datetimes)."""

    def __init__(self) -> None:
        self.value = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += timedelta(seconds=seconds)


@dataclass(frozen=True)
class SweepRun:
    """One sweep of one implementation."""

    name: str
    under_load: bool
    seconds: float  # the sweep call's duration
    expired: int  # ids the sweep returned
    callbacks: int  # on_expire calls
    longest_wait: float | None = None  # longest update_activity overlapping the sweep (s)
    updates_during: int | None = None  # update_activity calls overlapping the sweep

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Builder = Callable[[Sequence[str], int, list[int]], Adapter]


def _build_ours(ids: Sequence[str], expired: int, calls: list[int]) -> Adapter:
    def on_expire(_state: object, _reason: object) -> None:
        calls[0] += 1

    clock = ManualClock()
    adapter = ours(TTL, clock=clock, on_expire=on_expire)
    _populate_in_two_steps(adapter, ids, expired, clock.advance)
    return adapter


def _build_naive(ids: Sequence[str], expired: int, calls: list[int]) -> Adapter:
    def on_expire(_state: object) -> None:
        calls[0] += 1

    now = ManualNow()
    adapter = naive(TTL, now=now, on_expire=on_expire)
    _populate_in_two_steps(adapter, ids, expired, now.advance)
    return adapter


def _populate_in_two_steps(
    adapter: Adapter, ids: Sequence[str], expired: int, advance: Callable[[float], object]
) -> None:
    populate(adapter, ids[:expired])
    advance(TTL / 2)
    populate(adapter, ids[expired:])
    advance(TTL / 2 + 0.001)  # first ids: TTL + 1 ms idle; the rest: TTL/2 + 1 ms


BUILDERS: dict[str, Builder] = {OURS: _build_ours, NAIVE: _build_naive}


def sweep_runs(ids: Sequence[str], expired: int, rounds: int) -> list[SweepRun]:
    """``rounds`` of (a) then (b) for this library and the naive port; who goes first alternates."""
    runs: list[SweepRun] = []
    names = list(BUILDERS)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for under_load in (False, True):
            for name in order:
                runs.append(_one(name, ids, expired, under_load))
    return runs


def _one(name: str, ids: Sequence[str], expired: int, under_load: bool) -> SweepRun:
    calls = [0]
    adapter = BUILDERS[name](ids, expired, calls)
    gc.collect()
    longest: float | None = None
    during: int | None = None
    try:
        if under_load:
            live = ids[expired : expired + UPDATER_IDS]
            seconds, result, longest, during = _sweep_under_load(adapter, live)
        else:
            with gc_paused():
                started = time.perf_counter()
                result = adapter.sweep()
                seconds = time.perf_counter() - started
    finally:
        adapter.close()
    run = SweepRun(name, under_load, seconds, len(result), calls[0], longest, during)
    del adapter, result
    gc.collect()
    if run.expired != expired or run.callbacks != expired:
        raise AssertionError(f"{name}: expected {expired} expired, got {run}")
    return run


def _sweep_under_load(adapter: Adapter, live: Sequence[str]) -> tuple[float, Any, float, int]:
    update = adapter.update
    clock = time.perf_counter
    starts = array("d")
    durations = array("d")
    ready = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []

    def updater() -> None:
        begin = starts.append
        took = durations.append
        try:
            update(live[0])
            ready.set()
            for cid in cycle(live):
                t0 = clock()
                update(cid)
                t1 = clock()
                begin(t0)
                took(t1 - t0)
                if stop.is_set():
                    break
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=updater, name="updater")
    with gc_paused():
        thread.start()
        ready.wait()
        time.sleep(0.02)  # the updater is in its loop
        s0 = clock()
        result = adapter.sweep()
        s1 = clock()
        time.sleep(0.005)
        stop.set()
        thread.join()
    if errors:
        raise errors[0]
    overlapping = [d for t, d in zip(starts, durations, strict=True) if t <= s1 and t + d >= s0]
    return s1 - s0, result, max(overlapping, default=0.0), len(overlapping)
