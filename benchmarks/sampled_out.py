"""Issue 12, target 1: what an OpenTelemetry SDK that samples everything out costs.

Three managers hold the same live conversations: one with no SDK (the API alone, nothing
configured), one with ``TracerProvider(sampler=ParentBased(ALWAYS_OFF))`` passed in, and one with
that and a ``MeterProvider`` (an in-memory reader). Figures, in one process and interleaved
round by round (a rotation, see ``measure.interleave``), medians over rounds:

* ``update_activity`` us per call on random live ids, with no current span (a root, as a
  background job calls it) and, for the SDK, inside an unsampled request span (a child: what a
  service sampling at its edge runs for most requests);
* a sweep's cost per expired conversation: ``expired`` conversations registered on a hand-moved
  clock, moved past their deadline, then one ``cleanup_expired()`` timed (``on_expire`` set);
* what the decision costs against what it saves: ``Telemetry.dropped`` versus
  ``start_span`` + ``end`` for a child of an unsampled span;
* with the ``MeterProvider``, how many lag histogram points and removal counts one sweep left
  (per batch: at most ``expired / SWEEP_BATCH``, batches grow while quick; per conversation:
  ``expired``).

Cyclic GC is paused while timing, as ``timeit`` does. The verdicts use paired figures: the
median over rounds of each round's ratio (or difference) between two configurations, which run
next to each other in that round, so a drift of the machine's speed cancels out.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from random import Random
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from conversation_expiry import ConversationExpiryManager, ManualClock

from .measure import Stat, gc_paused, interleave, per_call_us, summarize

__all__ = ["SampledOut", "measure_sampled_out", "render_sampled_out", "sampled_out_verdicts"]

NO_SDK = "no SDK"
SDK = "SDK, ParentBased(ALWAYS_OFF)"
SDK_METRICS = "SDK, ParentBased(ALWAYS_OFF) + MeterProvider"
SDK_CHILD = "SDK, ParentBased(ALWAYS_OFF), in an unsampled request span"
CONFIGS = (NO_SDK, SDK, SDK_METRICS)

UPDATE_FACTOR = 1.5
SWEEP_FACTOR = 2.0
METRICS_BUDGET_US = 0.3
BATCH = 256  # the manager's SWEEP_BATCH: a sweep's first batch; quick batches grow from it
TTL = 60.0


@dataclass(frozen=True)
class SampledOut:
    live: int
    expired: int
    update: dict[str, Stat]  # us per update_activity, by configuration
    sweep: dict[str, Stat]  # us per expired conversation in one sweep, by configuration
    decision_us: Stat  # the skip decision for a child of an unsampled span
    start_span_us: Stat  # start_span + end of that child, what the decision saves
    lag_points: int  # cleanup.lag histogram count after one sweep of `expired`
    removed_total: int  # conversation.removed sum after that sweep

    def as_dict(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "expired": self.expired,
            "update_activity_us": {k: v.as_dict() for k, v in self.update.items()},
            "sweep_us_per_expired": {k: v.as_dict() for k, v in self.sweep.items()},
            "decision_us": self.decision_us.as_dict(),
            "start_span_us": self.start_span_us.as_dict(),
            "lag_points": self.lag_points,
            "removed_total": self.removed_total,
        }


class _Sdk:
    """The providers of one configuration, passed in (nothing is installed globally)."""

    def __init__(self, metrics: bool) -> None:
        self.tracer_provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
        self.reader = InMemoryMetricReader() if metrics else None
        self.meter_provider = (
            MeterProvider(metric_readers=[self.reader]) if self.reader is not None else None
        )

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tracer_provider": self.tracer_provider}
        if self.meter_provider is not None:
            out["meter_provider"] = self.meter_provider
        return out

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def _sdks() -> dict[str, _Sdk | None]:
    return {NO_SDK: None, SDK: _Sdk(False), SDK_METRICS: _Sdk(True)}


@contextmanager
def _unsampled_request(sdk: _Sdk) -> Iterator[None]:
    """An unsampled request span made current, as a web framework's instrumentation does."""
    span = sdk.tracer_provider.get_tracer("benchmark.web").start_span("GET /chat")
    assert not span.get_span_context().trace_flags.sampled
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        otel_context.detach(token)
        span.end()


