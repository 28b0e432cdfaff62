"""Aggregate ``update_activity`` calls per second from several threads at once.

Each thread loops over its own slice of live ids for a fixed time; the figure is the median over
interleaved rounds of all threads' calls divided by the wall time from start to the last thread's
end. No target: on 2 cores and one interpreter lock it mostly measures contention.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from .adapters import Adapter
from .measure import Stat, gc_paused, interleave, summarize

__all__ = ["aggregate_rates"]

CHUNK = 256  # calls between looks at the stop flag


def aggregate_rates(
    adapters: Sequence[Adapter],
    live_ids: Sequence[str],
    threads: int,
    seconds: float,
    rounds: int,
) -> dict[str, Stat]:
    per_thread = len(live_ids) // threads
    slices = [list(live_ids[i * per_thread : (i + 1) * per_thread]) for i in range(threads)]
    by_name = {a.name: a for a in adapters}
    samples = interleave(
        list(by_name), rounds, lambda name, _r: _rate(by_name[name], slices, seconds)
    )
    return {name: summarize(values) for name, values in samples.items()}


def _rate(adapter: Adapter, slices: list[list[str]], seconds: float) -> float:
    update = adapter.update
    start = threading.Barrier(len(slices) + 1)
    stop = threading.Event()
    counts = [0] * len(slices)
    ends = [0.0] * len(slices)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        ids = slices[index]
        chunks = [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]
        done = 0
        start.wait()
        try:
            while not stop.is_set():
                for chunk in chunks:
                    for cid in chunk:
                        update(cid)
                    done += len(chunk)
                    if stop.is_set():
                        break
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        counts[index] = done
        ends[index] = time.perf_counter()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(slices))]
    with gc_paused():
        for w in workers:
            w.start()
        start.wait()
        began = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for w in workers:
            w.join()
    adapter.settle()
    if errors:
        raise errors[0]
    return sum(counts) / (max(ends) - began)
