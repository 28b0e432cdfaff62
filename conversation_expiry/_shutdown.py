"""``stop(cleanup_remaining=True)``: every conversation still held, cleaned in the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from ._callbacks import EXITS
from ._clock import PERF_COUNTER
from ._faults import log_safely, logger
from ._held import HeldCleanups
from ._state import ExpiryReason
from ._store import ConversationStore, Departures

__all__ = ["DRAIN_BATCH", "clean_remaining"]

T = TypeVar("T")

# Conversations a drain takes at a time: without a time limit, as many as a sweep's first batch.
DRAIN_BATCH = 256


def clean_remaining(
    store: ConversationStore,
    finish: Callable[[Departures], None],
    held: HeldCleanups,
    finish_local: Callable[[Iterator[tuple[str, ExpiryReason, list[Callable[[], object]]]]], None],
    count: Callable[[], int],
    cleanup_for: float | None,
    started: float,
) -> BaseException | None:
    """Drain ``store`` (reason SHUTDOWN; EXPIRED for the past due) and run the callables this
    process still holds; returns a SystemExit or KeyboardInterrupt a callable raised.

    It is raised once all is clean: no later call would clean the rest (the thread has
    stopped). With ``cleanup_for``, no conversation's cleanups start once that many seconds
    have passed since ``started`` (perf counter; the integrations' EXIT_TIMEOUT: a server kills
    a worker that takes longer to exit), and what is left is logged.
    """
    deadline = None if cleanup_for is None else started + cleanup_for
    exit_exc: BaseException | None = None
    batch = DRAIN_BATCH if deadline is None else 1  # (the deadline between each)
    while deadline is None or PERF_COUNTER[0]() < deadline:
        removed = store.drain(batch)
        if not removed.states:
            break
        try:
            finish(removed)
        except EXITS as exc:
            exit_exc = exit_exc or exc
    else:
        if not store.shared:
            # The rest stay in the store, their cleanups with them (a later end_conversation
            # still runs them). A shared store drains nothing: its conversations are all the
            # processes' (and counting them would be a call to it after the time is up).
            _left(cleanup_for, count(), "conversations")
            return exit_exc
    # With a shared store the conversations stay for the other processes, but what this
    # process holds is released.
    taken = held.take_all(ExpiryReason.SHUTDOWN)
    try:
        finish_local(iter(taken) if deadline is None else _until(deadline, taken, cleanup_for))
    except EXITS as exc:
        exit_exc = exit_exc or exc
    return exit_exc


def _until(deadline: float, items: list[T], cleanup_for: float | None) -> Iterator[T]:
    """``items`` until ``deadline`` (perf counter) has passed; the count left is logged."""
    for n, item in enumerate(items):
        if PERF_COUNTER[0]() >= deadline:
            _left(cleanup_for, len(items) - n, "conversations' cleanups held here")
            return
        yield item


def _left(cleanup_for: float | None, left: int, what: str) -> None:
    if left:
        log_safely(
            logger.warning,
            "stop: %d %s left without running: the %.3g s for cleanups at exit "
            "(EXIT_TIMEOUT) have passed", left, what, cleanup_for,
        )
