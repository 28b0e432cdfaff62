"""Contract tests (API.md guarantees 1 and 4) under real concurrency: exactly once, and no lost
activity when touches race sweeps. Designed so that a lost update or an early removal fails.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from support import EVERY_STORE, TTL, WAIT, leave_all

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationNotFoundError,
    ConversationState,
    ExpiryReason,
)

STORE_KINDS = EVERY_STORE

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


# ---------------------------------------------------------------------------------------------
# exactly once under concurrency (guarantee 1)
# ---------------------------------------------------------------------------------------------


def test_concurrent_end_and_sweeps_clean_each_past_deadline_conversation_once(
    make_manager, clock
) -> None:
    lock = threading.Lock()
    on_expire_calls: dict[str, list[ExpiryReason]] = defaultdict(list)
    cleanup_calls: dict[str, int] = defaultdict(int)

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        with lock:
            on_expire_calls[state.id].append(reason)

    def cleanup_for(cid: str) -> Callable[[], None]:
        def fn() -> None:
            with lock:
                cleanup_calls[cid] += 1

        return fn

    m = make_manager(TTL, 0.001, clock=clock, on_expire=on_expire)
    ids = [f"c{i}" for i in range(400)]
    for cid in ids:
        m.register_conversation(cid)
        m.add_cleanup(cid, cleanup_for(cid))
    go = threading.Event()

    def ender(seed: int) -> None:
        go.wait(WAIT)
        order = ids[:]
        random.Random(seed).shuffle(order)
        for cid in order:
            m.end_conversation(cid)

    def sweeper() -> None:
        go.wait(WAIT)
        for _ in range(50):
            m.cleanup_expired()

    threads = [threading.Thread(target=ender, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=sweeper) for _ in range(2)]
    for t in threads:
        t.start()
    clock.advance(TTL + 1)
    go.set()
    for t in threads:
        t.join(WAIT * 2)
        assert not t.is_alive()
    # The cleanup thread may be running the callables of a batch it claimed: stop() returns
    # once that batch is done, and the sweep after it takes whatever is left.
    m.stop(timeout=WAIT)
    assert not m.running
    m.cleanup_expired()
    assert {cid: on_expire_calls[cid] for cid in ids} == {
        cid: [ExpiryReason.EXPIRED] for cid in ids
    }
    assert {cid: cleanup_calls[cid] for cid in ids} == {cid: 1 for cid in ids}


def test_concurrent_end_and_stop_cleanup_remaining_clean_each_live_conversation_once(
    make_manager,
) -> None:
    lock = threading.Lock()
    calls: dict[str, list[ExpiryReason]] = defaultdict(list)

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        with lock:
            calls[state.id].append(reason)

    m = make_manager(TTL, 3600, on_expire=on_expire)
    ids = [f"c{i}" for i in range(600)]
    for cid in ids:
        m.register_conversation(cid)
    go = threading.Event()
    ended: list[str] = []

    def ender() -> None:
        go.wait(WAIT)
        for cid in reversed(ids):
            if m.end_conversation(cid):
                ended.append(cid)

    def stopper() -> None:
        go.wait(WAIT)
        m.stop(cleanup_remaining=True)

    threads = [threading.Thread(target=ender), threading.Thread(target=stopper)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(WAIT * 2)
        assert not t.is_alive()
    assert sorted(calls) == sorted(ids)
    for cid in ids:
        expected = ExpiryReason.ENDED if cid in ended else ExpiryReason.SHUTDOWN
        assert calls[cid] == [expected], cid


# ---------------------------------------------------------------------------------------------
# no lost activity (guarantee 4)
# ---------------------------------------------------------------------------------------------


def _race_touches_against_sweeps(
    m: ConversationExpiryManager,
    removals: dict[tuple[str, datetime], list[tuple[ConversationState, ExpiryReason]]],
    *,
    iterations: int,
    between: Callable[[random.Random], None],
) -> None:
    """Touchers hammer their own ids (weighted, so some are neglected and expire, and are then
    registered afresh) while the cleanup thread and a sweeper thread sweep.

    Checks, per incarnation (id, created_at): it leaves exactly once; if it expired, its last
    activity as removed is at least that of every touch that succeeded (a touch that returned
    was not lost); a touch never succeeds on an incarnation once one failed (no revival).
    """
    n_threads, per_thread = 4, 12
    owned = [[f"t{k}-c{i}" for i in range(per_thread)] for k in range(n_threads)]
    weights = [1 / (i + 1) ** 1.5 for i in range(per_thread)]
    touched: list[dict[tuple[str, datetime], datetime]] = [{} for _ in range(n_threads)]
    problems: list[str] = []
    done = threading.Event()

    for k in range(n_threads):
        for cid in owned[k]:
            s = m.register_conversation(cid)
            touched[k][(cid, s.created_at)] = s.last_activity

    def toucher(k: int) -> None:
        rnd = random.Random(k)
        failed: set[tuple[str, datetime]] = set()
        current = {cid: created for cid, created in touched[k]}
        for _ in range(iterations):
            cid = rnd.choices(owned[k], weights)[0]
            try:
                s = m.update_activity(cid)
            except ConversationNotFoundError:  # includes ConversationExpiredError
                failed.add((cid, current[cid]))
                s = m.register_conversation(cid)
                if s.created_at != current[cid]:
                    current[cid] = s.created_at
                elif (cid, s.created_at) in failed:
                    problems.append(
                        f"{cid}: register after a failed touch returned that incarnation "
                        "(revived, or removed while live and re-created at the same instant)"
                    )
            key = (cid, s.created_at)
            if key in failed:
                problems.append(f"{cid}: touch succeeded after one failed")
            prev = touched[k].get(key)
            touched[k][key] = s.last_activity if prev is None else max(prev, s.last_activity)
            between(rnd)

    def sweeper() -> None:
        while not done.is_set():
            m.cleanup_expired()
            time.sleep(0)

    sweep_thread = threading.Thread(target=sweeper)
    sweep_thread.start()
    workers = [threading.Thread(target=toucher, args=(k,)) for k in range(n_threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
        assert not t.is_alive()
    done.set()
    sweep_thread.join(WAIT)
    assert not sweep_thread.is_alive()
    leave_all(m, {cid for d in touched for cid, _ in d})

    assert problems == []
    all_touched: dict[tuple[str, datetime], datetime] = {}
    for d in touched:
        all_touched.update(d)
    assert set(removals) == set(all_touched), "every incarnation leaves, and only those"
    expired = shutdown = 0
    for key, last_ok in all_touched.items():
        (state, reason), *more = removals[key]
        assert more == [], f"{key} left more than once"
        assert state.last_activity >= last_ok, f"{key}: activity at {last_ok} was lost"
        if reason is ExpiryReason.EXPIRED:
            expired += 1
        else:
            assert reason in (ExpiryReason.SHUTDOWN, ExpiryReason.ENDED)
            shutdown += 1
    # the race must really have happened both ways for the test to mean anything
    assert expired > 0 and shutdown > 0, (expired, shutdown)


def test_touches_racing_sweeps_lose_no_activity_with_manual_clock(make_manager, clock) -> None:
    ttl = 1.0
    lock = threading.Lock()
    removals: dict[tuple[str, datetime], list[Any]] = defaultdict(list)
    early: list[str] = []

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        now = clock.now()  # the sweep read the clock before this, and it only moves forward
        if reason is ExpiryReason.EXPIRED and not now > state.expires_at:
            early.append(f"{state.id} expired at {now}, deadline {state.expires_at}")
        with lock:
            removals[(state.id, state.created_at)].append((state, reason))

    m = make_manager(ttl, 0.001, clock=clock, on_expire=on_expire)

    def between(rnd: random.Random) -> None:
        if rnd.random() < 0.15:
            clock.advance(ttl / 8)  # time moves as the touchers work, from their threads
        if rnd.random() < 0.3:
            time.sleep(0)

    _race_touches_against_sweeps(m, removals, iterations=3000, between=between)
    assert early == []


def test_touches_racing_sweeps_lose_no_activity_with_real_clock(make_manager) -> None:
    lock = threading.Lock()
    removals: dict[tuple[str, datetime], list[Any]] = defaultdict(list)
    early: list[str] = []

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        # Reported times are wall-clock; allow a little for the wall clock slewing meanwhile.
        now = datetime.now(timezone.utc) + timedelta(milliseconds=5)
        if reason is ExpiryReason.EXPIRED and not now > state.expires_at:
            early.append(f"{state.id} expired at {now}, deadline {state.expires_at}")
        with lock:
            removals[(state.id, state.created_at)].append((state, reason))

    m = make_manager(0.03, 0.001, on_expire=on_expire)

    def between(rnd: random.Random) -> None:
        time.sleep(0.0005)  # pacing: neglected ids outlive the 30 ms ttl, favoured ones do not

    _race_touches_against_sweeps(m, removals, iterations=600, between=between)
    assert early == []
