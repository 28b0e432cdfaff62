"""Fixtures shared by the test modules; each module opts in to the ones it uses."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import START, TTL, WAIT, Events, Recorder

from conversation_expiry import ConversationExpiryManager, ManualClock

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


@pytest.fixture
def make_manager() -> Iterator[Callable[..., ConversationExpiryManager]]:
    """Builds managers (ttl TTL, interval 3600 unless given) and stops them all afterwards."""
    made: list[ConversationExpiryManager] = []

    def make(ttl: Any = TTL, interval: Any = 3600, **kwargs: Any) -> ConversationExpiryManager:
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
def manager(clock: ManualClock, recorder: Recorder) -> Iterator[ConversationExpiryManager]:
    """A manager on ``clock`` with no thread, recording its on_expire calls in ``recorder``."""
    m = ConversationExpiryManager(TTL, 3600, clock=clock, on_expire=recorder, autostart=False)
    yield m
    m.stop(timeout=WAIT)


@pytest.fixture
def rec() -> Events:
    return Events()


@pytest.fixture
def make(clock: ManualClock, rec: Events) -> Iterator[Callable[..., ConversationExpiryManager]]:
    """Lifecycle managers: on ``clock``, no thread, callbacks into ``rec``, ttl 10 by default."""
    made: list[ConversationExpiryManager] = []

    def factory(ttl: Any = 10, **kwargs: Any) -> ConversationExpiryManager:
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