def _update_costs(
    sdks: dict[str, _Sdk | None], live: int, ops: int, rounds: int
) -> dict[str, Stat]:
    ids = [f"live-{i:07d}" for i in range(live)]
    managers: dict[str, ConversationExpiryManager] = {}
    for name, sdk in sdks.items():
        m = ConversationExpiryManager(
            TTL * 60, 60.0, autostart=False, **(sdk.kwargs() if sdk else {})
        )
        with gc_paused():
            for cid in ids:
                m.register_conversation(cid)
        managers[name] = m
    sdk_child = sdks[SDK]
    assert sdk_child is not None
    rng = Random(12)
    batches = [rng.sample(ids, ops) for _ in range(rounds + 1)]

    def run(name: str, r: int) -> float:
        update = managers[SDK if name == SDK_CHILD else name].update_activity
        with gc_paused():
            if name == SDK_CHILD:
                with _unsampled_request(sdk_child):
                    return per_call_us(update, batches[r + 1])
            return per_call_us(update, batches[r + 1])

    try:
        samples = interleave([*CONFIGS, SDK_CHILD], rounds, run)
    finally:
        for m in managers.values():
            m.stop()
    return {name: summarize(v) for name, v in samples.items()}


def _sweep_us(sdk: _Sdk | None, ids: Sequence[str]) -> float:
    """us per expired conversation of one sweep that expires all of ``ids``."""
    clock = ManualClock()
    calls = [0]

    def on_expire(_state: object, _reason: object) -> None:
        calls[0] += 1

    m = ConversationExpiryManager(
        TTL, 60.0, clock=clock, autostart=False, on_expire=on_expire,
        **(sdk.kwargs() if sdk else {}),
    )
    try:
        with gc_paused():
            for cid in ids:
                m.register_conversation(cid)
        clock.advance(TTL + 1)
        gc.collect()
        with gc_paused():
            started = time.perf_counter_ns()
            expired = m.cleanup_expired()
            elapsed = time.perf_counter_ns() - started
    finally:
        m.stop()
    assert len(expired) == len(ids) == calls[0], (len(expired), calls[0])
    return elapsed / len(ids) / 1_000


def _sweep_costs(sdks: dict[str, _Sdk | None], expired: int, rounds: int) -> dict[str, Stat]:
    ids = [f"exp-{i:07d}" for i in range(expired)]
    samples = interleave(list(CONFIGS), rounds, lambda name, _r: _sweep_us(sdks[name], ids))
    return {name: summarize(v) for name, v in samples.items()}


def _points(reader: InMemoryMetricReader) -> tuple[int, int]:
    """(cleanup.lag histogram count, conversation.removed sum) of what the reader collects."""
    data = reader.get_metrics_data()
    lag = removed = 0
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    if metric.name == "conversation_expiry.cleanup.lag":
                        lag += point.count  # type: ignore[union-attr]
                    elif metric.name == "conversation_expiry.conversation.removed":
                        removed += int(point.value)  # type: ignore[union-attr]
    return lag, removed


def _metric_points(expired: int) -> tuple[int, int]:
    sdk = _Sdk(True)
    try:
        _sweep_us(sdk, [f"pts-{i:07d}" for i in range(expired)])
        assert sdk.reader is not None
        return _points(sdk.reader)
    finally:
        sdk.shutdown()


def _decision_costs(sdk: _Sdk, ops: int, rounds: int) -> tuple[Stat, Stat]:
    m = ConversationExpiryManager(TTL, 60.0, autostart=False, **sdk.kwargs())
    telemetry = m._telemetry
    tracer = sdk.tracer_provider.get_tracer("benchmark")
    args = ["x"] * ops

    def decide(_x: str) -> object:
        return telemetry.dropped(True)

    def start(_x: str) -> object:
        span = tracer.start_span("child", record_exception=False, set_status_on_exception=False)
        span.end()
        return span

    fns: dict[str, Callable[[str], object]] = {"decision": decide, "start_span": start}

    def run(name: str, _r: int) -> float:
        with gc_paused(), _unsampled_request(sdk):
            return per_call_us(fns[name], args)

    try:
        samples = interleave(list(fns), rounds, run)
    finally:
        m.stop()
    return summarize(samples["decision"]), summarize(samples["start_span"])


