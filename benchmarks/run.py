"""Run the benchmark suite: ``python benchmarks/run.py [--quick] [--json PATH]``.

Everything runs in this one process. Call costs and throughput alternate rounds between the
implementations; the sweeps alternate which implementation goes first. The report (Markdown
tables, then one PASS/FAIL line per target of issue 3) goes to stdout, progress to stderr. The
exit status is 0 whatever the verdicts: non-zero means the harness itself failed.

Measured (each module's docstring says how): ``call_cost`` (update_activity and register, with
100k live, including the OpenTelemetry SDK and lifecycle-option configurations of issues 4 and
5), ``throughput`` (4 threads), ``memory`` (bytes per conversation), ``sweep`` (1M live / 100k
expired: alone, and the longest update_activity wait in another thread), ``lag`` (deadline to
on_expire with the real thread), ``locks`` (readerwriterlock classes) and ``sampled_out`` (an
OpenTelemetry SDK that samples everything out, issue 12 target 1: its own table and PASS/FAIL
lines). ``adapters`` wraps the implementations; ``naive_port`` is the Go-faithful baseline;
``report`` holds the targets.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import from the repository root instead
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks import adapters as impl
from benchmarks.call_cost import register_costs, update_costs
from benchmarks.lag import cleanup_lags
from benchmarks.locks import lock_costs
from benchmarks.memory import bytes_per_conversation
from benchmarks.report import Results, render, verdicts
from benchmarks.sampled_out import (
    SampledOut,
    measure_sampled_out,
    render_sampled_out,
    sampled_out_verdicts,
)
from benchmarks.sweep import sweep_runs
from benchmarks.throughput import aggregate_rates


@dataclass(frozen=True)
class Settings:
    mode: str
    live: int  # live conversations for call costs and throughput
    update_ops: int  # update_activity calls per implementation per round
    update_rounds: int
    register_ops: int
    register_rounds: int
    threads: int
    thread_seconds: float  # per implementation per round
    thread_rounds: int
    memory_n: int
    sweep_total: int
    sweep_expired: int
    sweep_rounds: int
    lag_count: int
    lock_ops: int  # acquire + release cycles per lock per round
    lock_rounds: int
    otel_live: int  # issue 12 target 1 (sampled_out): live conversations per configuration
    otel_update_ops: int
    otel_update_rounds: int
    otel_expired: int  # conversations each timed sweep expires
    otel_sweep_rounds: int


FULL = Settings(
    mode="full",
    live=100_000,
    update_ops=20_000,
    update_rounds=15,
    register_ops=5_000,
    register_rounds=9,
    threads=4,
    thread_seconds=0.5,
    thread_rounds=5,
    memory_n=1_000_000,
    sweep_total=1_000_000,
    sweep_expired=100_000,
    sweep_rounds=3,
    lag_count=200,
    lock_ops=100_000,
    lock_rounds=9,
    otel_live=100_000,
    otel_update_ops=20_000,
    otel_update_rounds=15,
    otel_expired=100_000,
    otel_sweep_rounds=7,
)
QUICK = Settings(
    mode="quick",
    live=100_000,
    update_ops=5_000,
    update_rounds=7,
    register_ops=2_000,
    register_rounds=5,
    threads=4,
    thread_seconds=0.2,
    thread_rounds=3,
    memory_n=200_000,
    sweep_total=1_000_000,
    sweep_expired=100_000,
    sweep_rounds=1,
    lag_count=40,
    lock_ops=20_000,
    lock_rounds=5,
    otel_live=20_000,
    otel_update_ops=5_000,
    otel_update_rounds=7,
    otel_expired=20_000,
    otel_sweep_rounds=5,
)

_T0 = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def measure(s: Settings) -> Results:
    ids = [f"conv-{i:07d}" for i in range(s.live)]
    issue3 = impl.issue3_set()
    everyone = [*issue3, impl.ours_with_sdk(), *impl.lifecycle_variants()]
    progress(f"registering {s.live:,} conversations in {len(everyone)} implementations")
    for adapter in everyone:
        impl.populate(adapter, ids)
    gc.collect()
    gc.freeze()  # the populations are long-lived: keep them out of every later collection
    try:
        progress("update_activity cost")
        update = update_costs(everyone, ids, s.update_ops, s.update_rounds)
        progress(f"aggregate updates/s from {s.threads} threads")
        rates = aggregate_rates(issue3, ids, s.threads, s.thread_seconds, s.thread_rounds)
        progress("register cost")
        register = register_costs(everyone, s.register_ops, s.register_rounds)
    finally:
        impl.close_all(everyone)
        del everyone, issue3
        gc.unfreeze()
        gc.collect()

    progress(f"bytes per conversation at {s.memory_n:,}")
    mem_ids = [f"mem-{i:07d}" for i in range(s.memory_n)]
    factories: list[Callable[[], impl.Adapter]] = [
        impl.ours,
        impl.naive,
        impl.cachetools_lock,
        impl.expiring_dict,
        impl.floor,
    ]
    memory = bytes_per_conversation(factories, mem_ids)
    del mem_ids

    progress(f"sweeps of {s.sweep_total:,} live, {s.sweep_expired:,} expired")
    sweep_ids = [f"sweep-{i:07d}" for i in range(s.sweep_total)]
    sweeps = sweep_runs(sweep_ids, s.sweep_expired, s.sweep_rounds)
    del sweep_ids
    gc.collect()

    progress("cleanup lag with the real background thread")
    lags = cleanup_lags(s.lag_count)

    progress("readerwriterlock classes")
    locks = lock_costs(s.lock_ops, s.lock_rounds)

    return Results(
        live=s.live,
        update=update,
        register=register,
        threads=s.threads,
        rates=rates,
        memory_n=s.memory_n,
        memory=memory,
        sweep_total=s.sweep_total,
        sweep_expired=s.sweep_expired,
        sweeps=sweeps,
        lags=lags,
        locks=locks,
    )


def _revision() -> str:
    """The repository's commit, marked "+changes" when the library's files differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "conversation_expiry"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + (" +changes" if dirty else "")


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other work on the machine skews wall-clock figures."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def environment() -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    dists = [
        "conversation-expiry",
        "opentelemetry-api",
        "opentelemetry-sdk",
        "readerwriterlock",
        "cachetools",
        "expiringdict",
    ]
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "revision": _revision(),
        "switch_interval_s": sys.getswitchinterval(),
        "load_average_at_start": _load_average(),
        "versions": {d: version(d) for d in dists},
    }


