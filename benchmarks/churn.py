"""Stalls under churn: ``python benchmarks/churn.py [--quick] [--sizes 100k,1M] [--json PATH]``.

The longest single ``register_conversation`` while N conversations stay live and new ones keep
replacing old ones, against the floor (a dict of floats under a ``threading.Lock``) doing the
same. CPython never reuses the slot of a deleted key: a dict that keeps its size while keys
come and go fills its table and is then rebuilt whole, in one C call that holds the GIL. Every
thread of the process waits for it, whatever lock the store uses; the figure shows how long.

Per size: N ids in ten chunks, one per TTL/10 of a hand-moved clock; then 20 rounds, each one
registering a new chunk of N/10, each call timed, then moving the clock so that the oldest chunk
expires and sweeping it (untimed; the floor deletes the chunk's keys). 2N registrations: at least
one rebuild of every table. The cyclic GC is off throughout.

A report, never a gate (exit status 0 whatever it finds).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import threading
import time
from array import array
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import from the repository root instead
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.scale import parse_sizes
from conversation_expiry import ConversationExpiryManager, ManualClock

__all__ = ["churn_stalls", "main"]

TTL = 600.0
CHUNKS = 10
ROUNDS = 20  # chunks replaced: 2N registrations
STALL = 0.010  # seconds: the bound on a request's wait (issue 12, target 4)
QUICK_SIZES = (100_000,)
FULL_SIZES = (100_000, 1_000_000, 10_000_000)


def _ids(k: int, size: int) -> list[str]:
    return [f"c{k:03d}-{i:08d}" for i in range(size)]


def _timed(register: Callable[[str], object], ids: list[str], took: array[float]) -> None:
    clock = time.perf_counter
    add = took.append
    for cid in ids:
        t0 = clock()
        register(cid)
        add(clock() - t0)


def _ours(n: int) -> array[float]:
    clock = ManualClock()
    m = ConversationExpiryManager(TTL, 60.0, clock=clock, autostart=False)
    size = n // CHUNKS
    for k in range(CHUNKS):
        for cid in _ids(k, size):
            m.register_conversation(cid)
        clock.advance(TTL / CHUNKS)
    took: array[float] = array("d")
    for k in range(CHUNKS, CHUNKS + ROUNDS):
        _timed(m.register_conversation, _ids(k, size), took)
        clock.advance(0.5)  # the oldest chunk is past its deadline
        if len(m.cleanup_expired()) != size:
            raise AssertionError(f"round {k}: the sweep did not expire one chunk")
        clock.advance(TTL / CHUNKS - 0.5)
    m.stop()
    return took


def _floor(n: int) -> array[float]:
    lock = threading.Lock()
    live: dict[str, float] = {}

    def register(cid: str) -> None:
        with lock:
            live[cid] = time.monotonic()

    size = n // CHUNKS
    for k in range(CHUNKS):
        for cid in _ids(k, size):
            register(cid)
    took: array[float] = array("d")
    for k in range(CHUNKS, CHUNKS + ROUNDS):
        _timed(register, _ids(k, size), took)
        with lock:
            for cid in _ids(k - CHUNKS, size):
                del live[cid]
    return took


def churn_stalls(n: int) -> dict[str, dict[str, float]]:
    """For each implementation: the longest register (ms), the median (us), calls over STALL."""
    out: dict[str, dict[str, float]] = {}
    for name, run in (("conversation-expiry", _ours), ("floor: dict+Lock", _floor)):
        gc.collect()
        gc.disable()
        try:
            took = sorted(run(n))
        finally:
            gc.enable()
        out[name] = {
            "longest_ms": took[-1] * 1e3,
            "median_us": took[len(took) // 2] * 1e6,
            "over_stall": float(sum(1 for t in took if t > STALL)),
            "calls": float(len(took)),
        }
        del took
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k only: a few seconds")
    parser.add_argument("--sizes", type=parse_sizes, help="e.g. 100k,1M,10M")
    parser.add_argument("--json", type=Path, help="also write the raw figures")
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    results = {}
    print("| size | implementation | longest register, ms | median, us | calls over 10 ms |")
    print("|---|---|---|---|---|")
    for n in sizes:
        results[n] = churn_stalls(n)
        for name, r in results[n].items():
            print(
                f"| {n:,} | {name} | {r['longest_ms']:.1f} | {r['median_us']:.2f} | "
                f"{int(r['over_stall'])} of {int(r['calls']):,} |",
                flush=True,
            )
    print()
    for n, by_name in results.items():
        ours = by_name["conversation-expiry"]["longest_ms"]
        base = by_name["floor: dict+Lock"]["longest_ms"]
        verdict = "PASS" if ours <= STALL * 1e3 else "FAIL"
        print(
            f"{verdict}  longest register under churn <= {STALL * 1e3:.0f} ms at {n:,}: "
            f"{ours:.1f} ms (floor: {base:.1f} ms; a rebuilt dict, see the module docstring)"
        )
    if args.json:
        args.json.write_text(json.dumps({str(n): r for n, r in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
