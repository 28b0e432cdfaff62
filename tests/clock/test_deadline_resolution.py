"""Deadlines to the microsecond: live at the microsecond of its ``expires_at``, expired after.

Readings are floats, and a float sum of decimal steps is not their decimal sum (0.1 + 0.1 + 0.1
is just over 0.3, 0.7 + 0.1 just under 0.8); the datetimes a state shows are whole microseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from random import Random
from typing import Any

import pytest
from freezegun import freeze_time
from support import EVERY_STORE

from conversation_expiry import ConversationExpiredError, ConversationExpiryManager, ManualClock

STORE_KINDS = EVERY_STORE
US = timedelta(microseconds=1)


def live_everywhere(m: ConversationExpiryManager, cid: str) -> bool:
    """Every view of ``cid`` says it is live (or every one that it is not); else fail."""
    views = {
        "in": cid in m,
        "is_expired": not m.is_expired(cid),
        "get": m.get(cid) is not None,
        "len": len(m) == 1,
    }
    assert len(set(views.values())) == 1, views
    return views["in"]


@pytest.mark.parametrize(
    ("ttl", "before", "steps"),
    [
        (timedelta(milliseconds=300), [], [timedelta(milliseconds=100)] * 3),
        (0.3, [], [0.1, 0.1, 0.1]),
        (0.1, [0.7], [0.1]),
        (1.1, [2.2], [0.55, 0.55]),
    ],
    ids=["timedeltas", "0.1x3", "after-0.7", "halves"],
)
def test_a_conversation_is_live_at_its_expires_at_and_expired_a_microsecond_after(
    make_manager: Callable[..., ConversationExpiryManager],
    ttl: Any,
    before: list[float],
    steps: list[Any],
) -> None:
    clock = ManualClock(datetime(2020, 1, 1, tzinfo=timezone.utc))
    m = make_manager(ttl, clock=clock, autostart=False)
    for step in before:
        clock.advance(step)
    state = m.register_conversation("a")
    for step in steps:
        clock.advance(step)
    assert clock.now() == state.expires_at
    assert live_everywhere(m, "a")
    assert m.cleanup_expired() == []
    clock.advance(US)
    assert not live_everywhere(m, "a")
    with pytest.raises(ConversationExpiredError):
        m.update_activity("a")


def test_update_activity_at_the_deadline_slides_it(
    make_manager: Callable[..., ConversationExpiryManager],
) -> None:
    clock = ManualClock(datetime(2020, 1, 1, tzinfo=timezone.utc))
    m = make_manager(0.3, clock=clock, autostart=False)
    m.register_conversation("a")
    for _ in range(3):
        clock.advance(0.1)
    state = m.update_activity("a")
    assert state.expires_at == clock.now() + timedelta(seconds=0.3)


def test_random_microsecond_steps_never_expire_at_the_deadline(store_kind: str) -> None:
    if store_kind != "memory":
        pytest.skip("the Redis store counts integer microseconds (one case above suffices)")
    rng = Random(7)
    for _ in range(300):
        clock = ManualClock(datetime(2020, 1, 1, tzinfo=timezone.utc))
        ttl = timedelta(microseconds=rng.randrange(1, 5_000_000))
        m = ConversationExpiryManager(ttl, 60, clock=clock, autostart=False)
        clock.advance(timedelta(microseconds=rng.randrange(10**9)))
        state = m.register_conversation("a")
        left = ttl
        while left:
            step = min(left, timedelta(microseconds=rng.randrange(1, 2_000_000)))
            clock.advance(step.total_seconds())
            left -= step
        assert clock.now() == state.expires_at
        assert live_everywhere(m, "a"), (ttl, state)
        clock.advance(US)
        assert not live_everywhere(m, "a"), (ttl, state)
        m.stop()


def test_under_freezegun_ticks_summing_to_the_ttl_do_not_expire(
    make_manager: Callable[..., ConversationExpiryManager], store_kind: str
) -> None:
    if store_kind != "memory":
        pytest.skip("freezegun does not move the Redis server's clock (README, guarantee 12)")
    rng = Random(11)
    with freeze_time("2020-01-01") as frozen:
        m = make_manager(timedelta(milliseconds=300), autostart=False)
        for i in range(50):
            frozen.tick(timedelta(microseconds=rng.randrange(1, 10**7)))
            state = m.register_conversation(f"c{i}")
            for _ in range(3):
                frozen.tick(timedelta(milliseconds=100))
            assert datetime.now(timezone.utc) == state.expires_at
            assert not m.is_expired(f"c{i}")
            frozen.tick(US)
            assert m.is_expired(f"c{i}")


@pytest.mark.parametrize("ttl", [0.1, 1.5, timedelta(seconds=1800, microseconds=3), 4 * 3600])
def test_expires_at_is_last_activity_plus_the_ttl_on_the_system_clock(
    make_manager: Callable[..., ConversationExpiryManager], ttl: Any
) -> None:
    m = make_manager(ttl, autostart=False)
    span = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
    for i in range(500):
        for state in (m.register_conversation(f"c{i}"), m.update_activity(f"c{i}")):
            assert state.expires_at - state.last_activity == span
