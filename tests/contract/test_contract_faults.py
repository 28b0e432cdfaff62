"""Contract tests (API.md guarantee 3 and "Faults"): a raising callable is contained and logged.

It is logged at ERROR on the ``conversation_expiry`` logger with the traceback and the
conversation id in the message; the remaining callables run; no exception reaches the caller.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from support import TTL, WAIT

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationState,
    ExpiryReason,
    ManualClock,
)

LOGGER = "conversation_expiry"

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom("cleanup failed")


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


def fault_records(caplog: pytest.LogCaptureFixture, cid: str) -> list[logging.LogRecord]:
    """ERROR records of the library's logger that carry a traceback and name ``cid``."""
    return [
        r
        for r in caplog.records
        if (r.name == LOGGER or r.name.startswith(LOGGER + "."))
        and r.levelno == logging.ERROR
        and r.exc_info is not None
        and r.exc_info[2] is not None
        and cid in r.getMessage()
    ]


def assert_logged(caplog: pytest.LogCaptureFixture, cid: str, exc_type: type) -> None:
    records = fault_records(caplog, cid)
    assert records, f"no ERROR record with traceback naming {cid!r}: {caplog.records}"
    assert any(r.exc_info and r.exc_info[0] is exc_type for r in records)


# ---------------------------------------------------------------------------------------------
# cleanup callables
# ---------------------------------------------------------------------------------------------


def _end(m: ConversationExpiryManager, clock: ManualClock, cid: str) -> None:
    assert m.end_conversation(cid) is True


def _sweep(m: ConversationExpiryManager, clock: ManualClock, cid: str) -> None:
    clock.advance(TTL + 1)
    assert m.cleanup_expired() == [cid]


def _stop(m: ConversationExpiryManager, clock: ManualClock, cid: str) -> None:
    m.stop(timeout=WAIT, cleanup_remaining=True)


def _register_over_expired(m: ConversationExpiryManager, clock: ManualClock, cid: str) -> None:
    clock.advance(TTL + 1)
    m.register_conversation(cid)


LEAVE = {"end": _end, "sweep": _sweep, "stop": _stop, "register": _register_over_expired}


@pytest.mark.parametrize("path", list(LEAVE))
def test_raising_cleanup_is_logged_and_the_rest_still_run(
    make_manager, clock, log, path: str
) -> None:
    ran: list[str] = []
    reasons: list[ExpiryReason] = []
    m = make_manager(clock=clock, on_expire=lambda s, r: reasons.append(r), autostart=False)
    cid = "conv-cleanup-41"
    m.register_conversation(cid)
    m.add_cleanup(cid, lambda: ran.append("first attached"))
    m.add_cleanup(cid, boom)
    m.add_cleanup(cid, lambda: ran.append("last attached"))
    LEAVE[path](m, clock, cid)  # no exception reaches the caller
    assert ran == ["last attached", "first attached"]
    assert len(reasons) == 1
    assert_logged(log, cid, Boom)


@pytest.mark.parametrize("path", list(LEAVE))
def test_raising_on_expire_is_logged_and_cleanups_still_run(
    make_manager, clock, log, path: str
) -> None:
    ran: list[str] = []

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        raise ValueError(f"on_expire failed for {state.id}")

    m = make_manager(clock=clock, on_expire=on_expire, autostart=False)
    cid = "conv-on-expire-7"
    m.register_conversation(cid)
    m.add_cleanup(cid, lambda: ran.append("cleanup"))
    LEAVE[path](m, clock, cid)
    assert ran == ["cleanup"]
    assert_logged(log, cid, ValueError)


def test_a_fault_in_one_conversation_does_not_stop_the_sweep_of_others(
    make_manager, clock, log
) -> None:
    ran: list[str] = []
    m = make_manager(clock=clock, autostart=False)
    for cid in ("x1", "x2", "x3"):
        m.register_conversation(cid)
        m.add_cleanup(cid, lambda cid=cid: ran.append(cid))
    m.add_cleanup("x2", boom)
    clock.advance(TTL + 1)
    assert sorted(m.cleanup_expired()) == ["x1", "x2", "x3"]
    assert sorted(ran) == ["x1", "x2", "x3"]
    assert len(m) == 0
    assert_logged(log, "x2", Boom)


def test_on_expire_raising_for_one_conversation_is_still_called_for_the_rest(
    make_manager, clock, log
) -> None:
    seen: list[str] = []

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        seen.append(state.id)
        if state.id in ("y2", "y4"):
            raise ValueError(f"on_expire failed for {state.id}")

    m = make_manager(clock=clock, on_expire=on_expire, autostart=False)
    ids = [f"y{i}" for i in range(1, 6)]
    for cid in ids:  # no cleanups: on_expire alone, the loop the sweep runs in C
        m.register_conversation(cid)
    clock.advance(TTL + 1)
    assert sorted(m.cleanup_expired()) == ids
    assert sorted(seen) == ids
    assert_logged(log, "y2", ValueError)
    assert_logged(log, "y4", ValueError)


def test_fault_on_the_background_thread_is_logged_with_the_id(make_manager, clock, log) -> None:
    done = threading.Event()
    cid = "conv-bg-99"

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        done.set()
        raise KeyError("oops")

    m = make_manager(TTL, 0.01, clock=clock, on_expire=on_expire)
    m.register_conversation(cid)
    clock.advance(TTL + 1)
    assert done.wait(WAIT)
    deadline = time.monotonic() + WAIT  # the record is written just after on_expire returns
    while not fault_records(log, cid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert_logged(log, cid, KeyError)


def test_no_exception_from_a_callable_reaches_any_caller(make_manager, clock, log) -> None:
    class Custom(RuntimeError):
        pass

    def raise_custom() -> None:
        raise Custom("x")

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        raise Custom("y")

    m = make_manager(clock=clock, autostart=False, on_expire=on_expire)
    for cid in ("a", "b", "c"):
        m.register_conversation(cid)
        m.add_cleanup(cid, raise_custom)
    assert m.end_conversation("a") is True
    clock.advance(TTL + 1)
    m.register_conversation("c")  # re-register over an expired one runs its callables
    assert m.cleanup_expired() == ["b"]
    m.stop(cleanup_remaining=True)
    for cid in ("a", "b", "c"):
        assert_logged(log, cid, Custom)


def test_a_burst_of_faults_is_logged_in_full_and_the_rest_is_summarised(
    make_manager, clock, log
) -> None:
    # Documented policy (README, "What it guarantees", 3): per callable and exception type the
    # first 20 faults a minute are logged in full with their id; the rest are counted, and the
    # count (with the last id) is logged, at the latest by stop(). Nothing is lost silently.
    m = make_manager(clock=clock, autostart=False)
    ids = [f"conv-{i:03d}" for i in range(60)]
    for cid in ids:
        m.register_conversation(cid)
        m.add_cleanup(cid, boom)
    clock.advance(TTL + 1)
    assert sorted(m.cleanup_expired()) == ids
    m.stop()
    logged = [cid for cid in ids if fault_records(log, cid)]
    assert len(logged) >= 20
    summaries = [r.getMessage() for r in log.records if "more times" in r.getMessage()]
    assert any(f"{60 - len(logged)} more times" in text for text in summaries)
