"""Growth with size: ``python benchmarks/scale.py [--quick] [--sizes 10k,1M] [--json PATH]``.

Issue 12, target 6, with the measurements for its targets 2-5, at N = 10k / 100k / 1M / 10M
conversations (``--quick``: 10k / 100k / 1M, fewer rounds). Every size runs in this one process,
one after another; each size's populations are freed before the next is built. Baselines are
measured in the same run, in interleaved rounds; figures are medians over rounds.

Populations. N conversations in ten chunks of N/10, chunk k registered at k x 60 s on a
hand-moved clock (TTL 600 s; a ``ManualClock`` for this library, a hand-moved ``now`` for the
naive port), in bulk with the cyclic GC paused (``adapters.populate``). Round r moves the clock
just past chunk r's deadline, so exactly N/10 of N are past due; after the sweep chunk r+10 is
registered, so the next round again sweeps N/10 of N. The cyclic GC is off for the whole run
(as ``timeit`` does) except where a figure is a ``gc.collect()``.

Per size:

1. **sweep alone** (issue target 2): one ``cleanup_expired()`` of N live / N/10 expired with
   ``on_expire`` set (a counter), this library against the naive Go port
   (``benchmarks/naive_port.py``), who goes first alternating by round; ratio of the medians.
2. **call costs** (target 3): ``update_activity``, ``is_expired`` and ``get`` on random live ids
   against ``expiringdict``'s set (its update; an ``ExpiringDict`` holding the same N ids), mean
   cost per call of a batch, implementations rotating within each round.
3. **longest wait** (target 4): a sweep of N live / N/10 expired while another thread loops
   ``update_activity`` over live ids, timing each call; the figure is the longest call that
   overlapped the sweep (``sweep._sweep_under_load``), median over sweeps (worst shown). A
   sweep shorter than the 5 ms switch interval (10k) may run within one GIL hold, so that few
   updates, or none, overlap it.
4. **GC and memory** (target 5): the duration of a full ``gc.collect()`` before the population
   is built and after it is freed (the baseline, same process) and with this library's manager
   holding N live conversations (after the sweeps and updates above, nothing else populated);
   the difference is the pause the conversations add. The population has seen a few refills
   and random updates only, so its objects are still mostly in allocation order; after long
   random activity the same collection costs more (more cache misses per object visited).
   Bytes per conversation: ``tracemalloc`` over a fresh manager
   (``memory.bytes_per_conversation``), ids excluded, for N up to 1M.
5. **len**: ``len(manager)`` with N/10 conversations past their deadline and not yet swept, the
   first call after the clock moved, then the median of the next five calls, reported as the
   second call (amortized O(1): the first walks the newly past-due prefix once, the later ones
   should cost the same at every size), before each sweep under load.

The report (a Markdown table with the sizes as columns, then one PASS/FAIL line per target) goes
to stdout, progress to stderr. A benchmark reports, it never gates: the exit status is 0 whatever
the verdicts, non-zero only when the harness fails. ``measure_scale`` is the entry point for
another harness; ``render_scale`` and ``scale_verdicts`` turn its results into text.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from random import Random
from typing import Any, cast

if __package__ in (None, ""):  # run as a script: import from the repository root instead
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.adapters import OURS as LIBRARY
from benchmarks.adapters import Adapter, expiring_dict, naive, ours, populate
from benchmarks.measure import Stat, gc_paused, interleave, per_call_us, summarize
from benchmarks.memory import bytes_per_conversation
from benchmarks.report import Verdict
from benchmarks.sweep import ManualNow, _sweep_under_load
from conversation_expiry import ConversationExpiryManager, ManualClock

__all__ = [
    "FULL",
    "QUICK",
    "ScaleSettings",
    "SizeResult",
    "measure_scale",
    "parse_sizes",
    "render_scale",
    "scale_verdicts",
]

TTL = 600.0
CHUNKS = 10  # chunks per population: one of them expires per round
STEP = TTL / CHUNKS  # clock time between two chunks' registrations
PAST = 0.5  # how far past a chunk's deadline the clock is moved (< STEP)
UPDATER_IDS = 20_000  # live ids the concurrent updater cycles through (at most a chunk)
LEN_LATER = 5  # len() calls timed after the first: the "second call" is their median
OURS = "ours"
NAIVE = "naive port"
UPDATE, IS_EXPIRED, GET, EXPIRINGDICT = "update_activity", "is_expired", "get", "expiringdict"


@dataclass(frozen=True)
class ScaleSettings:
    mode: str
    sizes: tuple[int, ...]
    sweep_rounds: int  # sweeps alone per implementation and size
    load_rounds: int  # sweeps under load (this library) per size
    call_ops: int  # calls per batch
    call_rounds: int
    gc_rounds: int  # gc.collect() timings per state
    memory_max: int  # bytes per conversation measured for sizes up to this


FULL = ScaleSettings(
    mode="full",
    sizes=(10_000, 100_000, 1_000_000, 10_000_000),
    sweep_rounds=5,
    load_rounds=3,
    call_ops=20_000,
    call_rounds=9,
    gc_rounds=7,
    memory_max=1_000_000,
)
QUICK = ScaleSettings(
    mode="quick",
    sizes=(10_000, 100_000, 1_000_000),
    sweep_rounds=3,
    load_rounds=2,
    call_ops=5_000,
    call_rounds=5,
    gc_rounds=5,
    memory_max=1_000_000,
)


@dataclass(frozen=True)
class SizeResult:
    """Everything measured at one size; times in seconds unless the name says otherwise."""

    n: int
    expired: int  # per sweep
    load_average: tuple[float, ...] | None  # when this size started
    build_s: dict[str, float]  # one population of n, bulk-registered
    sweep: dict[str, Stat]  # sweep alone, by implementation
    calls_us: dict[str, Stat]  # us per call, ours by method and expiringdict's set
    sweep_under_load: Stat
    longest_wait: Stat  # per sweep under load: the longest overlapping update_activity
    updates_during: int  # median update_activity calls overlapping a sweep
    len_first: Stat
    len_second: Stat  # per sweep: median of the LEN_LATER calls after the first
    gc_without: Stat  # full gc.collect(), no population (before build and after free)
    gc_with: Stat  # full gc.collect() with this library holding n live conversations
    bytes_per_conversation: float | None
    seconds: float  # wall time spent on this size

    @property
    def gc_added(self) -> float:
        return self.gc_with.median - self.gc_without.median

    def ratio(self, figure: str, base: str) -> float:
        stats = self.sweep if figure == "sweep" else self.calls_us
        return stats[OURS if figure == "sweep" else figure].median / stats[base].median

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["gc_added_s"] = self.gc_added
        return out


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"10k,100k,1M,10M"`` -> ``(10000, 100000, 1000000, 10000000)``."""
    units = {"k": 1_000, "m": 1_000_000}
    sizes = []
    for part in text.split(","):
        part = part.strip().lower()
        scale = units.get(part[-1:], 1)
        number = float(part[:-1] if part[-1:] in units else part) * scale
        if number < CHUNKS * 10 or number != int(number):
            raise argparse.ArgumentTypeError(f"not a usable size: {part!r}")
        sizes.append(int(number))
    return tuple(sizes)


