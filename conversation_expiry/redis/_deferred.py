"""A client for a URL whose server could not say, at startup, whether it is a Cluster node.

The web integrations build their store when a worker process starts. If Redis is down then, a
store that cannot be built fails the worker's boot, and gunicorn stops the whole server when a
worker fails to boot: an outage of Redis would take the application down for good. So they get
this instead: a plain client, which fails each call with StoreUnavailableError while Redis is
away, and that asks the question again (at most once a second) until the server answers, then
becomes the client it needs (a ``RedisCluster`` for a Cluster node).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from redis import exceptions as rx

from .. import _fork
from .._errors import StoreUnavailableError
from ._client import cluster_client, cluster_node

__all__ = ["DeferredClient"]

_ASK_EVERY = 1.0  # seconds between questions while the server does not answer


class DeferredClient:
    """Stands in for the client ``url`` needs; every attribute is the current client's."""

    def __init__(self, url: str, options: dict[str, Any], plain: redis.Redis) -> None:
        self._ce_url = url
        self._ce_options = options
        self._ce_plain = plain
        self._ce_client: Any = None  # once decided
        self._ce_ask_at = time.monotonic() + _ASK_EVERY  # (the caller has just asked)
        self._ce_closed = False
        self._ce_lock = threading.Lock()
        _fork.renew_after_fork(self, _ce_lock=threading.Lock)

    def _ce_current(self) -> Any:
        """The client calls use now, without asking (for fork hooks and close)."""
        client = self._ce_client
        return self._ce_plain if client is None else client

    def _ce_decided(self) -> Any:
        client = self._ce_client
        if client is not None:
            return client
        now = time.monotonic()
        if self._ce_closed or now < self._ce_ask_at or not self._ce_lock.acquire(blocking=False):
            return self._ce_plain  # (asked just now, or another thread is asking)
        try:
            self._ce_ask_at = now + _ASK_EVERY
            try:
                node = cluster_node(self._ce_plain)
            except StoreUnavailableError:
                return self._ce_plain  # still away: this call fails on the plain client
            if node:
                try:
                    client = cluster_client(self._ce_url, self._ce_options)
                except Exception:
                    return self._ce_plain  # (the next question, in a second)
                # Not closed: another thread may be in a command on it (it closes when
                # collected).
                self._ce_plain = client
            else:
                client = self._ce_plain
            self._ce_client = client
            return client
        finally:
            self._ce_lock.release()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        client = self._ce_decided()
        try:
            return client.execute_command(*args, **options)
        except (rx.MovedError, rx.AskError) as exc:
            if client is self._ce_client:
                raise
            # A Cluster node, not asked yet (or its RedisCluster could not be made): this call
            # fails as in an outage, and the next one asks.
            self._ce_ask_at = 0.0
            raise rx.ConnectionError(f"a Redis Cluster node, the client not made yet: {exc}") \
                from exc

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_ce_"):  # (not set yet: never ask the server for it)
            raise AttributeError(name)
        return getattr(self._ce_decided(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_ce_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._ce_current(), name, value)

    def close(self) -> None:
        self._ce_closed = True
        with self._ce_lock:  # (a question under way ends first)
            self._ce_current().close()

    def __repr__(self) -> str:
        return f"DeferredClient({self._ce_current()!r})"
