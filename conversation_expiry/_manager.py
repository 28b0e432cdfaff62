"""The conversation expiry manager (Go: ``ConversationExpiryManager``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from operator import itemgetter
from types import TracebackType
from typing import Any

from . import _fork, _fused_update
from ._batches import next_batch
from ._callbacks import EXITS, Callbacks, OnExpire, OnWarning, reported
from ._clock import PERF_COUNTER, Clock, SystemClock
from ._fused_update import inline_parts
from ._held import HeldCleanups
from ._memory import MemoryStore
from ._settings import check_conversation_ttl, check_options, check_seam, meaningful_predicate
from ._shutdown import clean_remaining
from ._state import ConversationState, ExpiryReason, deadline_of, encode_metadata
from ._store import STORE_METHODS, ConversationStore, Departures
from ._telemetry import Telemetry, rfc3339
from ._validation import check_activity_type as _check_activity_type
from ._validation import check_id, to_seconds
from ._worker import CleanupThread

__all__ = ["ConversationExpiryManager"]

Seconds = float | int | timedelta

# Conversations claimed by a sweep's first store call; later calls claim as many as took about
# 2 ms in the last one, up to four times as many (``_batches``): 1024 are ~0.3 ms of work under
# the memory store's lock, so a request thread never waits long for it (benchmarks/sweep.py
# measures the longest wait). A Redis script claims at most 128 (``CLAIM_BATCH``).
SWEEP_BATCH = 256

_first = itemgetter(0)


class ConversationExpiryManager:
    """Tracks conversations, expires the idle ones and runs their cleanups exactly once.

    See the README and ``shared/API.md`` for the contract; the docstrings say only what it does
    not. Cleanup callables never run under the store's lock: removal happens under the lock,
    the callables after it is released, so they may call back into the manager.
    """

    def __init__(
        self,
        ttl: Seconds,
        cleanup_interval: Seconds,
        *,
        clock: Clock | None = None,
        on_expire: OnExpire | None = None,
        autostart: bool = True,
        store: ConversationStore | None = None,
        max_conversations: int | None = None,
        max_age: Seconds | None = None,
        warning_before: Seconds | None = None,
        on_warning: OnWarning | None = None,
        meaningful_activities: Collection[str] | Callable[[str], bool] | None = None,
        thread_name: str = "conversation-expiry-cleanup",
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> None:
        policy, interval = check_options(
            ttl=ttl,
            cleanup_interval=cleanup_interval,
            max_age=max_age,
            warning_before=warning_before,
            max_conversations=max_conversations,
            on_expire=on_expire,
            on_warning=on_warning,
            clock=clock,
            thread_name=thread_name,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
        self._meaningful = meaningful_predicate(meaningful_activities)
        check_seam("store", store, *STORE_METHODS)
        store_: ConversationStore = store if store is not None else MemoryStore()
        self._policy = policy
        self.ttl = policy.ttl
        self.cleanup_interval = interval
        self.max_age = policy.max_age
        self.warning_before = policy.warning_before
        self.max_conversations = policy.max_conversations
        self._clock: Clock = clock if clock is not None else SystemClock()
        store_.bind(policy, self._clock)
        self._store: ConversationStore = store_
        self._owns_store = store is None
        self._held = HeldCleanups()
        self._telemetry = Telemetry(self, tracer_provider, meter_provider)
        self._callbacks = Callbacks(on_expire, on_warning, self._telemetry)
        # What update_activity needs to touch the in-memory store itself (None: another store).
        self._inline = inline_parts(store_)
        self._worker = CleanupThread(self._background_sweep, interval, thread_name)
        # Store time up to which the cleanup thread's current wait is known to look after
        # warnings; a registration whose warning falls due earlier wakes it.
        self._covered_until = -math.inf
        self._wake_pending = False  # woken for a warning: its next sweep looks at them all
        self._next_wait = interval
        self._batch = SWEEP_BATCH  # conversations the next claim of a sweep asks for (_batches)
        self._spent: list[ConversationState] | None = None  # the last sweep's last states
        _fork.track(self)
        if autostart:
            self.start()

    # -- the request-path calls --------------------------------------------------------------

    def register_conversation(
        self,
        conversation_id: str,
        *,
        ttl: Seconds | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ConversationState:
        """Start tracking ``conversation_id`` (Go: ``RegisterConversation``).

        A live id counts as activity and keeps its ``created_at`` and cleanups (and its
        metadata, unless ``metadata`` is given); an id past its deadline is cleaned up (in this
        thread) and started afresh.
        """
        with self._telemetry.span("expiry_manager.register", _id_attr(conversation_id)) as span:
            cid = check_id(conversation_id)
            ttl_s = check_conversation_ttl(ttl, self._policy)
            meta = None if metadata is None else encode_metadata(metadata)
            state, removed = self._store.register(cid, ttl_s, meta)
            if span is not None:
                span.set_attribute("expires_at", rfc3339(state.expires_at))
        self._telemetry.registered()
        if removed.states or removed.claim is not None:
            self._finish(removed)
        if self.warning_before is not None:
            self._wake_for(state)
        return state

    def _touch(self, cid: str, extend: bool) -> ConversationState:
        # A method, not a bound method kept on the manager: that would make it a cycle.
        state = self._store.touch(cid, extend)
        # With warnings, activity that ends a warned idle period makes a warning due sooner
        # than the thread may wake: the touch wakes it then.
        if self.warning_before is not None and not self._wake_pending:
            self._wake_for(state)
        return state

    def _wake_for(self, state: ConversationState) -> None:
        # Its warning may fall due before the thread's next wake-up; else the wait covers it.
        assert self.warning_before is not None
        if self._wake_pending:
            return  # the thread's next sweep looks at every warning
        if state[1].real <= self._covered_until <= deadline_of(state) - self.warning_before:
            return  # the thread wakes (by store time) before this warning is due
        self._covered_until = -math.inf
        self._wake_pending = True
        self._worker.wake()

    # Written in _fused_update, the request path's own module: the checks and the touch in one.
    update_activity = _fused_update.update_activity

    def _traced_update(self, conversation_id: object, activity_type: object) -> ConversationState:
        return self._telemetry.traced_update(self._checked_touch, conversation_id, activity_type)

    def _checked_touch(
        self, conversation_id: object, activity_type: object
    ) -> tuple[ConversationState, bool]:
        """``update_activity``'s checks and touch; returns the state and whether it extended."""
        _check_activity_type(activity_type)
        kind: str = activity_type  # type: ignore[assignment]  # (checked)
        extend = True if self._meaningful is None else bool(self._meaningful(kind))
        return self._touch(check_id(conversation_id), extend), extend

    def ensure_conversation(
        self, conversation_id: str, activity_type: str = "message"
    ) -> tuple[ConversationState, bool]:
        """Touch a live conversation, or start a fresh one; returns (state, started_fresh).

        What a request handler wants: a returning user whose conversation expired gets a new
        one instead of an error. One atomic step, so of two racing requests only one starts it.
        """
        with self._telemetry.span("expiry_manager.ensure", _id_attr(conversation_id)) as span:
            cid = check_id(conversation_id)
            _check_activity_type(activity_type)
            extend = True if self._meaningful is None else bool(self._meaningful(activity_type))
            state, fresh, removed = self._store.ensure(cid, extend)
            if span is not None:
                span.set_attribute("expires_at", rfc3339(state.expires_at))
                span.set_attribute("started_fresh", fresh)
        if fresh:
            self._telemetry.registered()
        if self.warning_before is not None:  # (a fresh one, or activity: see _touch)
            self._wake_for(state)
        if removed.states or removed.claim is not None:
            self._finish(removed)
        return state, fresh

    def is_expired(self, conversation_id: str) -> bool:
        """True when unknown or past its deadline, even before a sweep removed it."""
        if type(conversation_id) is not str or not conversation_id:
            conversation_id = check_id(conversation_id)
        return not self._store.is_live(conversation_id)

    def get(self, conversation_id: str) -> ConversationState | None:
        """Snapshot of a live conversation, else None."""
        if type(conversation_id) is not str or not conversation_id:
            conversation_id = check_id(conversation_id)
        return self._store.get(conversation_id)

    def end_conversation(self, conversation_id: str) -> bool:
        """Remove it now and run its cleanups (reason ENDED) here; False if it was not live."""
        with self._telemetry.span("expiry_manager.end", _id_attr(conversation_id)) as span:
            cid = check_id(conversation_id)
            removed = self._store.end(cid)
            ended = bool(removed.reasons) and removed.reasons[0] is ExpiryReason.ENDED
            if span is not None:
                span.set_attribute("ended", ended)
        if removed.states or removed.claim is not None:
            self._finish(removed)
        return ended

    def add_cleanup(self, conversation_id: str, fn: Callable[[], object]) -> None:
        """Run ``fn()`` once when the conversation leaves, last attached first.

        The callable stays in this process: with a shared store it runs here, whichever
        process the conversation leaves in.
        """
        cid = check_id(conversation_id)
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r:.80}")
        self._held.attach(self._store, cid, fn)

    def __len__(self) -> int:
        return self._store.count()

    def __contains__(self, conversation_id: object) -> bool:
        if not isinstance(conversation_id, str):
            return False  # the one call that answers a non-str instead of raising (API.md)
        return self._store.is_live(check_id(conversation_id))

    # -- finishing departures -------------------------------------------------------------------

    def _finish(self, departures: Departures) -> None:
        """Run what must run for claimed conversations, then acknowledge them to the store."""
        try:
            # Some were held (here or elsewhere): take this process's callables for them.
            cleanups = self._held.take(departures.tokens) if departures.tokens else {}
            self._callbacks.finish(departures, cleanups)
        finally:
            self._store.ack(departures)

    def _finish_elsewhere(self) -> None:
        """Run this process's cleanups of held conversations that left in another process."""
        left = self._store.left_elsewhere()
        if left:
            self._callbacks.finish_local(self._held.take_left(left))

    # -- sweeping -----------------------------------------------------------------------------

    def cleanup_expired(self) -> list[str]:
        """Run one sweep now in this thread; returns the ids it expired.

        Removes in batches of ``SWEEP_BATCH`` under the write lock and runs each batch's
        callables after releasing it, so request threads get in between batches.
        """
        return self._sweep(stoppable=False)

    def _sweep(self, *, stoppable: bool) -> list[str]:
        expired: list[str] = []
        store = self._store
        worker = self._worker
        started = PERF_COUNTER[0]()
        with self._telemetry.span("expiry_manager.cleanup") as span:
            if self._held and store.shared:
                self._finish_elsewhere()
            self._spent = None  # (the last sweep's states: their memory is the first claim's)
            while True:
                begun = PERF_COUNTER[0]()
                sweep = store.claim(self._batch)
                departures = sweep.departures
                # A sweep takes only the expired.
                ids = departures.ids
                expired.extend(map(_first, departures.states) if ids is None else ids)
                try:
                    try:
                        if departures.states or departures.claim is not None:
                            self._finish(departures)
                            took = PERF_COUNTER[0]() - begun
                            self._batch = next_batch(
                                SWEEP_BATCH, self._batch, took, len(departures.states)
                            )
                    finally:  # (a SystemExit from on_expire: the claim's warnings still go)
                        if sweep.warned:
                            self._callbacks.warn(sweep.warned)
                except EXITS as exc:
                    # A callable's SystemExit or KeyboardInterrupt, logged already: on the
                    # cleanup thread a fault like any other (the sweep goes on); a synchronous
                    # caller gets it once the batch is done.
                    if not (stoppable and reported(exc)):
                        raise
                more, now, next_warning_in = sweep.more, departures.now, sweep.next_warning_in
                spent = departures.states
                del sweep, departures
                # stop() returns within about one batch's callables: the rest wait for
                # stop(cleanup_remaining=True) or the next process that sweeps.
                if not more or (stoppable and worker.stopping):
                    break
                # The batch's states are freed before the next claim builds its own, so the
                # allocator hands out their memory again instead of fresh pages (a page fault
                # each, ~2 us, about 25 per batch of 1024, under the lock).
                del spent
            # For the same reason the last batch's states (at most one batch, with their metadata)
            # are kept until the next sweep's first claim: freed now, their memory would go to
            # what the process allocates meanwhile.
            self._spent = spent
            if self.warning_before is not None:
                wait = self.cleanup_interval
                if next_warning_in is not None and next_warning_in < wait:
                    wait = next_warning_in
                self._next_wait = wait
                self._covered_until = now + wait
                self._wake_pending = False
            remaining = len(self) if self._telemetry.wants_remaining(span) else -1
            self._telemetry.swept(span, len(expired), remaining, PERF_COUNTER[0]() - started)
        return expired

    def _background_sweep(self) -> float:
        """One run of the cleanup thread; returns how long it may sleep."""
        self._telemetry.refresh()
        with self._telemetry.detached():  # a root span, whatever context the thread inherited
            try:
                self._sweep(stoppable=True)
            except EXITS as exc:  # (from a cleanup of a conversation that left elsewhere)
                if not reported(exc):
                    raise
        return self._next_wait if self.warning_before is not None else self.cleanup_interval

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the cleanup thread; does nothing if it runs. RuntimeError after stop()."""
        self._worker.start()

    def stop(self, timeout: float | None = None, *, cleanup_remaining: bool = False) -> None:
        """Stop and join the cleanup thread (Go: ``Stop``); idempotent, prompt at any interval.

        ``timeout`` bounds the wait for the thread and a callable it is running. With
        ``cleanup_remaining`` every conversation still held is removed and cleaned here, with
        reason SHUTDOWN (EXPIRED for those already past their deadline).
        """
        self._stop(timeout, cleanup_remaining)

    def _stop(
        self, timeout: object, cleanup_remaining: bool, cleanup_for: float | None = None
    ) -> None:
        """``stop()``; with ``cleanup_for``, no conversation's cleanups start once that many
        seconds have passed (the integrations' EXIT_TIMEOUT: a server kills a worker that takes
        longer to exit), and what is left is logged."""
        seconds = None if timeout is None else to_seconds("timeout", timeout, allow_zero=True)
        started = PERF_COUNTER[0]()
        # With a shared store, this process's cleanups need nothing of the store: they run while
        # the thread finishes its batch (it may be waiting on an unreachable Redis for seconds),
        # and each conversation's still runs once (HeldCleanups hands each out once).
        early = cleanup_remaining and self._store.shared
        if early:
            self._worker.stop(0)  # asked to stop: it ends after its batch
        else:
            self._worker.stop(seconds)
        exit_exc: BaseException | None = None
        try:
            try:
                if cleanup_remaining:
                    exit_exc = clean_remaining(
                        self._store, self._finish, self._held, self._callbacks.finish_local,
                        self.__len__, cleanup_for, started,
                    )
            finally:
                if early:
                    left = None if seconds is None else started + seconds - PERF_COUNTER[0]()
                    self._worker.stop(None if left is None else max(0.0, left))
        finally:
            self._spent = None
            self._callbacks.faults.flush()
            if self._owns_store:
                self._store.close()
        if exit_exc is not None:
            raise exit_exc

    @property
    def running(self) -> bool:
        """Whether the cleanup thread is alive."""
        return self._worker.alive

    @property
    def stopped(self) -> bool:
        """Whether stop() was called (a stopped manager's thread cannot start again)."""
        return self._worker.stopped

    def in_cleanup_thread(self) -> bool:
        """Whether the caller runs on this manager's cleanup thread (say, inside on_expire)."""
        return self._worker.is_current()

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def store(self) -> ConversationStore:
        """Where the conversations are: the in-memory store unless one was given."""
        return self._store

    def __enter__(self) -> ConversationExpiryManager:
        if not self._worker.alive:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"ConversationExpiryManager(ttl={self.ttl}, cleanup_interval={self.cleanup_interval}, "
            f"running={self.running})"
        )

    # -- fork support (called by _fork) ---------------------------------------------------------

    def _before_fork(self) -> Any:
        hook = getattr(self._store, "before_fork", None)
        return hook(1.0) if hook is not None else None

    def _after_fork_in_child(self) -> None:
        hook = getattr(self._store, "reinit_after_fork", None)
        if hook is not None:
            hook()
        if self._store.shared:  # the parent's cleanups stay the parent's (guarantee 11)
            self._held.forget_all()
        # The child's thread starts afresh, its event unset: nothing covers or wakes it yet.
        self._covered_until = -math.inf
        self._wake_pending = False
        self._worker.reinit_after_fork()


# update_activity is written in _fused_update: named as the class's method, and its annotations
# resolvable there (typing.get_type_hints reads that module's globals).
ConversationExpiryManager.update_activity.__qualname__ = "ConversationExpiryManager.update_activity"
vars(_fused_update)["ConversationExpiryManager"] = ConversationExpiryManager


def _id_attr(value: object) -> str | None:
    return value if isinstance(value, str) else None
