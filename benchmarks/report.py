"""The Markdown tables and the PASS/FAIL lines, from the figures of one run."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .adapters import CACHETOOLS, EXPIRINGDICT, FLOOR, ISSUE3, NAIVE, OURS
from .lag import LagResult
from .locks import CLASSES
from .measure import Stat
from .sweep import SweepRun

__all__ = ["Results", "Verdict", "render", "verdicts"]


@dataclass(frozen=True)
class Results:
    live: int  # live conversations during the call-cost figures
    update: dict[str, Stat]  # us per update_activity, by implementation or configuration
    register: dict[str, Stat]  # us per register_conversation
    threads: int
    rates: dict[str, Stat]  # aggregate update_activity calls per second from `threads` threads
    memory_n: int
    memory: dict[str, float]  # bytes per live conversation at memory_n
    sweep_total: int
    sweep_expired: int
    sweeps: list[SweepRun]
    lags: list[LagResult]
    locks: dict[str, Stat]  # us per acquire + release, see locks.py

    # -- derived figures -------------------------------------------------------------------

    def sweep_seconds(self, name: str, under_load: bool) -> float | None:
        runs = [s.seconds for s in self.sweeps if s.name == name and s.under_load is under_load]
        return statistics.median(runs) if runs else None

    def longest_waits(self, name: str) -> list[float]:
        """Per sweep under load: the longest update_activity call that overlapped it."""
        runs = [s for s in self.sweeps if s.name == name and s.under_load]
        return [s.longest_wait for s in runs if s.longest_wait is not None]

    def longest_wait(self, name: str) -> float | None:
        """The median over sweeps of the longest wait in each (robust to one noisy sweep)."""
        waits = self.longest_waits(name)
        return statistics.median(waits) if waits else None

    def updates_during_sweep(self, name: str) -> int | None:
        runs = [s for s in self.sweeps if s.name == name and s.under_load]
        counts = [s.updates_during for s in runs if s.updates_during is not None]
        return round(statistics.median(counts)) if counts else None

    def lag(self, name: str) -> LagResult | None:
        return next((r for r in self.lags if r.name == name), None)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    target: str
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.target}: {self.detail}"


# -- formatting -------------------------------------------------------------------------------


def _us(stat: Stat | None) -> str:
    return "—" if stat is None else f"{stat.median:.2f} ({stat.low:.2f}-{stat.high:.2f})"


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1e3:.1f}"


def _ratio(ours: float | None, base: float | None) -> str:
    return "—" if ours is None or not base else f"{ours / base:.2f}x"


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _lag_cell(result: LagResult | None) -> str:
    if result is None or not result.lags:
        return "—"
    lags = result.lags
    cell = (
        f"{statistics.median(lags) * 1e3:.1f} / {_percentile(lags, 0.95) * 1e3:.1f} / "
        f"{max(lags) * 1e3:.1f}"
    )
    return cell + (f" ({result.missing} never expired)" if result.missing else "")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- the tables -------------------------------------------------------------------------------


def figures_table(res: Results) -> str:
    head = [
        "implementation",
        f"update_activity us/op, {res.live // 1000}k live",
        "register us/op",
        f"updates/s, {res.threads} threads",
        f"bytes/conversation at {_count(res.memory_n)}",
        "sweep alone ms",
        "sweep under load ms (updates meanwhile)",
        "longest update wait ms, median over sweeps",
        "cleanup lag ms median / p95 / max",
    ]
    rows = []
    for name in ISSUE3:
        rate = res.rates.get(name)
        mem = res.memory.get(name)
        rows.append(
            [
                f"**{name}**" if name == OURS else name,
                _us(res.update.get(name)),
                _us(res.register.get(name)),
                "—" if rate is None else f"{rate.median:,.0f}",
                "—" if mem is None else f"{mem:.0f}",
                _ms(res.sweep_seconds(name, False)),
                _under_load(res, name),
                _wait_cell(res, name),
                _lag_cell(res.lag(name)),
            ]
        )
    return _table(head, rows)


def _wait_cell(res: Results, name: str) -> str:
    waits = res.longest_waits(name)
    if len(waits) < 2:
        return _ms(res.longest_wait(name))
    return f"{_ms(res.longest_wait(name))} (worst {_ms(max(waits))})"


def _under_load(res: Results, name: str) -> str:
    seconds = res.sweep_seconds(name, True)
    if seconds is None:
        return "—"
    return f"{_ms(seconds)} ({res.updates_during_sweep(name):,})"


def _median(stats: dict[str, Stat], name: str) -> float | None:
    stat = stats.get(name)
    return None if stat is None else stat.median


def ratio_table(res: Results) -> str:
    bases = [NAIVE, CACHETOOLS, EXPIRINGDICT, FLOOR]
    figures: list[tuple[str, Callable[[str], float | None]]] = [
        ("update_activity cost (lower is better)", lambda n: _median(res.update, n)),
        ("register cost (lower is better)", lambda n: _median(res.register, n)),
        (
            f"updates/s from {res.threads} threads (higher is better)",
            lambda n: _median(res.rates, n),
        ),
        ("bytes per conversation (lower is better)", res.memory.get),
        ("sweep alone (lower is better)", lambda n: res.sweep_seconds(n, False)),
        ("longest update wait during sweep (lower is better)", res.longest_wait),
        ("cleanup lag, median (lower is better)", lambda n: _lag_median(res, n)),
    ]
    rows = [[label, *(_ratio(get(OURS), get(b)) for b in bases)] for label, get in figures]
    return _table([f"{OURS} as a multiple of", *bases], rows)


def _lag_median(res: Results, name: str) -> float | None:
    result = res.lag(name)
    return statistics.median(result.lags) if result is not None and result.lags else None


def variants_table(res: Results) -> str:
    base_u = _median(res.update, OURS)
    base_r = _median(res.register, OURS)
    rows = []
    for name in res.update:
        if name != OURS and not name.startswith(OURS):
            continue
        rows.append(
            [
                name,
                _us(res.update.get(name)),
                _ratio(_median(res.update, name), base_u),
                _us(res.register.get(name)),
                _ratio(_median(res.register, name), base_r),
            ]
        )
    head = ["configuration", "update_activity us/op", "x plain", "register us/op", "x plain"]
    return _table(head, rows)


def locks_table(res: Results) -> str:
    rows = []
    for name in ["threading.Lock", *CLASSES]:
        write = res.locks.get(f"{name} write", res.locks.get(name))
        rows.append([name, _us(write), _us(res.locks.get(f"{name} read"))])
    return _table(["lock", "write side us", "read side us"], rows)


def _count(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


# -- targets ----------------------------------------------------------------------------------


def verdicts(res: Results) -> list[Verdict]:
    out: list[Verdict] = []
    ours_u = res.update[OURS].median
    for base, factor in ((CACHETOOLS, 0.8), (FLOOR, 3.0)):
        b = res.update[base].median
        out.append(
            Verdict(
                ours_u <= factor * b,
                f"update_activity <= {factor:g}x {base}",
                f"{ours_u:.2f} us vs {factor:g} x {b:.2f} = {factor * b:.2f} us "
                f"(ratio {ours_u / b:.2f}x)",
            )
        )
    wait = res.longest_wait(OURS)
    per_sweep = ", ".join(_ms(w) for w in res.longest_waits(OURS))
    out.append(
        Verdict(
            wait is not None and wait <= 0.010,
            "longest update_activity wait during a sweep <= 10 ms",
            f"{_ms(wait)} ms, median over sweeps of {_count(res.sweep_total)} live / "
            f"{_count(res.sweep_expired)} expired (each sweep: {per_sweep} ms; naive port: "
            f"{_ms(res.longest_wait(NAIVE))} ms)",
        )
    )
    ours_s = res.sweep_seconds(OURS, False)
    naive_s = res.sweep_seconds(NAIVE, False)
    out.append(
        Verdict(
            ours_s is not None and naive_s is not None and ours_s <= 0.5 * naive_s,
            "sweep alone <= 0.5x naive port",
            f"{_ms(ours_s)} ms vs 0.5 x {_ms(naive_s)} ms (ratio {_ratio(ours_s, naive_s)})",
        )
    )
    mem = res.memory[OURS]
    for base, factor in ((EXPIRINGDICT, 1.0), (CACHETOOLS, 0.8)):
        b = res.memory[base]
        out.append(
            Verdict(
                mem <= factor * b,
                f"bytes per conversation <= {factor:g}x {base}",
                f"{mem:.0f} B vs {factor:g} x {b:.0f} = {factor * b:.0f} B at "
                f"{_count(res.memory_n)} (ratio {mem / b:.2f}x)",
            )
        )
    return out


def render(res: Results, header: Sequence[str]) -> str:
    parts = [
        *header,
        "",
        "### Figures (medians of interleaved rounds; min-max in parentheses)",
        "",
        figures_table(res),
        "",
        "### Ratios to the baselines",
        "",
        ratio_table(res),
        "",
        "### Options and telemetry (issues 4 and 5): cost versus the plain configuration",
        "",
        variants_table(res),
        "",
        "### Lock classes: one uncontended acquire + release (issue 3, lock choice)",
        "",
        locks_table(res),
        "",
        "### Targets (issue 3)",
        "",
        *(v.line() for v in verdicts(res)),
    ]
    return "\n".join(parts)
