"""The redis-py client: sensible defaults, faults as StoreUnavailableError, server checks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import redis
from redis import exceptions as rx
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from .._errors import StoreUnavailableError

__all__ = [
    "CLIENT_ERRORS",
    "check_client",
    "client_from_url",
    "fail",
    "unavailable",
    "warn_if_evictable",
]

logger = logging.getLogger("conversation_expiry")
T = TypeVar("T")

# Errors that mean "not reachable or not serving now": the call may succeed later unchanged.
# BusyLoadingError, MaxConnectionsError and AuthenticationError are ConnectionErrors.
_UNAVAILABLE: tuple[type[Exception], ...] = (
    rx.ConnectionError,
    rx.TimeoutError,
    rx.ClusterDownError,  # MasterDownError is one
    rx.TryAgainError,
    rx.ReadOnlyError,
    rx.OutOfMemoryError,
    rx.ClusterError,
    rx.RedisClusterException,  # SlotNotCoveredError, "cannot connect to any node"
    rx.ChildDeadlockedError,
)
# Replies redis-py leaves as a plain ResponseError but that mean the same.
# BUSY: another client's script runs past busy-reply-threshold; the server answers again after.
_UNAVAILABLE_REPLIES = (
    "MISCONF", "NOREPLICAS", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "OOM", "BUSY"
)

# from_url defaults: a call fails within about 2 x 2 s when Redis stops answering, and 8 s when
# it must connect anew (redis-py retries the connection within each try of a call, so three
# retries took 34 s against a server under SIGSTOP), rather than redis-py's 11 x 5 s; a refused
# connection fails at once; a dead connection is noticed before it is used. One retry is what
# a connection the server has closed needs; an outage is the cleanup thread's to wait out.
DEFAULTS: dict[str, Any] = {
    "socket_timeout": 2.0,
    "socket_connect_timeout": 2.0,
    "health_check_interval": 15,
}
_RETRIES = 1


# Everything a call of the client may raise that fail() looks at.
CLIENT_ERRORS: tuple[type[Exception], ...] = (rx.RedisError, *_UNAVAILABLE)


def unavailable(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, with the client's unavailability raised as StoreUnavailableError."""
    try:
        return call(*args)
    except CLIENT_ERRORS as exc:
        fail(exc)


def fail(exc: Exception, namespace: str | None = None) -> NoReturn:
    """Raise what the store raises for ``exc``, one of CLIENT_ERRORS from a call.

    StoreUnavailableError when Redis is not serving now; ValueError when a script refused a
    namespace that runs on the other kind of time (lib_clock.lua); else ``exc`` itself.
    """
    if isinstance(exc, _UNAVAILABLE) or (
        isinstance(exc, rx.ResponseError) and str(exc).startswith(_UNAVAILABLE_REPLIES)
    ):
        raise StoreUnavailableError(f"Redis is unavailable: {exc}") from exc
    if isinstance(exc, rx.ResponseError) and str(exc).startswith("TIMEKIND"):
        recorded = "the Redis server's clock" if " runs on server" in str(exc) else "a driven clock"
        raise ValueError(
            f"namespace {namespace!r} runs on {recorded} and has conversations: a manager "
            "with a ManualClock (or any clock that is not a SystemClock) drives its store's "
            "time, one with a SystemClock uses the server's, and the two cannot share a "
            "namespace (the driven time would move the server's time high-water mark, or "
            "the other way round); use another namespace, or the same kind of clock"
        ) from None
    raise exc


