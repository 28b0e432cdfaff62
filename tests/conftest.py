"""Fixtures shared by the test modules; each module opts in to the ones it uses."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from support import START, TTL, WAIT, Events, Recorder

from conversation_expiry import ConversationExpiryManager, ManualClock, MemoryStore

pytest_plugins = ["redis_servers"]


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    """Fails the test if it leaves a thread behind (joins new ones for up to WAIT first)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + WAIT
    for t in set(threading.enumerate()) - before:
        t.join(max(0.0, deadline - time.monotonic()))
    leaked = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert leaked == [], f"threads left behind: {leaked}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a module's manager fixtures over each store it names in ``STORE_KINDS``."""
    if "store_kind" in metafunc.fixturenames:
        kinds = getattr(metafunc.module, "STORE_KINDS", ("memory",))
        metafunc.parametrize(
            "store_kind",
            [pytest.param(k, marks=[pytest.mark.redis] if k != "memory" else []) for k in kinds],
        )


@pytest.fixture
def make_store(store_kind: str, request: pytest.FixtureRequest) -> Callable[[], Any]:
    """Fresh stores of the kind under test (None: the manager's default in-memory store)."""
    if store_kind == "memory":
        return lambda: None
    return request.getfixturevalue("redis_store")  # type: ignore[no-any-return]


@pytest.fixture
def make_manager(
    make_store: Callable[[], Any],
) -> Iterator[Callable[..., ConversationExpiryManager]]:
    """Builds managers (ttl TTL, interval 3600 unless given) and stops them all afterwards."""
    made: list[ConversationExpiryManager] = []

    def make(ttl: Any = TTL, interval: Any = 3600, **kwargs: Any) -> ConversationExpiryManager:
        if "store" not in kwargs:
            kwargs["store"] = make_store()
        m = ConversationExpiryManager(ttl, interval, **kwargs)
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop(timeout=WAIT)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def manager(
    clock: ManualClock, recorder: Recorder, make_store: Callable[[], Any]
) -> Iterator[ConversationExpiryManager]:
    """A manager on ``clock`` with no thread, recording its on_expire calls in ``recorder``."""
    m = ConversationExpiryManager(
        TTL, 3600, clock=clock, on_expire=recorder, autostart=False, store=make_store()
    )
    yield m
    m.stop(timeout=WAIT)


@pytest.fixture
def rec() -> Events:
    return Events()


@pytest.fixture
def make(
    clock: ManualClock, rec: Events, make_store: Callable[[], Any]
) -> Iterator[Callable[..., ConversationExpiryManager]]:
    """Lifecycle managers: on ``clock``, no thread, callbacks into ``rec``, ttl 10 by default."""
    made: list[ConversationExpiryManager] = []

    def factory(ttl: Any = 10, **kwargs: Any) -> ConversationExpiryManager:
        if "store" not in kwargs:
            kwargs["store"] = make_store()
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("autostart", False)
        kwargs.setdefault("on_expire", rec.on_expire)
        if "warning_before" in kwargs:
            kwargs.setdefault("on_warning", rec.on_warning)
        m = ConversationExpiryManager(ttl, 60, **kwargs)
        made.append(m)
        return m

    yield factory
    for m in made:
        m.stop(timeout=WAIT)


@pytest.fixture
def redis_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Stands in for conversation_expiry.redis; records RedisStore.from_url's arguments."""
    calls: list[tuple[str, dict[str, Any]]] = []

    class RedisStore:
        @classmethod
        def from_url(cls, url: str, **kwargs: Any) -> MemoryStore:
            calls.append((url, kwargs))
            return MemoryStore()

    stub = SimpleNamespace(RedisStore=RedisStore)
    monkeypatch.setitem(sys.modules, "conversation_expiry.redis", stub)
    return calls
