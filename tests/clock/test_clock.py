"""SystemClock and ManualClock: what expiry decisions and reported timestamps read."""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from conversation_expiry import ManualClock, SystemClock
from conversation_expiry._clock import WallOffset, reader

FROZEN = datetime(2030, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


def test_system_clock_offset_is_stable_between_reads() -> None:
    clock = SystemClock()
    assert len({clock.wall_offset() for _ in range(1000)}) == 1


def test_system_clock_offset_maps_monotonic_to_wall_time() -> None:
    clock = SystemClock()
    now, offset = clock.reading()
    assert now + offset == pytest.approx(time.time(), abs=0.05)


def test_system_clock_reading_is_monotonic_and_offset() -> None:
    clock = SystemClock()
    now, offset = clock.reading()
    assert clock.monotonic() >= now
    assert offset == clock.wall_offset()


def wall_of(reading: tuple[float, float]) -> datetime:
    mono, offset = reading
    assert isinstance(offset, WallOffset)
    return offset.base + timedelta(seconds=mono - offset.mono)


def test_system_clock_reports_the_frozen_time() -> None:
    clock = SystemClock()
    with freeze_time(FROZEN):
        assert wall_of(clock.reading()) == FROZEN
        assert clock.monotonic() + clock.wall_offset() == pytest.approx(FROZEN.timestamp())


def test_system_clock_continues_from_where_it_stood_when_a_freeze_starts() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    with freeze_time("1971-01-01"):  # far behind the real clock: must not jump
        inside = clock.monotonic()
    assert 0 <= inside - before < 1


def test_system_clock_reads_frozen_time_on_other_threads() -> None:
    # freezegun gives real time to callers under the threading module; the clock must not.
    clock = SystemClock()
    seen: list[float] = []
    with freeze_time(FROZEN):
        here = clock.monotonic()
        worker = threading.Thread(target=lambda: seen.append(clock.monotonic()))
        worker.start()
        worker.join(5)
    assert seen == [here]


def test_system_clock_follows_a_ticking_freeze() -> None:
    clock = SystemClock()
    with freeze_time(FROZEN) as frozen:
        before = clock.monotonic()
        frozen.tick(30)
        assert clock.monotonic() == before + 30
        assert wall_of(clock.reading()) == FROZEN + timedelta(seconds=30)


def test_system_clock_is_exact_to_the_microsecond_in_the_year_2999() -> None:
    moment = datetime(2999, 12, 31, 23, 59, 58, 123457, tzinfo=timezone.utc)
    clock = SystemClock()
    with freeze_time(moment) as frozen:
        before = clock.monotonic()
        frozen.tick(timedelta(microseconds=1))
        assert clock.monotonic() > before
        assert wall_of(clock.reading()) == moment + timedelta(microseconds=1)


def test_system_clock_does_not_go_back_when_a_freeze_moves_back() -> None:
    clock = SystemClock()
    with freeze_time(FROZEN) as frozen:
        before = clock.monotonic()
        frozen.move_to("1990-01-01")
        assert clock.monotonic() >= before
        assert wall_of(clock.reading()) == datetime(1990, 1, 1, tzinfo=timezone.utc)


def test_system_clock_never_runs_back_after_a_freeze_that_ran_ahead() -> None:
    clock = SystemClock()
    with freeze_time(FROZEN) as frozen:
        frozen.tick(3600)
        inside = clock.monotonic()
    after = clock.monotonic()
    assert after >= inside
    assert clock.monotonic() + clock.wall_offset() == pytest.approx(time.time(), abs=0.05)


def test_system_clock_is_real_again_after_the_freeze() -> None:
    clock = SystemClock()
    with freeze_time(FROZEN):
        clock.monotonic()
    before = clock.monotonic()
    assert clock.monotonic() - before < 1
    assert clock.monotonic() + clock.wall_offset() == pytest.approx(time.time(), abs=0.05)


def test_system_clock_honours_a_plain_monkeypatch(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SystemClock()
    monkeypatch.setattr(time, "monotonic", lambda: 42.0)
    assert clock.monotonic() == 42.0


def test_system_clock_wall_offset_follows_a_patched_wall_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = SystemClock()
    before = clock.wall_offset()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 86400)
    assert clock.wall_offset() == pytest.approx(before + 86400, abs=0.05)


def test_system_clock_takes_a_wall_step_at_the_next_recheck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = SystemClock()
    before = clock.wall_offset()
    monkeypatch.setattr(clock, "_recheck_at", -math.inf)
    monkeypatch.setattr(SystemClock, "_measure_offset", staticmethod(lambda: before + 3600))
    assert clock.reading()[1] == before + 3600


def test_system_clock_ignores_offset_jitter_below_a_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = SystemClock()
    before = clock.wall_offset()
    monkeypatch.setattr(clock, "_recheck_at", -math.inf)
    monkeypatch.setattr(SystemClock, "_measure_offset", staticmethod(lambda: before + 1e-4))
    assert clock.reading()[1] == before


def test_manual_clock_starts_at_the_given_time() -> None:
    clock = ManualClock(FROZEN)
    assert clock.now() == FROZEN
    assert clock.monotonic() + clock.wall_offset() == FROZEN.timestamp()


def test_manual_clock_defaults_to_now() -> None:
    clock = ManualClock()
    assert abs(clock.now() - datetime.now(timezone.utc)) < timedelta(seconds=5)


def test_manual_clock_advances_by_seconds_and_timedeltas() -> None:
    clock = ManualClock(FROZEN)
    clock.advance(1.5)
    clock.advance(timedelta(minutes=1))
    assert clock.now() == FROZEN + timedelta(seconds=61.5)
    assert clock.reading() == (61.5, FROZEN.timestamp())


def test_manual_clock_advance_by_zero_is_allowed() -> None:
    clock = ManualClock(FROZEN)
    clock.advance(0)
    assert clock.monotonic() == 0.0


@pytest.mark.parametrize("amount", [-1, -0.001, timedelta(seconds=-1), math.nan, math.inf])
def test_manual_clock_refuses_to_go_back_or_to_infinity(amount: object) -> None:
    clock = ManualClock(FROZEN)
    with pytest.raises(ValueError, match="amount"):
        clock.advance(amount)  # type: ignore[arg-type]
    assert clock.now() == FROZEN


@pytest.mark.parametrize("amount", [True, "1", None])
def test_manual_clock_advance_wants_a_number(amount: object) -> None:
    with pytest.raises(TypeError, match="amount"):
        ManualClock(FROZEN).advance(amount)  # type: ignore[arg-type]


def test_manual_clock_rejects_a_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2030, 1, 1))


