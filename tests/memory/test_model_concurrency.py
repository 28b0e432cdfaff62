"""Guarantee 4 under concurrency: batched sweeps racing updates lose no activity.

Several threads update a set of tracked ids while a sweeper thread runs ``cleanup_expired`` in a
loop and a controller moves a ManualClock. Each round the controller registers decoys (more than
one sweep batch) that expire a few rounds later, so sweeps remove conversations in batches while
updates run. The schedule keeps every tracked id updated within its TTL, so none may ever expire;
and it is tight enough that one lost update makes that id expire at the round's sweep, which the
self-check at the bottom demonstrates with a store that drops one update.

A round, with the clock at T:
  1. the updaters update each tracked id once, while the controller advances the clock by 0.5
     four times (to T + 2) and the sweeper sweeps;
  2. once all updates returned, the controller advances to T + 8 and waits for a full sweep.
Every tracked id was updated at T or later (deadline >= T + 10), and the next round's updates
happen by T + 10, so none expires. An update lost in round k leaves the id's last activity at
most T - 6 (from round k - 1), so the sweep at T + 8 expires it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from support import EVERY_STORE

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationState,
    ExpiryReason,
    ManualClock,
    MemoryStore,
)

STORE_KINDS = EVERY_STORE

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
TTL = 10.0
THREADS = 4
TRACKED = [f"t{i}" for i in range(48)]
DECOYS_PER_ROUND = 700  # more than the manager's sweep batch (256)
ROUNDS = 20
WAIT = 10.0


CONFIGS = {
    "plain": ({}, None),
    # warnings: the tracked ids enter their window (last + 7) before each round's sweep, so
    # sweeps move them to the warned list while updates move them back
    "warnings": ({"warning_before": 3.0, "on_warning": lambda state: None}, None),
    # max_age far away and a per-conversation TTL: the general (non-inlined) update path
    "max_age and own ttl": ({"max_age": 1e6}, TTL + 0.5),
}


class Race:
    def __init__(self, store=None, options=None, tracked_ttl=None) -> None:
        self.tracked_ttl = tracked_ttl
        self.clock = ManualClock(START)
        self.lock = threading.Lock()
        self.expired: list[tuple[str, ExpiryReason]] = []
        self.errors: list[BaseException] = []
        self.stale: list[tuple] = []
        self.m = ConversationExpiryManager(
            TTL,
            60,
            clock=self.clock,
            autostart=False,
            store=store,
            on_expire=self.on_expire,
            **(options or {}),
        )
        self.done = threading.Event()
        self.sweeps = 0
        self.sweep_cond = threading.Condition()

    def on_expire(self, state, reason) -> None:
        with self.lock:
            self.expired.append((state.id, reason))

    def tracked_expired(self) -> list:
        with self.lock:
            return [e for e in self.expired if e[0] in TRACKED]

    def sweeper(self) -> None:
        try:
            while not self.done.is_set():
                self.m.cleanup_expired()
                with self.sweep_cond:
                    self.sweeps += 1
                    self.sweep_cond.notify_all()
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.errors.append(exc)
            self.done.set()

    def wait_for_a_full_sweep(self) -> None:
        with self.sweep_cond:
            target = self.sweeps + 2  # the one running now may have read the clock before
            assert self.sweep_cond.wait_for(lambda: self.sweeps >= target, WAIT)

    def updater(self, ids, go: threading.Barrier, finished: threading.Barrier) -> None:
        try:
            while True:
                go.wait(WAIT)
                if self.done.is_set():
                    return
                for cid in ids:
                    before = self.clock.now()
                    state = self.m.update_activity(cid)
                    if state.last_activity < before:
                        self.stale.append((cid, before, state.last_activity))
                    time.sleep(0)  # let the clock and the sweeper move between updates
                finished.wait(WAIT)
        except BaseException as exc:
            self.errors.append(exc)
            self.done.set()

    def run(self) -> None:
        for cid in TRACKED:
            self.m.register_conversation(cid, ttl=self.tracked_ttl)
        go = threading.Barrier(THREADS + 1)
        finished = threading.Barrier(THREADS + 1)
        parts = [TRACKED[i::THREADS] for i in range(THREADS)]
        workers = [
            threading.Thread(target=self.updater, args=(ids, go, finished), daemon=True)
            for ids in parts
        ]
        sweeper = threading.Thread(target=self.sweeper, daemon=True)
        for t in [*workers, sweeper]:
            t.start()
        try:
            for r in range(ROUNDS):
                for i in range(DECOYS_PER_ROUND):
                    self.m.register_conversation(f"decoy-{r}-{i}")
                go.wait(WAIT)
                for _ in range(4):
                    time.sleep(0.001)
                    self.clock.advance(0.5)
                finished.wait(WAIT)
                self.clock.advance(6)
                self.wait_for_a_full_sweep()
                if self.errors or self.tracked_expired():
                    break
        finally:
            self.done.set()
            go.abort()
            finished.abort()
            for t in [*workers, sweeper]:
                t.join(WAIT)
        self.m.stop()


@pytest.mark.parametrize("config", list(CONFIGS))
def test_concurrent_sweeps_never_expire_recently_updated_conversations(config, make_store):
    options, tracked_ttl = CONFIGS[config]
    race = Race(store=make_store(), options=options, tracked_ttl=tracked_ttl)
    race.run()
    errors = [e for e in race.errors if not isinstance(e, threading.BrokenBarrierError)]
    assert errors == []
    assert race.tracked_expired() == []
    assert race.stale == []
    m = race.m
    assert all(cid in m for cid in TRACKED)
    # every decoy old enough expired exactly once, with its reason
    decoys = [e for e in race.expired if e[0].startswith("decoy-")]
    assert len(decoys) == len(set(decoys))
    assert {reason for _, reason in decoys} == {ExpiryReason.EXPIRED}
    assert len(decoys) >= (ROUNDS - 2) * DECOYS_PER_ROUND
    # and the rest leave exactly once too
    race.clock.advance(TTL + 1)
    m.cleanup_expired()
    ids = [cid for cid, _ in race.expired]
    assert len(ids) == len(set(ids)) == len(TRACKED) + ROUNDS * DECOYS_PER_ROUND
    assert len(m) == 0


class LosingStore(MemoryStore):
    """Drops one update of one tracked id (reports it as applied): the bug the race must see."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def touch(self, cid, extend):
        if cid == "t5" and extend:
            self.calls += 1
            if self.calls == 7:
                state = super().touch(cid, False)
                now = self._reading.__self__.now()  # the manager's ManualClock
                return ConversationState(cid, state.created_at, now, now + timedelta(seconds=TTL))
        return super().touch(cid, extend)


