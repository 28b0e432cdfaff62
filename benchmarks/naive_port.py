"""The baseline: a naive, line-by-line Python port of the Go recipe.

What a straight translation would look like, kept deliberately naive: a dict of ``@dataclass``
states holding ``datetime`` fields, a write-preferring ``readerwriterlock`` lock with a new
handle per call (as its README shows), ``tracer.start_as_current_span`` on every call with the Go
span and attribute names, and a sweep that scans every conversation under the write lock,
collects the expired ids, then removes them and runs the cleanup (``on_expire``) under the lock.
Like Go's ``UpdateActivity`` it does not check the deadline, so it may revive a conversation.

``now`` is injectable (a callable returning an aware ``datetime``) so a benchmark can decide
which conversations are expired. ``load`` builds large populations without the per-call span and
lock; it stores exactly the objects ``register_conversation`` would.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from readerwriterlock import rwlock

__all__ = ["ConversationState", "NaiveExpiryManager", "NotFoundError", "utcnow"]

tracer = trace.get_tracer("beluga.messaging.conversation_expiry")
log = logging.getLogger("benchmarks.naive_port")

OnExpire = Callable[["ConversationState"], object]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class NotFoundError(KeyError):
    """Go: ``fmt.Errorf("conversation %s not found", id)``."""


@dataclass
class ConversationState:
    id: str
    last_activity: datetime
    created_at: datetime
    expires_at: datetime
    active: bool


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


class NaiveExpiryManager:
    """Go's ``ConversationExpiryManager``, ported without thought for Python's costs."""

    def __init__(
        self,
        ttl: timedelta,
        cleanup_interval: timedelta,
        *,
        now: Callable[[], datetime] = utcnow,
        on_expire: OnExpire | None = None,
        autostart: bool = True,
    ) -> None:
        self.conversations: dict[str, ConversationState] = {}
        self.ttl = ttl
        self.cleanup_interval = cleanup_interval
        self.mu = rwlock.RWLockWrite()
        self._now = now
        self._on_expire = on_expire
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if autostart:
            self.start()

    def register_conversation(self, conversation_id: str) -> None:
        with (
            tracer.start_as_current_span("expiry_manager.register") as span,
            self.mu.gen_wlock(),
        ):
            now = self._now()
            state = ConversationState(conversation_id, now, now, now + self.ttl, True)
            self.conversations[conversation_id] = state
            span.set_attributes(
                {"conversation_id": conversation_id, "expires_at": _rfc3339(state.expires_at)}
            )
            # Go also passes a description; Python's Status logs a warning for that on OK.
            span.set_status(Status(StatusCode.OK))

    def update_activity(self, conversation_id: str) -> None:
        with (
            tracer.start_as_current_span("expiry_manager.update_activity") as span,
            self.mu.gen_wlock(),
        ):
            state = self.conversations.get(conversation_id)
            if state is None:
                raise NotFoundError(f"conversation {conversation_id} not found")
            now = self._now()
            state.last_activity = now
            state.expires_at = now + self.ttl
            state.active = True
            span.set_attributes(
                {"conversation_id": conversation_id, "new_expires_at": _rfc3339(state.expires_at)}
            )
            span.set_status(Status(StatusCode.OK))

    def is_expired(self, conversation_id: str) -> bool:
        with self.mu.gen_rlock():
            state = self.conversations.get(conversation_id)
            if state is None:
                return True
            return self._now() > state.expires_at

    def cleanup_expired(self) -> list[str]:
        with tracer.start_as_current_span("expiry_manager.cleanup") as span:
            with self.mu.gen_wlock():
                now = self._now()
                expired = [cid for cid, s in self.conversations.items() if now > s.expires_at]
                for cid in expired:
                    self._cleanup_conversation(cid)
                    del self.conversations[cid]
                span.set_attributes(
                    {"expired_count": len(expired), "remaining_count": len(self.conversations)}
                )
            return expired

    def _cleanup_conversation(self, conversation_id: str) -> None:
        log.info("Cleaning up conversation %s", conversation_id)
        if self._on_expire is not None:
            self._on_expire(self.conversations[conversation_id])

    def load(self, conversation_ids: Iterable[str]) -> None:
        """Register many ids at the current ``now`` with one lock hold and no spans."""
        with self.mu.gen_wlock():
            for cid in conversation_ids:
                now = self._now()
                self.conversations[cid] = ConversationState(cid, now, now, now + self.ttl, True)

    # -- Go's cleanupLoop and Stop --------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._cleanup_loop, daemon=True)
            self._thread.start()

    def _cleanup_loop(self) -> None:
        interval = self.cleanup_interval.total_seconds()
        while not self._stop.wait(interval):
            self.cleanup_expired()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __len__(self) -> int:
        return len(self.conversations)