def test_manual_clock_rejects_a_start_that_is_not_a_datetime() -> None:
    with pytest.raises(TypeError, match="start"):
        ManualClock("2030-01-01")  # type: ignore[arg-type]


def test_manual_clock_repr_shows_its_time() -> None:
    assert "2030-06-01T12:00:00" in repr(ManualClock(FROZEN))


def test_reader_combines_a_custom_clock_without_reading() -> None:
    class TwoMethodClock:
        def monotonic(self) -> float:
            return 5.0

        def wall_offset(self) -> float:
            return 100.0

    assert reader(TwoMethodClock())() == (5.0, 100.0)


def test_manual_clock_is_exact_to_the_microsecond_in_the_year_2999() -> None:
    start = datetime(2999, 12, 31, 23, 59, 58, 123457, tzinfo=timezone.utc)
    clock = ManualClock(start)
    clock.advance(timedelta(microseconds=1))
    assert clock.now() == start + timedelta(microseconds=1)


def test_wall_offset_survives_pickling() -> None:
    import pickle

    offset = WallOffset(FROZEN, 12.5)
    copy = pickle.loads(pickle.dumps(offset))
    assert (copy, copy.base, copy.mono) == (offset, FROZEN, 12.5)


def test_system_clock_does_not_move_an_auto_ticking_freeze() -> None:
    clock = SystemClock()
    with freeze_time(FROZEN, auto_tick_seconds=5):
        first = clock.monotonic()
        assert clock.monotonic() == first  # the library's reads leave the test's time alone
        assert datetime.now(timezone.utc) == FROZEN  # the test's own first read
        assert clock.monotonic() == first + 5  # ...which ticked