def client_from_url(
    url: object, kwargs: dict[str, Any], cluster: object = None, defer: bool = False
) -> Any:
    """A client for ``url`` with the defaults, ``kwargs`` over them: a ``RedisCluster`` when
    ``cluster`` is True, or is None and the server says it is a Cluster node; with ``defer``, a
    server that cannot be asked gives a ``DeferredClient``, not StoreUnavailableError."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}: {url!r:.80}")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"url must be a redis://, rediss:// or unix:// URL, got {url!r:.80}")
    _check_database(url)
    if cluster is not None and not isinstance(cluster, bool):
        raise TypeError(f"cluster must be None, True or False, got {cluster!r:.80}")
    options = dict(DEFAULTS)
    options["retry"] = Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), _RETRIES)
    if not url.startswith("unix://"):
        options["socket_keepalive"] = True  # (a unix socket connection takes no such option)
    options.update(kwargs)
    try:
        if cluster:
            return cluster_client(url, options)
        client = redis.Redis.from_url(url, **options)
    except ValueError as exc:
        raise ValueError(f"url is not a valid Redis URL ({exc}): {url!r:.80}") from None
    if cluster is None and not url.startswith("unix://"):
        try:
            node = cluster_node(client)
        except StoreUnavailableError:
            if not defer:
                raise
            from ._deferred import DeferredClient

            return DeferredClient(url, options, client)
        if node:
            client.close()
            return cluster_client(url, options)
    return client


def _check_database(url: str) -> None:
    """Refuse a database that is not a number: redis-py takes ``/abc`` as 0, ``/1/2`` as 12."""
    if url.startswith("unix://"):
        return  # (its path is the socket's; the database is ?db=N)
    try:
        path = urlsplit(url).path
    except ValueError as exc:
        raise ValueError(f"url is not a valid Redis URL ({exc}): {url!r:.80}") from None
    number = path[1:]
    if number and not (number.isascii() and number.isdigit()):  # (not the URL: its password)
        raise ValueError(
            f"url must name its database by number (redis://host:6379/0), got {path!r:.40}"
        )


def cluster_node(client: redis.Redis) -> bool:
    """Whether the server is a Redis Cluster node (``INFO cluster``): a namespace lives in one
    slot, on one node, and a plain client on any other node would get MOVED for every call."""
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    except rx.ResponseError:
        return False  # INFO refused (a managed Redis): no cluster a client could route for
    except CLIENT_ERRORS as exc:
        client.close()
        try:
            fail(exc)
        except StoreUnavailableError as unavailable:
            raise StoreUnavailableError(
                f"{unavailable} (asking whether the server is a Redis Cluster node; pass "
                "cluster=True or cluster=False to make the client without asking)"
            ) from exc


def cluster_client(url: str, options: dict[str, Any]) -> Any:
    from redis.cluster import RedisCluster

    # RedisCluster takes no health checks (it drops the option); the rest carries over.
    options = {k: v for k, v in options.items() if k != "health_check_interval"}
    try:
        return RedisCluster.from_url(url, **options)
    except CLIENT_ERRORS as exc:  # it connects at once, to learn which node owns which slots
        fail(exc)


def check_client(client: object) -> None:
    """Refuse what cannot work: not a client, or one that decodes replies (records are bytes)."""
    if isinstance(client, type) or not callable(getattr(client, "register_script", None)):
        raise TypeError(
            f"client must be a redis.Redis or redis.cluster.RedisCluster, got {client!r:.80}"
        )
    encoder = getattr(client, "get_encoder", None)
    if callable(encoder) and getattr(encoder(), "decode_responses", False):
        raise ValueError(
            "client must not decode responses (decode_responses=True): the store's records "
            "are binary; pass a client made with decode_responses=False"
        )


def _policies(reply: object) -> list[str]:
    """The maxmemory-policy values in a CONFIG GET reply (a Cluster's: one per node)."""
    if not isinstance(reply, dict):
        return []
    found = []
    for key, value in reply.items():
        if isinstance(value, dict):
            found.extend(_policies(value))
        elif (key.decode() if isinstance(key, bytes) else str(key)) == "maxmemory-policy":
            found.append(value.decode() if isinstance(value, bytes) else str(value))
    return found


def warn_if_evictable(client: Any, prefix: bytes) -> bool:
    """Log once (WARNING) if the server may evict the store's keys; True if it warned.

    The keys have no TTL, so only the ``allkeys-*`` policies can evict them. A refused CONFIG
    (managed Redis) or an unreachable server is not an error here: the check is advice.
    """
    try:
        policies = _policies(client.config_get("maxmemory-policy"))
    except (rx.RedisError, OSError):
        return False
    evicting = sorted({p for p in policies if p.startswith("allkeys-")})
    if not evicting:
        return False
    logger.warning(
        "Redis maxmemory-policy is %s: under memory pressure the server may evict the "
        "conversation store's keys (%s*), losing conversations and their pending cleanups; "
        "use noeviction or a volatile-* policy",
        "/".join(evicting),
        prefix.decode("utf-8", "replace"),
    )
    return True
