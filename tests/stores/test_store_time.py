"""Store time: no decision on a reading older than one acted on; a bad reading fails one call.

The races are reproduced deterministically with :class:`PausingClock`, a legal clock (its
``monotonic()`` never decreases) that stops the thread that read it right after the reading, until
the test lets it go.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from support import WAIT, Recorder, run_bounded

from conversation_expiry import (
    ClockError,
    ConversationExpiredError,
    ConversationExpiryManager,
    ExpiryReason,
    ManualClock,
)

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


class PausingClock(ManualClock):
    """A ManualClock that pauses the thread named ``victim`` right after its next reading."""

    def __init__(self) -> None:
        super().__init__(START)
        self.victim: str | None = None
        self.read = threading.Event()  # the victim has its (soon stale) reading
        self.go = threading.Event()

    def reading(self) -> tuple[float, float]:
        value = super().reading()
        if threading.current_thread().name == self.victim:
            self.victim = None
            self.read.set()
            assert self.go.wait(WAIT)
        return value


class PausedStockClock:
    """A stock ManualClock (``inner``) whose reading pauses the same way, from the store's side.

    The store takes a stock clock's readings unchecked, so a stale one takes another path there
    than a subclass's (``PausingClock``): the races run on both.
    """

    def __init__(self) -> None:
        self.inner = ManualClock(START)
        self.victim: str | None = None
        self.read = threading.Event()
        self.go = threading.Event()

    def advance(self, seconds: float) -> None:
        self.inner.advance(seconds)

    def wrap(self, read: Any) -> Any:
        def reading() -> tuple[float, float]:
            value: tuple[float, float] = read()
            if threading.current_thread().name == self.victim:
                self.victim = None
                self.read.set()
                assert self.go.wait(WAIT)
            return value

        return reading


@pytest.fixture(params=["clock subclass", "stock clock"])
def clock(request: pytest.FixtureRequest) -> Any:
    return PausingClock() if request.param == "clock subclass" else PausedStockClock()


@pytest.fixture
def manager(clock: Any) -> Any:
    recorder = Recorder()
    stock = isinstance(clock, PausedStockClock)
    m = ConversationExpiryManager(
        10, 3600, clock=clock.inner if stock else clock, on_expire=recorder, autostart=False
    )
    if stock:
        assert m._store._stock
        m._store._reading = clock.wrap(m._store._reading)
    m.recorder = recorder  # type: ignore[attr-defined]
    yield m
    m.stop(timeout=WAIT)


def stalled(clock: PausingClock, call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``call`` on a thread that stalls right after it read the clock."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = call()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=target, name="stalled-caller", daemon=True)
    clock.victim = t.name
    t.start()
    assert clock.read.wait(WAIT)
    return t, out


def resume(clock: PausingClock, t: threading.Thread) -> None:
    clock.go.set()
    t.join(WAIT)
    assert not t.is_alive()


def test_a_stalled_update_cannot_revive_a_conversation_seen_expired(manager, clock) -> None:
    manager.register_conversation("a")
    clock.advance(9)
    t, out = stalled(clock, lambda: manager.update_activity("a"))  # reads 9: still live
    clock.advance(2)
    assert manager.is_expired("a") and manager.get("a") is None
    with pytest.raises(ConversationExpiredError):
        manager.update_activity("a")
    resume(clock, t)
    assert isinstance(out.get("error"), ConversationExpiredError)
    assert manager.is_expired("a") and len(manager) == 0
    assert manager.cleanup_expired() == ["a"]
    assert manager.recorder.reasons("a") == [ExpiryReason.EXPIRED]


def test_a_stalled_registration_starts_afresh_over_one_seen_expired(manager, clock) -> None:
    first = manager.register_conversation("a")
    ran: list[str] = []
    manager.add_cleanup("a", lambda: ran.append("old"))
    clock.advance(9)
    t, out = stalled(clock, lambda: manager.register_conversation("a"))
    clock.advance(2)
    assert manager.is_expired("a")
    resume(clock, t)
    assert out["value"].created_at > first.created_at  # a new incarnation, not the old one
    assert ran == ["old"] and manager.recorder.reasons("a") == [ExpiryReason.EXPIRED]


def test_a_stalled_end_reports_an_expiry_seen_by_others(manager, clock) -> None:
    manager.register_conversation("a")
    clock.advance(9)
    t, out = stalled(clock, lambda: manager.end_conversation("a"))
    clock.advance(2)
    assert manager.is_expired("a")
    resume(clock, t)
    assert out["value"] is False  # it was no longer live when it was ended
    assert manager.recorder.reasons("a") == [ExpiryReason.EXPIRED]


def test_a_stalled_update_cannot_put_a_conversation_behind_a_newer_one(manager, clock) -> None:
    manager.register_conversation("a")
    manager.register_conversation("b")
    clock.advance(5)
    t, _ = stalled(clock, lambda: manager.update_activity("a"))  # reads 5
    clock.advance(3)
    manager.update_activity("b")  # at 8: b now expires at 18
    resume(clock, t)  # applied after b's, so it counts as activity at 8, not 5
    clock.advance(8)  # 16: past 5 + 10, before 8 + 10
    swept = manager.cleanup_expired()
    still = [cid for cid in "ab" if not manager.is_expired(cid)]
    assert swept == [] and still == ["a", "b"] and len(manager) == 2


class OnceBadClock(ManualClock):
    """Returns ``bad`` as its next reading, once."""

    bad: object = None

    def reading(self) -> tuple[float, float]:
        value = super().reading()
        if self.bad is not None:
            bad, self.bad = self.bad, None
            return bad, value[1]  # type: ignore[return-value]
        return value


# Finite readings past the years a datetime shows: taken, they would hold the store's time
# there (it never goes back) and fail every later call that shows a time.
BEYOND_THE_YEARS = [1e300, 1e12, -1e12]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "later", [1.0], *BEYOND_THE_YEARS])
def test_one_bad_reading_costs_only_the_call_that_read_it(bad) -> None:
    clock = OnceBadClock(START)
    recorder = Recorder()
    m = ConversationExpiryManager(10, 3600, clock=clock, on_expire=recorder, autostart=False)
    m.register_conversation("a")
    clock.bad = bad
    with pytest.raises(ClockError):
        m.register_conversation("b")
    assert "b" not in m and len(m) == 1
    clock.advance(11)
    assert m.cleanup_expired() == ["a"]
    assert recorder.reasons("a") == [ExpiryReason.EXPIRED]
    clock.bad = bad
    with pytest.raises(ClockError):
        m.cleanup_expired()
    m.register_conversation("c")
    clock.advance(11)
    assert m.cleanup_expired() == ["c"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "later", True])
def test_a_patched_time_monotonic_that_is_no_finite_number_fails_that_call_alone(
    monkeypatch: pytest.MonkeyPatch, bad: object
) -> None:
    # The store takes the stock clocks' readings unchecked, so SystemClock checks what a
    # patched time.monotonic gives (it honours any patch).
    m = ConversationExpiryManager(10, 3600, autostart=False)
    before = m.register_conversation("a")
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: bad)
    with pytest.raises(ClockError):
        m.update_activity("a")
    with pytest.raises(ClockError):
        m.register_conversation("b")
    monkeypatch.setattr(time, "monotonic", real)
    assert "b" not in m and m.get("a") == before


def test_a_patched_time_monotonic_giving_ints_gives_float_readings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    m = ConversationExpiryManager(10, 3600, autostart=False)
    monkeypatch.setattr(time, "monotonic", lambda: 10**6)
    state = m.register_conversation("a")
    assert type(state[1].real) is float and state[1].real == 1e6
    assert not m.is_expired("a")


@pytest.mark.parametrize("offset", [float("inf"), float("nan"), 1e13])
def test_an_offset_that_is_no_finite_date_fails_update_activity_alone(offset: float) -> None:
    # update_activity checks the reading inline (an inlined copy of the store's check).
    class BadOffsetClock(ManualClock):
        bad: float | None = None

        def reading(self) -> tuple[float, float]:
            value = super().reading()
            return value if self.bad is None else (value[0], self.bad)

    clock = BadOffsetClock(START)
    m = ConversationExpiryManager(10, 3600, clock=clock, autostart=False)
    before = m.register_conversation("a")
    clock.bad = offset
    with pytest.raises(ClockError):
        m.update_activity("a")
    clock.bad = None
    assert m.get("a") == before


@pytest.mark.parametrize("reading", BEYOND_THE_YEARS)
def test_a_reading_past_the_years_fails_update_activity_alone(reading: float) -> None:
    # update_activity checks the reading inline (an inlined copy of the store's check).
    clock = OnceBadClock(START)
    m = ConversationExpiryManager(10, 3600, clock=clock, autostart=False)
    before = m.register_conversation("a")
    clock.bad = reading
    with pytest.raises(ClockError):
        m.update_activity("a")
    assert m.get("a") == before
    clock.advance(11)
    assert m.cleanup_expired() == ["a"]  # the store's time went on from where it was


def test_a_clock_error_names_the_reading() -> None:
    clock = OnceBadClock(START)
    m = ConversationExpiryManager(10, 3600, clock=clock, autostart=False)
    clock.bad = float("nan")
    with pytest.raises(ClockError, match="nan"):
        run_bounded(lambda: m.is_expired("a"))
