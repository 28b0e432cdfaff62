"""Single-thread cost of one ``update_activity`` and one ``register_conversation`` call.

Every implementation holds the same live conversations. In each round every implementation
updates the same random sample of them (or registers the same fresh ids), one after another in
a rotating order; the figure is the median over rounds of the mean cost per call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from random import Random

from .adapters import Adapter
from .measure import Stat, gc_paused, interleave, per_call_us, summarize

__all__ = ["register_costs", "update_costs"]

WARMUP = 1


def update_costs(
    adapters: Sequence[Adapter], live_ids: Sequence[str], ops: int, rounds: int, seed: int = 1
) -> dict[str, Stat]:
    """us per ``update(id)`` of a live id, drawn at random from ``live_ids``."""
    rng = Random(seed)
    batches = [rng.sample(live_ids, ops) for _ in range(WARMUP + rounds)]
    return _measure(adapters, rounds, lambda a, r: _timed(a, a.update, batches[r + WARMUP]))


def register_costs(
    adapters: Sequence[Adapter], ops: int, rounds: int, prefix: str = "fresh"
) -> dict[str, Stat]:
    """us per ``register(id)`` of an id never seen before (the adapters keep them)."""
    batches = [[f"{prefix}-{r}-{i}" for i in range(ops)] for r in range(WARMUP + rounds)]
    return _measure(adapters, rounds, lambda a, r: _timed(a, a.register, batches[r + WARMUP]))


def _timed(adapter: Adapter, fn: Callable[[str], object], ids: Sequence[str]) -> float:
    with gc_paused():
        us = per_call_us(fn, ids)
    adapter.settle()
    return us


def _measure(
    adapters: Sequence[Adapter], rounds: int, run: Callable[[Adapter, int], float]
) -> dict[str, Stat]:
    by_name = {a.name: a for a in adapters}
    samples = interleave(
        list(by_name), rounds, lambda name, r: run(by_name[name], r), warmup=WARMUP
    )
    return {name: summarize(values) for name, values in samples.items()}