def _count(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n % 1000 == 0 else f"{n:,}"


def _load_average() -> tuple[float, ...] | None:
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except (AttributeError, OSError):
        return None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- populations --------------------------------------------------------------------------------


class _Chunks:
    """The ids of one size, made a chunk at a time and shared by every implementation.

    Tuples, not lists: a tuple of strs stops being tracked by the cyclic GC once it survives a
    collection, while a list is traversed by every one (at 10M ids, ~150 ms per gc.collect()
    that would otherwise be counted in the pause of whichever state holds more of them).
    """

    def __init__(self, n: int) -> None:
        self.size = n // CHUNKS
        self._made: dict[int, tuple[str, ...]] = {}

    def __getitem__(self, k: int) -> tuple[str, ...]:
        ids = self._made.get(k)
        if ids is None:
            ids = self._made[k] = tuple([f"c{k:02d}-{i:07d}" for i in range(self.size)])
        return ids

    def drop_below(self, k: int) -> None:
        for old in [j for j in self._made if j < k]:
            del self._made[old]


class _Rolling:
    """A population of ten chunks on its own clock; each round sweeps one chunk and adds one."""

    def __init__(self, adapter: Adapter, advance: Callable[[float], object], calls: list[int]):
        self.adapter = adapter
        self.calls = calls  # [on_expire calls]
        self._advance = advance
        self._at = 0.0  # clock time since the start
        self.round = 0

    def _move_to(self, t: float) -> None:
        if t > self._at:
            self._advance(t - self._at)
            self._at = t

    def build(self, chunks: _Chunks) -> float:
        started = time.perf_counter()
        for k in range(CHUNKS):
            self._move_to(k * STEP)
            populate(self.adapter, chunks[k])
        return time.perf_counter() - started

    def make_due(self) -> None:
        """Move the clock just past the deadline of the oldest chunk (and no other)."""
        self._move_to((self.round + CHUNKS) * STEP + PAST)

    def live_chunks(self) -> range:
        return range(self.round, self.round + CHUNKS)

    def refill(self, chunks: _Chunks, swept: object, expected: int) -> None:
        """Check the sweep that just ran, then register the next chunk (at the current time)."""
        got = len(cast(Sequence[object], swept))
        if got != expected or self.calls[0] != expected:
            raise AssertionError(
                f"{self.adapter.name} round {self.round}: expected {expected} expired, got "
                f"{got} ({self.calls[0]} on_expire calls)"
            )
        self.calls[0] = 0
        populate(self.adapter, chunks[self.round + CHUNKS])
        self.round += 1


def _ours() -> tuple[_Rolling, ConversationExpiryManager]:
    calls = [0]

    def on_expire(_state: object, _reason: object) -> None:
        calls[0] += 1

    clock = ManualClock()
    adapter = ours(TTL, clock=clock, on_expire=on_expire)
    return _Rolling(adapter, clock.advance, calls), cast(ConversationExpiryManager, adapter.target)


def _naive() -> _Rolling:
    calls = [0]

    def on_expire(_state: object) -> None:
        calls[0] += 1

    now = ManualNow()
    return _Rolling(naive(TTL, now=now, on_expire=on_expire), now.advance, calls)


# -- the figures --------------------------------------------------------------------------------


def _gc_pauses(rounds: int) -> list[float]:
    gc.collect()  # settles the generations: every later collection sees the same heap
    pauses = []
    for _ in range(rounds):
        started = time.perf_counter()
        gc.collect()
        pauses.append(time.perf_counter() - started)
    return pauses


def _timed_sweep(pop: _Rolling) -> tuple[float, object]:
    sweep = pop.adapter.sweep
    started = time.perf_counter()
    swept = sweep()
    return time.perf_counter() - started, swept


def _sweeps_alone(
    pops: dict[str, _Rolling], chunks: _Chunks, rounds: int
) -> dict[str, list[float]]:
    def run(name: str, _round: int) -> float:
        pop = pops[name]
        pop.make_due()
        seconds, swept = _timed_sweep(pop)
        pop.refill(chunks, swept, chunks.size)
        return seconds

    return interleave(list(pops), rounds, run, warmup=0)


def _sweeps_under_load(
    pop: _Rolling, manager: ConversationExpiryManager, chunks: _Chunks, rounds: int
) -> tuple[list[float], list[float], list[int], list[float], list[float]]:
    seconds: list[float] = []
    waits: list[float] = []
    during: list[int] = []
    first: list[float] = []
    second: list[float] = []
    expect = chunks.size * (CHUNKS - 1)
    for _ in range(rounds):
        pop.make_due()
        t0 = time.perf_counter()
        live = len(manager)
        first.append(time.perf_counter() - t0)
        later = []
        for _ in range(LEN_LATER):
            t0 = time.perf_counter()
            again = len(manager)
            later.append(time.perf_counter() - t0)
            if again != live:
                raise AssertionError(f"len(manager) = {live}, then {again}")
        if live != expect:
            raise AssertionError(f"len(manager) = {live}; expected {expect}")
        second.append(statistics.median(later))
        # The updater touches the newest chunk: it will not be due in any later round.
        hot = chunks[pop.round + CHUNKS - 1][:UPDATER_IDS]
        took, swept, longest, overlapping = _sweep_under_load(pop.adapter, hot)
        pop.refill(chunks, swept, chunks.size)
        seconds.append(took)
        waits.append(longest)
        during.append(overlapping)
    return seconds, waits, during, first, second


def _call_costs(
    manager: ConversationExpiryManager, pop: _Rolling, chunks: _Chunks, ops: int, rounds: int
) -> dict[str, Stat]:
    live = [chunks[k] for k in pop.live_chunks()]
    rng = Random(12)
    batches = [
        [live[rng.randrange(CHUNKS)][rng.randrange(chunks.size)] for _ in range(ops)]
        for _ in range(rounds + 1)
    ]
    exd = expiring_dict(TTL)
    for ids in live:
        populate(exd, ids)
    fns: dict[str, Callable[[str], object]] = {
        UPDATE: manager.update_activity,
        IS_EXPIRED: manager.is_expired,
        GET: manager.get,
        EXPIRINGDICT: exd.update,
    }
    try:
        if manager.is_expired(batches[0][0]) or manager.get(batches[0][0]) is None:
            raise AssertionError("the call-cost ids are not live")
        samples = interleave(
            list(fns), rounds, lambda name, r: per_call_us(fns[name], batches[r + 1]), warmup=1
        )
    finally:
        exd.close()
    return {name: summarize(values) for name, values in samples.items()}


def measure_size(n: int, s: ScaleSettings, progress: Callable[[str], None] = _stderr) -> SizeResult:
    """Every figure at one size; the cyclic GC must be off (``measure_scale`` sees to it)."""
    if s.sweep_rounds + s.load_rounds > CHUNKS - 1:
        raise ValueError(f"at most {CHUNKS - 1} sweeps per size (the updater's chunk stays live)")
    started = time.perf_counter()
    load = _load_average()
    chunks = _Chunks(n)
    for k in range(CHUNKS):
        chunks[k]
    without = _gc_pauses(s.gc_rounds)

    progress(f"{_count(n)}: building this library's population")
    mine, manager = _ours()
    build = {OURS: mine.build(chunks)}
    progress(f"{_count(n)}: building the naive port's population")
    theirs = _naive()
    build[NAIVE] = theirs.build(chunks)

    progress(f"{_count(n)}: {s.sweep_rounds} sweeps alone each")
    alone = _sweeps_alone({OURS: mine, NAIVE: theirs}, chunks, s.sweep_rounds)
    theirs.adapter.close()
    del theirs
    gc.collect()
    chunks.drop_below(mine.round)

    progress(f"{_count(n)}: len, then {s.load_rounds} sweeps under load")
    loaded, waits, during, first, second = _sweeps_under_load(mine, manager, chunks, s.load_rounds)
    chunks.drop_below(mine.round)

    progress(f"{_count(n)}: call costs (expiringdict populated)")
    calls = _call_costs(manager, mine, chunks, s.call_ops, s.call_rounds)
    gc.collect()

    progress(f"{_count(n)}: gc.collect() with the population")
    with_pop = _gc_pauses(s.gc_rounds)
    mine.adapter.close()
    del mine, manager, chunks
    without += _gc_pauses(s.gc_rounds)  # the first frees the population (it has cycles)

    per_conversation: float | None = None
    if n <= s.memory_max:
        progress(f"{_count(n)}: bytes per conversation (tracemalloc)")
        ids = tuple([f"m-{i:08d}" for i in range(n)])
        per_conversation = bytes_per_conversation([ours], ids)[LIBRARY]
        del ids
        gc.collect()

    return SizeResult(
        n=n,
        expired=n // CHUNKS,
        load_average=load,
        build_s=build,
        sweep={name: summarize(v) for name, v in alone.items()},
        calls_us=calls,
        sweep_under_load=summarize(loaded),
        longest_wait=summarize(waits),
        updates_during=round(statistics.median(during)),
        len_first=summarize(first),
        len_second=summarize(second),
        gc_without=summarize(without),
        gc_with=summarize(with_pop),
        bytes_per_conversation=per_conversation,
        seconds=time.perf_counter() - started,
    )


def measure_scale(s: ScaleSettings, progress: Callable[[str], None] = _stderr) -> list[SizeResult]:
    """Every size of ``s``, smallest first, in this process."""
    results = []
    gc.collect()
    with gc_paused():
        for n in s.sizes:
            results.append(measure_size(n, s, progress))
            gc.collect()
    return results


# -- the report ---------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}" if seconds >= 0.01 else f"{seconds * 1e3:.2f}"


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _rows(results: Sequence[SizeResult]) -> list[tuple[str, Callable[[SizeResult], str]]]:
    def calls(name: str) -> Callable[[SizeResult], str]:
        return lambda r: f"{r.calls_us[name].median:.2f}"

    return [
        ("expired per sweep", lambda r: f"{r.expired:,}"),
        (
            "build: ours / naive port, s",
            lambda r: f"{r.build_s[OURS]:.1f} / {r.build_s[NAIVE]:.1f}",
        ),
        ("**sweep alone, ours, ms**", lambda r: _ms(r.sweep[OURS].median)),
        ("sweep alone, naive port, ms", lambda r: _ms(r.sweep[NAIVE].median)),
        ("**sweep: ours / naive** (target <= 0.5x)", lambda r: _x(r.ratio("sweep", NAIVE))),
        (
            "sweep alone, ours, ns per expired",
            lambda r: f"{r.sweep[OURS].median / r.expired * 1e9:.0f}",
        ),
        ("**update_activity, us**", calls(UPDATE)),
        ("expiringdict set, us", calls(EXPIRINGDICT)),
        ("**update / expiringdict** (target <= 1x)", lambda r: _x(r.ratio(UPDATE, EXPIRINGDICT))),
        ("is_expired, us", calls(IS_EXPIRED)),
        ("**is_expired / update** (target <= 1x)", lambda r: _x(r.ratio(IS_EXPIRED, UPDATE))),
        ("get, us", calls(GET)),
        ("**get / update** (target <= 1x)", lambda r: _x(r.ratio(GET, UPDATE))),
        ("sweep under load, ms", lambda r: _ms(r.sweep_under_load.median)),
        ("updates overlapping it", lambda r: f"{r.updates_during:,}"),
        (
            "**longest update wait, ms** (target <= 10), median (worst)",
            lambda r: f"{_ms(r.longest_wait.median)} ({_ms(r.longest_wait.high)})",
        ),
        ("len(), first call, ms", lambda r: _ms(r.len_first.median)),
        (
            f"len(), second call (median of calls 2-{LEN_LATER + 1}), us",
            lambda r: f"{r.len_second.median * 1e6:.1f}",
        ),
        ("gc.collect() without population, ms", lambda r: _ms(r.gc_without.median)),
        ("gc.collect() with population, ms", lambda r: _ms(r.gc_with.median)),
        ("**GC pause added, ms** (target <= 100 at 10M)", lambda r: _ms(r.gc_added)),
        ("GC pause added per conversation, ns", lambda r: f"{r.gc_added / r.n * 1e9:.0f}"),
        (
            "**bytes per conversation** (target <= 127 at 1M)",
            lambda r: (
                "—" if r.bytes_per_conversation is None else f"{r.bytes_per_conversation:.0f}"
            ),
        ),
        (
            "load average at start",
            lambda r: "—" if r.load_average is None else f"{r.load_average[0]:.1f}",
        ),
        ("wall time for this size, s", lambda r: f"{r.seconds:.0f}"),
    ]


def scale_table(results: Sequence[SizeResult]) -> str:
    head = ["figure (medians)", *(f"N = {_count(r.n)}" for r in results)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, cell in _rows(results):
        lines.append("| " + " | ".join([label, *(cell(r) for r in results)]) + " |")
    return "\n".join(lines)


def _at_every_size(
    results: Sequence[SizeResult], value: Callable[[SizeResult], float], limit: float, fmt: str
) -> tuple[bool, str]:
    passed = all(value(r) <= limit for r in results)
    return passed, ", ".join(f"{_count(r.n)} {format(value(r), fmt)}" for r in results)


def _ratio_of(figure: str, base: str) -> Callable[[SizeResult], float]:
    return lambda r: r.ratio(figure, base)


def scale_verdicts(results: Sequence[SizeResult]) -> list[Verdict]:
    out: list[Verdict] = []
    ok, detail = _at_every_size(results, lambda r: r.ratio("sweep", NAIVE), 0.5, ".2f")
    out.append(Verdict(ok, "target 2: sweep alone <= 0.5x naive port, every size", detail))
    for figure, base, target in (
        (UPDATE, EXPIRINGDICT, "target 3: update_activity <= expiringdict"),
        (IS_EXPIRED, UPDATE, "target 3: is_expired <= update_activity"),
        (GET, UPDATE, "target 3: get <= update_activity"),
    ):
        ok, detail = _at_every_size(results, _ratio_of(figure, base), 1.0, ".2f")
        out.append(Verdict(ok, f"{target}, every size", f"ratio {detail}"))
    ok, detail = _at_every_size(results, lambda r: r.longest_wait.median * 1e3, 10.0, ".1f")
    out.append(
        Verdict(
            ok,
            "target 4: longest update_activity wait during a sweep <= 10 ms, every size",
            f"median over sweeps, ms: {detail}; worst single sweep "
            + ", ".join(f"{_count(r.n)} {r.longest_wait.high * 1e3:.1f}" for r in results),
        )
    )
    largest = results[-1]
    added_10m = largest.gc_added / largest.n * 10_000_000
    scaled = "" if largest.n == 10_000_000 else f" (extrapolated from {_count(largest.n)})"
    out.append(
        Verdict(
            added_10m <= 0.100,
            "target 5: full gc.collect() pause added by 10M conversations <= 100 ms",
            f"{added_10m * 1e3:.0f} ms{scaled}; added per conversation, ns: "
            + ", ".join(f"{_count(r.n)} {r.gc_added / r.n * 1e9:.0f}" for r in results),
        )
    )
    sized = [r for r in results if r.bytes_per_conversation is not None]
    if sized:
        m = sized[-1]
        per = cast(float, m.bytes_per_conversation)
        out.append(
            Verdict(
                per <= 127,
                "target 5: bytes per conversation <= 127 B at 1M",
                f"{per:.0f} B at {_count(m.n)}",
            )
        )
    small, big = results[0], results[-1]
    growth = big.len_second.median / small.len_second.median
    out.append(
        Verdict(
            len(results) < 2 or growth <= 3.0,
            "len() with N/10 past due: O(1) amortized (second call within 3x from smallest to "
            "largest size)",
            f"second call {small.len_second.median * 1e6:.1f} us at {_count(small.n)}, "
            f"{big.len_second.median * 1e6:.1f} us at {_count(big.n)} ({growth:.1f}x for "
            f"{big.n // small.n}x the conversations); first call "
            + ", ".join(f"{_count(r.n)} {_ms(r.len_first.median)} ms" for r in results),
        )
    )
    covered = {10_000, 100_000, 1_000_000, 10_000_000} <= {r.n for r in results}
    out.append(
        Verdict(
            covered,
            "target 6: the figures cover 10k / 100k / 1M / 10M",
            "sizes measured: " + ", ".join(_count(r.n) for r in results),
        )
    )
    return out


def render_scale(results: Sequence[SizeResult], header: Sequence[str] = ()) -> str:
    return "\n".join(
        [
            *header,
            "",
            "### Growth with size (issue 12)",
            "",
            scale_table(results),
            "",
            "### Targets (issue 12)",
            "",
            *(v.line() for v in scale_verdicts(results)),
        ]
    )


def _header(s: ScaleSettings, env: dict[str, Any]) -> list[str]:
    return [
        f"## conversation-expiry at scale ({s.mode} mode)",
        "",
        f"- {env['date']}; {env['python']} on {env['platform']}, {env['cores']} cores, load "
        f"average at start {env['load_average_at_start']} (revision {env['revision']})",
        f"- sizes {', '.join(_count(n) for n in s.sizes)}; N/{CHUNKS} past due per sweep, "
        f"on_expire set; {s.sweep_rounds} sweeps alone per implementation (who goes first "
        f"alternates), {s.load_rounds} sweeps under load (an updater thread over "
        f"{UPDATER_IDS:,} live ids)",
        f"- call costs: {s.call_rounds} rotating rounds of {s.call_ops:,} calls on random live "
        "ids; the cyclic GC is off except for the gc.collect() figures "
        f"({s.gc_rounds} per state); bytes by tracemalloc up to {_count(s.memory_max)}",
    ]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import environment  # here: run.py may import this module

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10k-1M, fewer rounds: ~2 minutes")
    parser.add_argument("--sizes", type=parse_sizes, help="e.g. 10k,100k,1M,10M")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the raw figures")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.sizes:
        settings = ScaleSettings(**{**asdict(settings), "sizes": args.sizes})
    env = environment()
    started = time.perf_counter()

    def progress(message: str) -> None:
        _stderr(f"[{time.perf_counter() - started:6.1f}s] {message}")

    results = measure_scale(settings, progress)
    runtime = time.perf_counter() - started
    env["load_average_at_end"] = _load_average()
    print(render_scale(results, _header(settings, env)))
    print(f"\nruntime {runtime:.0f} s; load average at end {env['load_average_at_end']}")
    if args.json is not None:
        payload = {
            "environment": env,
            "settings": asdict(settings),
            "runtime_s": runtime,
            "sizes": [r.as_dict() for r in results],
            "targets": [
                {"target": v.target, "passed": v.passed, "detail": v.detail}
                for v in scale_verdicts(results)
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
