"""Keeping managers usable across os.fork() (gunicorn --preload, uWSGI, multiprocessing).

Threads do not survive a fork and locks held by other threads stay held forever in the child.
Like the OpenTelemetry SDK's batch processor we hook ``os.register_at_fork``: before the fork each
manager's store lock is taken (so the child never inherits a half-made change), the parent
releases it after, and the child re-creates its locks and restarts the cleanup thread it had.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ._faults import logger

if TYPE_CHECKING:
    from ._manager import ConversationExpiryManager

__all__ = ["track"]

_managers: weakref.WeakSet[ConversationExpiryManager] = weakref.WeakSet()
_held: list[Any] = []
_registry_lock = threading.Lock()


def track(manager: ConversationExpiryManager) -> None:
    """Look after ``manager`` at every fork of this process."""
    with _registry_lock:
        _managers.add(manager)


def _before() -> None:
    with _registry_lock:
        managers = list(_managers)
    for manager in managers:
        handle = manager._before_fork()
        if handle is None and hasattr(manager._store, "before_fork"):
            logger.warning(
                "fork(): the conversation store's lock stayed busy for 1s; the child re-creates it"
            )
        _held.append(handle)


def _after_in_parent() -> None:
    while _held:
        handle = _held.pop()
        if handle is not None:
            handle.release()


def _after_in_child() -> None:
    _held.clear()
    global _registry_lock
    _registry_lock = threading.Lock()
    for manager in list(_managers):
        try:
            manager._after_fork_in_child()
        except Exception:  # pragma: no cover - never let a library break a child process
            logger.exception("could not restore a conversation expiry manager after fork()")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