def header(s: Settings, env: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    lines = [
        f"## conversation-expiry benchmarks ({s.mode} mode)",
        "",
        f"- {env['date']}; {env['python']} on {env['platform']}, {env['cores']} cores, "
        f"switch interval {env['switch_interval_s'] * 1e3:g} ms, load average at start "
        f"{env['load_average_at_start']}",
        f"- {versions} (revision {env['revision']}); no OpenTelemetry SDK installed globally",
        f"- call costs: {s.live:,} live conversations, {s.update_rounds} interleaved rounds of "
        f"{s.update_ops:,} update_activity calls (random live ids) and {s.register_rounds} of "
        f"{s.register_ops:,} register calls (fresh ids) per implementation; cyclic GC paused "
        "while timing, as timeit does",
        f"- throughput: {s.threads} threads, {s.thread_rounds} interleaved rounds of "
        f"{s.thread_seconds:g} s per implementation",
        f"- memory: tracemalloc, {s.memory_n:,} conversations, ids excluded",
        f"- sweep: {s.sweep_total:,} live of which {s.sweep_expired:,} expired, on_expire set, "
        f"{s.sweep_rounds} round(s); longest wait = longest update_activity call in another "
        "thread overlapping the sweep, median over sweeps (worst shown when more than one)",
        f"- cleanup lag: {s.lag_count} conversations, ttl 0.2 s, cleanup_interval 0.05 s, "
        "SystemClock and the real cleanup thread",
        f"- locks: {s.lock_rounds} interleaved rounds of {s.lock_ops:,} uncontended "
        "acquire + release cycles, handles reused",
    ]
    if s.mode == "quick":
        lines.append(
            f"- quick mode: memory at {s.memory_n:,} conversations instead of 1,000,000; "
            "one sweep round; fewer and shorter rounds elsewhere"
        )
    return lines


def to_json(s: Settings, env: dict[str, Any], res: Results, runtime: float) -> dict[str, Any]:
    return {
        "environment": env,
        "settings": asdict(s),
        "runtime_s": runtime,
        "update_activity_us": {k: v.as_dict() for k, v in res.update.items()},
        "register_us": {k: v.as_dict() for k, v in res.register.items()},
        "updates_per_s": {k: v.as_dict() for k, v in res.rates.items()},
        "bytes_per_conversation": res.memory,
        "sweeps": [r.as_dict() for r in res.sweeps],
        "cleanup_lag": [r.as_dict() for r in res.lags],
        "lock_acquire_release_us": {k: v.as_dict() for k, v in res.locks.items()},
        "targets": [
            {"target": v.target, "passed": v.passed, "detail": v.detail} for v in verdicts(res)
        ],
    }


def measure_otel(s: Settings) -> SampledOut:
    progress("OpenTelemetry SDK sampling everything out (issue 12, target 1)")
    return measure_sampled_out(
        s.otel_live, s.otel_update_ops, s.otel_update_rounds, s.otel_expired, s.otel_sweep_rounds
    )


def render_otel(res: SampledOut) -> str:
    lines = [
        "",
        "### OpenTelemetry SDK sampling everything out (issue 12, target 1)",
        "",
        render_sampled_out(res),
        "",
        *(f"{'PASS' if ok else 'FAIL'}  {t}: {d}" for ok, t, d in sampled_out_verdicts(res)),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller, shorter: under a minute")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the raw figures")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    env = environment()
    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    results = measure(settings)
    otel = measure_otel(settings)
    runtime = time.perf_counter() - started
    env["cpu_s"] = _cpu_seconds() - cpu_started
    env["load_average_at_end"] = _load_average()
    progress(f"done in {runtime:.1f}s")
    print(render(results, header(settings, env)))
    print(render_otel(otel))
    print(
        f"\nruntime {runtime:.0f} s wall, {env['cpu_s']:.0f} s CPU; load average at end "
        f"{env['load_average_at_end']}"
    )
    if args.json is not None:
        figures = to_json(settings, env, results, runtime)
        figures["sampled_out"] = otel.as_dict()
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
