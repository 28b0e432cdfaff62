"""The redis-py client's locks across os.fork(): held by the forking thread, so none is inherited
locked by a thread the child does not have.

redis-py resets a pool in a child when it first sees the new pid, but that reset takes the
pool's lock first: a lock another thread held at the fork (a request, the cleanup thread or the
lease keeper getting a connection) hangs the child's first call forever. So, like the
in-memory store's lock, these are taken before the fork and released after it in both
processes; one that stays busy past the timeout is replaced in the child instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["ForkHold"]

# Locks held by a ForkHold of this fork (one client may serve several stores; plain Locks are
# not reentrant).
_holding: set[int] = set()


def _in_use(client: Any) -> Any:
    """The client itself, or the one a DeferredClient uses now (without asking the server)."""
    current = getattr(type(client), "_ce_current", None)
    return client if current is None else current(client)


def _locks(client: Any) -> Iterator[tuple[Any, str]]:
    """(object, attribute) of the client's locks, in redis-py's own order of taking them."""
    client = _in_use(client)
    # A single-connection client holds this one for the whole command, pool locks inside it.
    yield client, "single_connection_lock"
    nodes = getattr(client, "nodes_manager", None)
    if nodes is not None:  # a RedisCluster: _initialization_lock before _lock (its rule)
        yield nodes, "_initialization_lock"
        yield client, "_lock"
        yield nodes, "_lock"
        cache = getattr(nodes, "nodes_cache", None) or {}
        for node in list(cache.values()):
            connection = getattr(node, "redis_connection", None)
            pool = getattr(connection, "connection_pool", None)
            if pool is not None:
                yield pool, "_fork_lock"
                yield pool, "_lock"
        return
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        yield pool, "_fork_lock"
        yield pool, "_lock"


def _fresh(lock: Any) -> Any:
    return threading.RLock() if isinstance(lock, type(threading.RLock())) else threading.Lock()


class ForkHold:
    """The client's locks, taken within ``timeout`` (store.before_fork's handle)."""

    def __init__(self, client: Any, timeout: float) -> None:
        self._client = client
        self._held: list[Any] = []
        self._busy: list[tuple[Any, str, Any]] = []  # not taken in time: replaced in the child
        deadline = time.monotonic() + timeout
        for obj, name in _locks(client):
            lock = getattr(obj, name, None)
            if lock is None or not hasattr(lock, "acquire") or id(lock) in _holding:
                continue
            if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                _holding.add(id(lock))
                self._held.append(lock)
            else:
                self._busy.append((obj, name, lock))

    def release(self) -> None:
        """In the parent after the fork (and in the child: its one thread took them)."""
        while self._held:
            lock = self._held.pop()
            _holding.discard(id(lock))
            lock.release()

    def release_in_child(self) -> None:
        self.release()
        for obj, name, lock in self._busy:  # held by a thread the child does not have
            if getattr(obj, name, None) is lock:
                setattr(obj, name, _fresh(lock))
        self._busy.clear()
        _holding.clear()
        client = _in_use(self._client)
        if getattr(client, "connection", None) is not None:  # single_connection_client
            # Its one connection is the parent's socket (redis-py resets pools in a child, not
            # this): the child's commands take connections from the (reset) pool instead.
            client.connection = None

