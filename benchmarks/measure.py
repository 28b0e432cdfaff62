"""Timing primitives shared by the benchmarks: interleaved rounds, per-call cost, medians."""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from time import perf_counter_ns

__all__ = ["Stat", "gc_paused", "interleave", "per_call_us", "summarize"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector out of a timed section, as ``timeit`` does."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def per_call_us(fn: Callable[[str], object], args: Sequence[str]) -> float:
    """Mean cost in microseconds of ``fn(arg)`` over ``args`` (loop overhead included)."""
    start = perf_counter_ns()
    for arg in args:
        fn(arg)
    return (perf_counter_ns() - start) / len(args) / 1_000


def interleave(
    names: Sequence[str], rounds: int, run: Callable[[str, int], float], *, warmup: int = 1
) -> dict[str, list[float]]:
    """Call ``run(name, round)`` for every name in every round; return the samples by name.

    Each round starts with the next name (a rotation), so every implementation runs in every
    position equally often and slow drifts of the machine hit all of them alike. ``warmup``
    rounds run first (with negative round numbers) and are discarded.
    """
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(-warmup, rounds):
        k = r % len(names)
        for name in [*names[k:], *names[:k]]:
            value = run(name, r)
            if r >= 0:
                samples[name].append(value)
    return samples


@dataclass(frozen=True)
class Stat:
    """A median with the range of the samples it came from."""

    median: float
    low: float
    high: float
    samples: tuple[float, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "samples": list(self.samples),
        }


def summarize(samples: Sequence[float]) -> Stat:
    return Stat(statistics.median(samples), min(samples), max(samples), tuple(samples))