def measure_sampled_out(
    live: int, ops: int, rounds: int, expired: int, sweep_rounds: int
) -> SampledOut:
    sdks = _sdks()
    try:
        update = _update_costs(sdks, live, ops, rounds)
        sweep = _sweep_costs(sdks, expired, sweep_rounds)
        sdk = sdks[SDK]
        assert sdk is not None
        decision, start = _decision_costs(sdk, ops, rounds)
    finally:
        for sdk_ in sdks.values():
            if sdk_ is not None:
                sdk_.shutdown()
    lag_points, removed_total = _metric_points(expired)
    return SampledOut(live, expired, update, sweep, decision, start, lag_points, removed_total)


# -- report -----------------------------------------------------------------------------------


def _cell(stat: Stat, base: Stat) -> list[str]:
    ratio = stat.median / base.median
    return [f"{stat.median:.2f} ({stat.low:.2f}-{stat.high:.2f})", f"{ratio:.2f}x"]


def render_sampled_out(res: SampledOut) -> str:
    base_u, base_s = res.update[NO_SDK], res.sweep[NO_SDK]
    rows = []
    for name in (*CONFIGS, SDK_CHILD):
        sweep = res.sweep.get(name)
        swept = _cell(sweep, base_s) if sweep else ["—", "—"]
        rows.append([name, *_cell(res.update[name], base_u), *swept])
    head = [
        "configuration",
        f"update_activity us/op, {res.live // 1000}k live",
        "x no SDK",
        f"sweep us per expired ({res.expired // 1000}k expired)",
        "x no SDK",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [
        "",
        f"Child of an unsampled span: the skip decision {res.decision_us.median:.2f} us vs "
        f"start_span + end {res.start_span_us.median:.2f} us (what it saves). One sweep of "
        f"{res.expired:,} expired with the MeterProvider left {res.lag_points:,} lag points and "
        f"counted {res.removed_total:,} removals.",
    ]
    return "\n".join(lines)


def paired_ratio(ours: Stat, base: Stat) -> float:
    """The median over rounds of ours / base within each round."""
    return statistics.median(a / b for a, b in zip(ours.samples, base.samples, strict=True))


def paired_difference(ours: Stat, base: Stat) -> float:
    """The median over rounds of ours - base within each round."""
    return statistics.median(a - b for a, b in zip(ours.samples, base.samples, strict=True))


def sampled_out_verdicts(res: SampledOut) -> list[tuple[bool, str, str]]:
    """(passed, target, detail) for each part of issue 12's target 1."""
    out: list[tuple[bool, str, str]] = []
    base = res.update[NO_SDK]
    for name in (SDK, SDK_CHILD):
        ratio = paired_ratio(res.update[name], base)
        out.append((
            ratio <= UPDATE_FACTOR,
            f"update_activity with {name} <= {UPDATE_FACTOR:g}x no SDK",
            f"paired ratio {ratio:.2f}x (medians {res.update[name].median:.2f} us vs "
            f"{base.median:.2f} us)",
        ))
    base_s = res.sweep[NO_SDK]
    for name in (SDK, SDK_METRICS):
        ratio = paired_ratio(res.sweep[name], base_s)
        out.append((
            ratio <= SWEEP_FACTOR,
            f"sweep per expired conversation with {name} <= {SWEEP_FACTOR:g}x no SDK",
            f"paired ratio {ratio:.2f}x (medians {res.sweep[name].median:.3f} us vs "
            f"{base_s.median:.3f} us)",
        ))
    added = paired_difference(res.update[SDK_METRICS], res.update[SDK])
    out.append((
        added <= METRICS_BUDGET_US,
        f"metrics add <= {METRICS_BUDGET_US:g} us per update_activity",
        f"paired difference {added:+.2f} us (medians {res.update[SDK_METRICS].median:.2f} vs "
        f"{res.update[SDK].median:.2f} us; update_activity records no metric)",
    ))
    batches = math.ceil(res.expired / BATCH)
    out.append((
        res.lag_points <= batches and res.removed_total == res.expired,
        "sweep metrics recorded per batch",
        f"{res.lag_points:,} lag points for {res.expired:,} expired (batches of {BATCH} would "
        f"make {batches:,}); removed counter {res.removed_total:,}",
    ))
    return out
