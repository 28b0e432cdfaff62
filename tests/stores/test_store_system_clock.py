"""The in-memory store reads a SystemClock inline in update_activity, as its ``reading`` does.

The manager's ``update_activity`` on the in-memory store (written in ``_fused_update``)
copies ``SystemClock.reading``'s common case (no patch, no freeze, offset not due for a
recheck); every other case goes through the clock, as ``MemoryStore.touch`` (its
reference), ``get`` and ``is_expired`` always do. These tests hold the copy to the
reference: the clock's own state (its drift, cached offset, recheck time, freeze) decides what
each request path sees.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import freezegun
import pytest

from conversation_expiry import ConversationExpiredError, ConversationExpiryManager, SystemClock

TTL = 10.0


def _update(m: ConversationExpiryManager) -> bool:
    try:
        m.update_activity("a")
    except ConversationExpiredError:
        return False
    return True


def _touch(m: ConversationExpiryManager) -> bool:
    # MemoryStore.touch itself, the reference of update_activity's inline touch: the traced
    # path and other stores call it.
    try:
        m.store.touch("a", True)
    except ConversationExpiredError:
        return False
    return True


PATHS: dict[str, Callable[[ConversationExpiryManager], bool]] = {
    "update_activity": _update,
    "touch": _touch,
    "get": lambda m: m.get("a") is not None,
    "is_expired": lambda m: not m.is_expired("a"),
}


@pytest.fixture(params=sorted(PATHS))
def live(request: pytest.FixtureRequest) -> Callable[[ConversationExpiryManager], bool]:
    """One request path, as "is conversation 'a' live?"."""
    return PATHS[request.param]


@pytest.fixture
def clock() -> SystemClock:
    return SystemClock()


@pytest.fixture
def manager(clock: SystemClock) -> ConversationExpiryManager:
    m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False)
    m.register_conversation("a")
    return m


def test_each_request_path_counts_the_clocks_drift(
    manager: ConversationExpiryManager, clock: SystemClock, live: Any
) -> None:
    assert live(manager)
    clock._drift += TTL + 1  # as after a freeze that ran the clock ahead
    clock._recheck_at = math.inf  # so touch takes its inlined path, not the clock's refresh
    assert not live(manager)


def test_an_update_is_stamped_with_the_clocks_reading_and_its_cached_offset(
    manager: ConversationExpiryManager, clock: SystemClock
) -> None:
    clock._drift += TTL / 2
    before = clock.reading()
    state = manager.update_activity("a")
    after = clock.reading()
    assert before[0] <= state[1].real <= after[0]
    assert state[2][3] is clock._offset


def test_each_request_path_lets_the_clock_recheck_its_offset_when_due(
    manager: ConversationExpiryManager, clock: SystemClock, live: Any
) -> None:
    clock._recheck_at = -math.inf
    assert live(manager)
    assert clock._recheck_at > time.monotonic()  # the clock's _refresh ran


def test_each_request_path_honours_a_patched_time_monotonic(
    manager: ConversationExpiryManager, monkeypatch: pytest.MonkeyPatch, live: Any
) -> None:
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + TTL + 1)
    assert not live(manager)


def test_an_update_honours_a_patched_time_time(
    manager: ConversationExpiryManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 1e4)
    state = manager.update_activity("a")
    assert abs(state.last_activity.timestamp() - (real() + 1e4)) < 60


def test_each_request_path_leaves_a_freeze_through_the_clock(live: Any) -> None:
    clock = SystemClock()
    with freezegun.freeze_time("2030-01-01") as frozen:
        m = ConversationExpiryManager(TTL, 3600, clock=clock, autostart=False)
        m.register_conversation("a")
        frozen.tick(TTL - 1)
        assert clock._freeze is not None
    assert live(m)  # leaving the freeze neither expires nor revives
    assert clock._freeze is None  # the clock thawed on that call
