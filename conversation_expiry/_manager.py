"""The conversation expiry manager (Go: ``ConversationExpiryManager``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from datetime import timedelta
from operator import itemgetter
from types import TracebackType
from typing import Any

from . import _fork
from ._callbacks import Callbacks, OnExpire, OnWarning
from ._clock import Clock, SystemClock, reader
from ._memory import MemoryStore
from ._settings import check_conversation_ttl, check_options, meaningful_predicate
from ._state import ConversationState, ExpiryReason
from ._store import ConversationStore
from ._telemetry import Telemetry, rfc3339
from ._validation import check_id, to_seconds
from ._worker import CleanupThread

__all__ = ["ConversationExpiryManager"]

Seconds = float | int | timedelta

# Conversations removed per hold of the write lock in a sweep; about 0.3 ms of work, so a request
# thread never waits long for the lock (benchmarks/sweep.py measures the longest wait).
SWEEP_BATCH = 256
_YIELD_EVERY = 0.002

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
            tracer_provider=tracer_provider, meter_provider=meter_provider,
        )
        self._meaningful = meaningful_predicate(meaningful_activities)
        self._policy = policy
        self.ttl = policy.ttl
        self.cleanup_interval = interval
        self.max_age = policy.max_age
        self.warning_before = policy.warning_before
        self.max_conversations = policy.max_conversations
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._now = self._clock.monotonic
        self._reading = reader(self._clock)
        self._store: ConversationStore = store if store is not None else MemoryStore()
        self._store.configure(policy)
        self._touch = self._store.touch
        self._telemetry = Telemetry(self, tracer_provider, meter_provider)
        self._callbacks = Callbacks(on_expire, on_warning, self._telemetry)
        self._worker = CleanupThread(self._background_sweep, interval, thread_name)
        _fork.track(self)
        if autostart:
            self.start()

    # -- the request-path calls --------------------------------------------------------------

    def register_conversation(
        self, conversation_id: str, *, ttl: Seconds | None = None
    ) -> ConversationState:
        """Start tracking ``conversation_id`` (Go: ``RegisterConversation``).

        A live id counts as activity and keeps its ``created_at`` and cleanups; an id past its
        deadline is cleaned up (in this thread) and started afresh.
        """
        with self._telemetry.span("expiry_manager.register", _id_attr(conversation_id)) as span:
            cid = check_id(conversation_id)
            ttl_s = check_conversation_ttl(ttl, self._policy)
            now, offset = self._reading()
            state, removed = self._store.register(cid, now, offset, ttl_s)
            if span is not None:
                span.set_attribute("expires_at", rfc3339(state.expires_at))
        self._telemetry.registered()
        if removed.states:
            self._callbacks.finish(removed, now)
        if self.warning_before is not None:
            self._worker.wake()  # its warning may fall due before the thread's next wake-up
        return state

    def update_activity(
        self, conversation_id: str, activity_type: str = "message"
    ) -> ConversationState:
        """Slide the expiry to now + ttl (Go: ``UpdateActivity``); never revives an expired one.

        With ``meaningful_activities`` set, other activity types only check the conversation.
        """
        if self._meaningful is not None:
            extend = self._is_meaningful(activity_type)
        elif activity_type.__class__ is str:
            extend = True
        else:
            raise TypeError(f"activity_type must be a str, got {activity_type!r:.80}")
        if self._telemetry.tracing:  # checks the id inside its span, so bad input is recorded
            return self._telemetry.traced_update(self._update, conversation_id, extend)
        if type(conversation_id) is not str or not conversation_id:
            conversation_id = check_id(conversation_id)
        now, offset = self._reading()
        return self._touch(conversation_id, now, offset, extend)

    def _is_meaningful(self, activity_type: object) -> bool:
        if not isinstance(activity_type, str):
            raise TypeError(f"activity_type must be a str, got {activity_type!r:.80}")
        assert self._meaningful is not None
        return bool(self._meaningful(activity_type))

    def _update(self, cid: str, extend: bool) -> ConversationState:
        now, offset = self._reading()
        return self._touch(cid, now, offset, extend)

    def ensure_conversation(
        self, conversation_id: str, activity_type: str = "message"
    ) -> tuple[ConversationState, bool]:
        """Touch a live conversation, or start a fresh one; returns (state, started_fresh).

        What a request handler wants: a returning user whose conversation expired gets a new
        one instead of an error. One atomic step, so of two racing requests only one starts it.
        """
        with self._telemetry.span("expiry_manager.ensure", _id_attr(conversation_id)) as span:
            cid = check_id(conversation_id)
            extend = True if self._meaningful is None else self._is_meaningful(activity_type)
            now, offset = self._reading()
            state, fresh, removed = self._store.ensure(cid, now, offset, extend)
            if span is not None:
                span.set_attribute("expires_at", rfc3339(state.expires_at))
                span.set_attribute("started_fresh", fresh)
        if fresh:
            self._telemetry.registered()
            if self.warning_before is not None:
                self._worker.wake()
        if removed.states:
            self._callbacks.finish(removed, now)
        return state, fresh

    def is_expired(self, conversation_id: str) -> bool:
        """True when unknown or past its deadline, even before a sweep removed it."""
        if type(conversation_id) is not str or not conversation_id:
            conversation_id = check_id(conversation_id)
        return not self._store.is_live(conversation_id, self._now())

    def get(self, conversation_id: str) -> ConversationState | None:
        """Snapshot of a live conversation, else None."""
        cid = check_id(conversation_id)
        now, offset = self._reading()
        return self._store.get(cid, now, offset)

    def end_conversation(self, conversation_id: str) -> bool:
        """Remove it now and run its cleanups (reason ENDED) here; False if it was not live."""
        with self._telemetry.span("expiry_manager.end", _id_attr(conversation_id)) as span:
            cid = check_id(conversation_id)
            now, offset = self._reading()
            removed = self._store.end(cid, now, offset)
            ended = bool(removed.reasons) and removed.reasons[0] is ExpiryReason.ENDED
            if span is not None:
                span.set_attribute("ended", ended)
        if removed.states:
            self._callbacks.finish(removed, now)
        return ended

    def add_cleanup(self, conversation_id: str, fn: Callable[[], object]) -> None:
        """Run ``fn()`` once when the conversation leaves, last attached first."""
        cid = check_id(conversation_id)
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r:.80}")
        self._store.add_cleanup(cid, self._now(), fn)

    def __len__(self) -> int:
        return self._store.count(self._now())

    def __contains__(self, conversation_id: object) -> bool:
        if not isinstance(conversation_id, str):
            return False  # the one call that answers a non-str instead of raising (API.md)
        return self._store.is_live(check_id(conversation_id), self._now())

    # -- sweeping -----------------------------------------------------------------------------

    def cleanup_expired(self) -> list[str]:
        """Run one sweep now in this thread; returns the ids it expired.

        Removes in batches of ``SWEEP_BATCH`` under the write lock and runs each batch's
        callables after releasing it, so request threads get in between batches.
        """
        expired: list[str] = []
        store = self._store
        started = yielded = time.perf_counter()
        with self._telemetry.span("expiry_manager.cleanup") as span:
            while True:
                now, offset = self._reading()
                removed, warned, more = store.collect(now, offset, SWEEP_BATCH)
                expired.extend(map(_first, removed.states))  # a sweep removes only the expired
                if removed.states:
                    self._callbacks.finish(removed, now)
                if warned:
                    self._callbacks.warn(warned)
                if not more:
                    break
                # Releasing the lock between batches is not enough: CPython hands the GIL to a
                # waiting thread only every 5 ms, and this one would retake the lock first. A
                # sleep(0) lets waiters in; it costs ~0.1 ms, so it is spent when a request
                # thread waited for the lock, or else every _YIELD_EVERY (readers, others).
                if store.contended() or time.perf_counter() - yielded > _YIELD_EVERY:
                    time.sleep(0)
                    yielded = time.perf_counter()
            remaining = len(self) if self._telemetry.wants_remaining(span) else -1
            self._telemetry.swept(span, len(expired), remaining, time.perf_counter() - started)
        return expired

    def _background_sweep(self) -> float:
        """One run of the cleanup thread; returns how long it may sleep."""
        self._telemetry.refresh()
        with self._telemetry.detached():  # a root span, whatever context the thread inherited
            self.cleanup_expired()
        due = self._store.next_warning_at() if self.warning_before is not None else None
        if due is None:
            return self.cleanup_interval
        return due - self._now()

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
        if timeout is not None:
            to_seconds("timeout", timeout, allow_zero=True)
        self._worker.stop(timeout)
        if cleanup_remaining:
            while True:
                now, offset = self._reading()
                removed = self._store.drain(now, offset, SWEEP_BATCH)
                if not removed.states:
                    break
                self._callbacks.finish(removed, now)
        self._callbacks.faults.flush()

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
        self._store.reinit_after_fork()
        self._worker.reinit_after_fork()


def _id_attr(value: object) -> str | None:
    return value if isinstance(value, str) else None