def test_the_race_detects_a_lost_update():
    race = Race(store=LosingStore())
    race.run()
    assert [cid for cid, _ in race.tracked_expired()] == ["t5"]


@pytest.mark.parametrize("seed", range(3))
def test_updates_racing_end_and_sweep_leave_each_conversation_exactly_once(seed, make_store):
    """Updates, end_conversation and sweeps on the same ids: each leaves once, whoever wins."""
    clock = ManualClock(START)
    seen: list[tuple[str, ExpiryReason]] = []
    lock = threading.Lock()

    def on_expire(state, reason):
        with lock:
            seen.append((state.id, reason))

    m = ConversationExpiryManager(
        TTL, 60, clock=clock, autostart=False, on_expire=on_expire, store=make_store()
    )
    ids = [f"c{seed}-{i}" for i in range(600)]
    for cid in ids:
        m.register_conversation(cid)
    clock.advance(TTL)  # all at their deadline: live, and about to go
    start = threading.Barrier(4)
    results: dict[str, list] = {"ended": []}

    def ender():
        start.wait(WAIT)
        results["ended"] = [cid for cid in ids[::-1] if m.end_conversation(cid)]

    def updater():
        start.wait(WAIT)
        for cid in ids:
            with contextlib.suppress(KeyError):  # expired or ended meanwhile
                m.update_activity(cid)

    def sweeper():
        start.wait(WAIT)
        clock.advance(0.5)  # now past the deadline of anything not updated
        for _ in range(5):
            m.cleanup_expired()

    threads = [threading.Thread(target=f, daemon=True) for f in (ender, updater, sweeper)]
    for t in threads:
        t.start()
    start.wait(WAIT)
    for t in threads:
        t.join(WAIT)
    m.stop(cleanup_remaining=True)
    assert sorted(cid for cid, _ in seen) == sorted(ids)  # each exactly once
    ended = {cid for cid, reason in seen if reason is ExpiryReason.ENDED}
    assert ended == set(results["ended"])
