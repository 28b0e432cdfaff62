"""Keeping the library usable across os.fork() (gunicorn --preload, uWSGI, multiprocessing).

Threads do not survive a fork, and a lock another thread held at that instant stays held forever
in the child, so the child's first call that takes it hangs. Like the OpenTelemetry SDK we hook
``os.register_at_fork``, with two registries:

* :func:`renew_after_fork`: objects (or modules) whose lock-like attributes are replaced by fresh
  ones in the child. Every lock the library owns is registered here: one mechanism, not a copy
  of it per class.
* :func:`track`: managers. Before the fork each manager's store lock is taken (so the child never
  inherits a half-made change), the parent releases it after, and the child re-creates the
  store's locks and restarts the cleanup thread it had.

Both registries are weak: registering an object never keeps it alive. One ``register_at_fork``
for the process, not one per object, because registrations can never be removed.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._manager import ConversationExpiryManager

__all__ = ["renew_after_fork", "track"]

_log = logging.getLogger("conversation_expiry")  # not _faults.logger: _faults registers here

# Seconds _before() waits for a registry lock held by another thread; past it the child gets a
# fresh lock anyway (the registries are then read as they stand: dict/set operations are atomic).
_REGISTRY_WAIT = 1.0

_managers: weakref.WeakSet[ConversationExpiryManager] = weakref.WeakSet()
_renewals: weakref.WeakKeyDictionary[Any, dict[str, Callable[[], object]]] = (
    weakref.WeakKeyDictionary()
)
_held: list[Any] = []
_registry_lock = threading.Lock()
_registry_held = False


def renew_after_fork(obj: object, **factories: Callable[[], object]) -> None:
    """In a forked child, set each attribute ``name`` of ``obj`` to ``factories[name]()``.

    For locks, events and conditions another thread may hold at the fork. ``obj`` is held
    weakly; a module works too (for a module-level lock). Call it once the attributes exist:
    the child re-creates them before anything else of the library runs there.
    """
    with _registry_lock:
        _renewals.setdefault(obj, {}).update(factories)


def track(manager: ConversationExpiryManager) -> None:
    """Look after ``manager`` at every fork of this process."""
    with _registry_lock:
        _managers.add(manager)


def _before() -> None:
    global _registry_held
    # Held across the fork: the child then inherits the registries between two changes.
    _registry_held = _registry_lock.acquire(timeout=_REGISTRY_WAIT)
    for manager in list(_managers):
        handle = manager._before_fork()
        if handle is None and hasattr(manager._store, "before_fork"):
            _log.warning(
                "fork(): the conversation store's lock stayed busy for 1s; the child re-creates it"
            )
        _held.append(handle)


def _after_in_parent() -> None:
    global _registry_held
    while _held:
        handle = _held.pop()
        if handle is not None:
            handle.release()
    if _registry_held:
        _registry_held = False
        _registry_lock.release()


def _after_in_child() -> None:
    global _registry_lock, _registry_held
    _held.clear()
    _registry_lock = threading.Lock()
    _registry_held = False
    for obj, factories in list(_renewals.items()):  # first: the managers' hooks take these locks
        for name, factory in factories.items():
            try:
                setattr(obj, name, factory())
            except Exception:  # pragma: no cover - as below
                _log.exception("could not re-create %s of %r after fork()", name, obj)
    for manager in list(_managers):
        try:
            manager._after_fork_in_child()
        except Exception:  # pragma: no cover - never let a library break a child process
            _log.exception("could not restore a conversation expiry manager after fork()")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
