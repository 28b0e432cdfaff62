"""``python -m conversation_expiry demo``: a simulated chat workload on the in-memory store."""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from ._manager import ConversationExpiryManager
from ._state import ConversationState, ExpiryReason

__all__ = ["add_parser", "main", "run_demo"]


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand to ``python -m conversation_expiry``'s parser."""
    demo = commands.add_parser(
        "demo",
        help="run a simulated chat workload and print expiries as they happen",
        description="Simulate users chatting, going quiet and coming back; print each cleanup, "
        "live counts every second, and a summary. Exits by itself after --duration seconds.",
    )
    demo.add_argument("--conversations", type=_positive(int), default=300, metavar="N",
                      help="conversations to start (default: 300)")
    demo.add_argument("--ttl", type=_positive(float), default=3.0, metavar="SECONDS",
                      help="idle time before a conversation expires (default: 3)")
    demo.add_argument("--duration", type=_positive(float), default=15.0, metavar="SECONDS",
                      help="how long the simulation runs (default: 15)")
    demo.add_argument("--interval", type=_positive(float), default=0.25, metavar="SECONDS",
                      help="cleanup interval of the background thread (default: 0.25)")
    demo.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    demo.add_argument("--quiet", action="store_true",
                      help="print only the summary, not each cleanup, return and live count")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conversation_expiry")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


class _Tally:
    """What the demo saw, filled in by the cleanup callbacks (from the cleanup thread)."""

    def __init__(self, out: TextIO, quiet: bool, started: float) -> None:
        self.lock = threading.Lock()
        self.out = out
        self.quiet = quiet
        self.started = started
        self.by_reason: dict[ExpiryReason, int] = dict.fromkeys(ExpiryReason, 0)
        self.lags: list[float] = []
        self.released = 0

    def on_expire(self, state: ConversationState, reason: ExpiryReason) -> None:
        lag = time.time() - state.expires_at.timestamp()
        with self.lock:
            self.by_reason[reason] += 1
            if reason is ExpiryReason.EXPIRED:
                self.lags.append(max(0.0, lag))
        if not self.quiet and reason is not ExpiryReason.SHUTDOWN:
            idle = (state.expires_at - state.last_activity).total_seconds()
            self.out.write(
                f"[{time.monotonic() - self.started:6.2f}s] {reason.value:8s} {state.id} "
                f"(idle {idle:.1f}s, cleanup lag {lag * 1000:.0f} ms)\n"
            )


def run_demo(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the simulation ``args`` describe, writing to ``out`` (default: the current stdout)."""
    if out is None:
        out = sys.stdout
    rng = random.Random(args.seed)
    started = time.monotonic()
    tally = _Tally(out, args.quiet, started)
    ids = [f"conv-{i:04d}" for i in range(args.conversations)]
    # Each simulated user talks at their own pace, stops at some point, and may come back.
    pace = {cid: rng.uniform(0.2, 2.5) * args.ttl for cid in ids}
    stops_at = {cid: rng.uniform(0.1, 1.0) * args.duration for cid in ids}
    returns_at = {cid: stops_at[cid] + args.ttl * rng.uniform(1.5, 3.0) for cid in ids}
    next_message = {cid: rng.uniform(0, pace[cid]) for cid in ids}
    registered = fresh_returns = 0

    with ConversationExpiryManager(args.ttl, args.interval, on_expire=tally.on_expire) as manager:
        for cid in ids:
            manager.register_conversation(cid)
            manager.add_cleanup(cid, lambda: _release(tally))
            registered += 1
        next_report = 1.0
        while (elapsed := time.monotonic() - started) < args.duration:
            for cid in ids:
                active = elapsed < stops_at[cid] or elapsed >= returns_at[cid]
                if not active or elapsed < next_message[cid]:
                    continue
                next_message[cid] = elapsed + rng.expovariate(1 / pace[cid])
                _state, fresh = manager.ensure_conversation(cid)
                if fresh:
                    fresh_returns += 1
                    registered += 1
                    manager.add_cleanup(cid, lambda: _release(tally))
                    if not args.quiet:
                        out.write(f"[{elapsed:6.2f}s] returned {cid}: expired, so it starts "
                                  "afresh\n")
            if elapsed >= next_report and not args.quiet:
                out.write(f"[{elapsed:6.2f}s] live {len(manager):4d} | "
                          f"expired {tally.by_reason[ExpiryReason.EXPIRED]:4d} | "
                          f"registered {registered:4d}\n")
                next_report += 1.0
            time.sleep(0.02)  # the simulated users' think time, not a stand-in for logic
        live_at_end = len(manager)
        manager.stop(timeout=5, cleanup_remaining=True)

    lags = tally.lags
    out.write("\nsummary\n")
    out.write(f"  registered          {registered} ({fresh_returns} fresh after expiry)\n")
    out.write(f"  expired             {tally.by_reason[ExpiryReason.EXPIRED]}\n")
    out.write(f"  still live at end   {live_at_end} (cleaned at shutdown: "
              f"{tally.by_reason[ExpiryReason.SHUTDOWN]})\n")
    out.write(f"  resources released  {tally.released} (one per conversation, exactly once)\n")
    if lags:
        out.write(f"  cleanup lag         median {statistics.median(lags) * 1000:.0f} ms, "
                  f"max {max(lags) * 1000:.0f} ms (cleanup interval {args.interval:g} s)\n")
    return 0 if tally.released == registered else 1


def _release(tally: _Tally) -> None:
    with tally.lock:
        tally.released += 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_demo(args)
