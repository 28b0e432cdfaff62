"""What the contract tests share: constants and recorders (fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from conversation_expiry import ConversationState, ExpiryReason

START = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
TTL = 10.0
WAIT = 5.0  # bound on every wait for something that must happen
# A module that sets ``STORE_KINDS = EVERY_STORE`` runs its manager fixtures over every store.
EVERY_STORE = ("memory", "redis")


@dataclass
class Recorder:
    """Collects on_expire calls as (id, reason, state)."""

    calls: list[tuple[str, ExpiryReason, ConversationState]] = field(default_factory=list)

    def __call__(self, state: ConversationState, reason: ExpiryReason) -> None:
        self.calls.append((state.id, reason, state))

    def reasons(self, cid: str) -> list[ExpiryReason]:
        return [r for i, r, _ in self.calls if i == cid]


def at(seconds: float) -> datetime:
    """The wall-clock time ``seconds`` after START."""
    return START + timedelta(seconds=seconds)


class Events:
    """Collects on_expire and on_warning calls of the lifecycle tests, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.expired: list[tuple[str, ExpiryReason]] = []
        self.expired_states: list[Any] = []
        self.warned: list[Any] = []

    def on_expire(self, state: ConversationState, reason: ExpiryReason) -> None:
        with self.lock:
            self.expired.append((state.id, reason))
            self.expired_states.append(state)

    def on_warning(self, state: ConversationState) -> None:
        with self.lock:
            self.warned.append(state)

    @property
    def warned_ids(self) -> list[str]:
        return [s.id for s in self.warned]


def run_bounded(fn: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Call ``fn`` on a helper thread; fail (instead of hanging) if it does not return in time."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised in the test thread
            out["error"] = exc

    t = threading.Thread(target=target, name="bounded-call", daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"call did not return within {timeout}s: deadlock?"
    if "error" in out:
        raise out["error"]
    return out.get("value")


class SetClock:
    """A clock that reads whatever the test set; it may even go back, as a stale reading does."""

    OFFSET = 1_700_000_000.0  # wall = monotonic + OFFSET

    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def wall_offset(self) -> float:
        return self.OFFSET


class RaisingLogFilter(logging.Filter):
    """Makes logging raise for records containing ``text``, the first ``times`` of them.

    Logging raises like this when a filter is broken, or when a ``LogRecord`` reads freezegun's
    patched ``time.time`` on another thread while a freeze stops (``IndexError``).
    """

    def __init__(self, text: str, times: int) -> None:
        super().__init__()
        self.text, self.left = text, times

    def filter(self, record: logging.LogRecord) -> bool:
        if self.left and self.text in record.getMessage():
            self.left -= 1
            raise IndexError("list index out of range")
        return True


@contextlib.contextmanager
def logging_raises(text: str, times: int = 10**9) -> Iterator[RaisingLogFilter]:
    """While in it, logging on the library's logger raises for records containing ``text``."""
    raising = RaisingLogFilter(text, times)
    logger = logging.getLogger("conversation_expiry")
    logger.addFilter(raising)
    try:
        yield raising
    finally:
        logger.removeFilter(raising)


def leave_all(m: Any, ids: Any) -> None:
    """Stop ``m`` so that every conversation leaves: at shutdown for an unshared store, ended
    one by one for a shared one (whose conversations outlive a stopping process)."""
    m.stop(timeout=WAIT, cleanup_remaining=True)
    if m.store.shared:
        for cid in ids:
            m.end_conversation(cid)


CHILD_TIMEOUT = 20.0  # seconds a forked child has to report before it counts as hung


def in_child(body: Callable[[], str]) -> str:
    """Fork; the child runs ``body`` and exits 0 with its result, or 1 if it raised."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded fork" (3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, whose coverage is not collected
        code, message = 1, "no result"
        try:
            os.close(read_end)
            message, code = body(), 0
        except BaseException as exc:
            message = f"child raised {exc!r}"
        finally:
            os.write(write_end, message.encode()[:512])
            os._exit(code)
    os.close(write_end)
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"the child did not finish in {CHILD_TIMEOUT}s: deadlock after fork")
            select.select([read_end], [], [], 0.05)  # a bounded wait for the child's report
        message = os.read(read_end, 4096).decode()
    finally:
        os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0, message
    return message
