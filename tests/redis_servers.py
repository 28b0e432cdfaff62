"""A pytest plugin: real ``redis-server`` processes for the Redis tests, started and stopped here.

* ``redis_server`` (session): one server on a free loopback port, no persistence;
* ``redis_store``: a factory of RedisStores, each on a fresh namespace, closed afterwards;
* ``redis_cluster`` (session): a real 3-node Redis Cluster on loopback ports;
* :class:`RedisServer` / :class:`RedisCluster`: the helpers, for tests that kill and restart one;
* :func:`redis_store_factories`: ``pytest.param`` factories over both, for a store contract suite.

Without ``redis-server`` on the PATH the tests that need it skip with the reason, unless
``CONVERSATION_EXPIRY_REQUIRE_REDIS=1`` (CI), which makes them fail instead.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "RedisCluster",
    "RedisServer",
    "StoreFactory",
    "redis_store_factories",
    "require_redis",
]

START_TIMEOUT = 10.0  # bound on the wait for a server to answer PING


def require_redis() -> str:
    """The path of ``redis-server``; skips (or fails, when required) if there is none."""
    path = shutil.which("redis-server")
    if path is None or shutil.which("redis-cli") is None:
        reason = "redis-server / redis-cli not found on PATH (apt-get install redis-server)"
        if os.environ.get("CONVERSATION_EXPIRY_REQUIRE_REDIS") == "1":
            pytest.fail(f"{reason}; CONVERSATION_EXPIRY_REQUIRE_REDIS=1 requires them")
        pytest.skip(reason)
    pytest.importorskip("redis")
    return path


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(cluster: bool = False) -> int:
    """A free loopback port; for a cluster node also its bus port (+10000), so at most 55535."""
    if not cluster:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    for _ in range(1000):
        port = random.randrange(20000, 45000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _ping(port: int, timeout: float) -> bool:
    """One PING in raw RESP (no client needed); True on +PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` on a loopback port in its own directory; restartable on that port.

    ``appendonly=True`` keeps data across :meth:`kill` + :meth:`start` (``appendfsync always``,
    so a test's writes are on disk before the kill).
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        appendonly: bool = False,
        port: int | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.binary = require_redis()
        self._tmp = None if directory is not None else tempfile.mkdtemp(prefix="ce-redis-")
        self.dir = Path(directory if directory is not None else self._tmp)  # type: ignore[arg-type]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.port = port or free_port()
        self.extra = list(extra or [])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--save", "", "--daemonize", "no", "--protected-mode", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args + self.extra

    def start(self) -> RedisServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen(
            self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(self.port, 0.2):
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer in {START_TIMEOUT}s")
            time.sleep(0.02)  # polling a process we started: nothing to wait on instead
        return self

    def kill(self) -> None:
        """SIGKILL: an outage, not a shutdown (no final save)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(START_TIMEOUT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def client(self, **kwargs: Any) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join((self.dir / "redis.log").read_text().splitlines()[-n:])
        except OSError:
            return "(no log)"


class RedisCluster:
    """A real 3-node Redis Cluster (masters only) on loopback ports."""

    def __init__(self, nodes: int = 3) -> None:
        require_redis()
        self._tmp = tempfile.mkdtemp(prefix="ce-cluster-")
        self.servers = []
        for n in range(nodes):
            d = Path(self._tmp) / f"node{n}"
            server = RedisServer(d, port=free_port(cluster=True))
            server.extra = [
                "--cluster-enabled", "yes", "--cluster-config-file", str(d / "nodes.conf"),
                "--cluster-node-timeout", "5000",
            ]  # fmt: skip
            self.servers.append(server)

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self) -> RedisCluster:
        for server in self.servers:
            server.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create",
             *[f"127.0.0.1:{s.port}" for s in self.servers],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not all(self._ok(s) for s in self.servers):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok in 30s")
            time.sleep(0.05)  # polling processes we started
        return self

    @staticmethod
    def _ok(server: RedisServer) -> bool:
        out = subprocess.run(
            ["redis-cli", "-p", str(server.port), "cluster", "info"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return "cluster_state:ok" in out.stdout

    def client(self, **kwargs: Any) -> Any:
        from redis.cluster import RedisCluster as Client

        return Client(host="127.0.0.1", port=self.servers[0].port, **kwargs)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)


# -- fixtures -------------------------------------------------------------------------------

_servers: dict[str, Any] = {}


def _session_server(kind: str) -> Any:
    """The session's server (or cluster) of ``kind``, started on first use."""
    found = _servers.get(kind)
    if found is None:
        found = _servers[kind] = (RedisServer() if kind == "redis" else RedisCluster()).start()
    return found


def pytest_sessionfinish(session: pytest.Session) -> None:
    while _servers:
        _servers.popitem()[1].stop()


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    server: RedisServer = _session_server("redis")
    return server


@pytest.fixture(scope="session")
def redis_cluster() -> RedisCluster:
    cluster: RedisCluster = _session_server("redis-cluster")
    return cluster


StoreFactory = Callable[..., Any]


def _namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


class _Stores:
    """Makes stores on one kind of server; closes them (and their clients) at the end."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.made: list[Any] = []

    def __call__(self, *, namespace: str | None = None, lease: float = 30.0, **kw: Any) -> Any:
        from conversation_expiry.redis import RedisStore

        client = _session_server(self.kind).client(**kw)
        store = RedisStore(client, namespace=namespace or _namespace(), lease=lease)
        self.made.append(store)
        return store

    def close(self) -> None:
        for store in self.made:
            store.close()
            store._client.close()
        self.made.clear()


@pytest.fixture
def redis_store() -> Iterator[StoreFactory]:
    """``redis_store(namespace=None, lease=30.0, **client_kwargs)``: a store on a fresh
    namespace of the session's server (several calls may share a namespace)."""
    stores = _Stores("redis")
    yield stores
    stores.close()


@pytest.fixture
def redis_cluster_store(redis_cluster: RedisCluster) -> Iterator[StoreFactory]:
    """Like ``redis_store``, on the session's 3-node cluster through ``RedisCluster``."""
    stores = _Stores("redis-cluster")
    yield stores
    stores.close()


def redis_store_factories() -> list[Any]:
    """``pytest.param``s (ids ``redis``, ``redis-cluster``) of context managers: each
    ``with param() as make:`` gives a factory ``make(namespace=None, lease=30.0)`` of stores
    on a fresh namespace, closed when the block ends; servers start on first use (and skip or
    fail as :func:`require_redis` says). For ``@pytest.mark.parametrize`` of a contract suite.
    """
    from contextlib import contextmanager

    def kind(name: str) -> Callable[[], Any]:
        @contextmanager
        def factory() -> Iterator[StoreFactory]:
            stores = _Stores(name)
            try:
                yield stores
            finally:
                stores.close()

        return factory

    return [
        pytest.param(kind("redis"), id="redis", marks=pytest.mark.redis),
        pytest.param(kind("redis-cluster"), id="redis-cluster", marks=pytest.mark.redis),
    ]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis: needs a real redis-server (started by the tests)")
