"""Whatever a callable raises, every conversation already claimed still gets its callables once.

``BaseException`` subclasses that are not ``Exception`` (``asyncio.CancelledError``,
``GeneratorExit``, custom ones) are contained like exceptions; ``SystemExit`` and
``KeyboardInterrupt`` reach a synchronous caller, but only after the whole batch ran.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from support import logging_raises

from conversation_expiry import ConversationExpiryManager, Departures, MemoryStore, Sweep
from conversation_expiry._shutdown import DRAIN_BATCH


class Custom(BaseException):
    pass


CONTAINED = [asyncio.CancelledError, GeneratorExit, Custom]
EXITS = [SystemExit, KeyboardInterrupt]


def manager_with(clock, on_expire) -> ConversationExpiryManager:
    return ConversationExpiryManager(10, 3600, clock=clock, on_expire=on_expire, autostart=False)


def raising_for(cid: str, exc: type[BaseException], calls: list[str]):
    def on_expire(state, reason) -> None:
        calls.append(state.id)
        if state.id == cid:
            raise exc()

    return on_expire


@pytest.mark.parametrize("exc", CONTAINED, ids=lambda e: e.__name__)
def test_a_contained_base_exception_does_not_lose_the_rest_of_the_batch(clock, exc, caplog):
    calls: list[str] = []
    m = manager_with(clock, raising_for("b", exc, calls))
    cleaned: list[str] = []
    for cid in "abc":
        m.register_conversation(cid)
        m.add_cleanup(cid, lambda cid=cid: cleaned.append(cid))
    clock.advance(11)
    with caplog.at_level(logging.ERROR, logger="conversation_expiry"):
        assert sorted(m.cleanup_expired()) == ["a", "b", "c"]
    assert sorted(calls) == ["a", "b", "c"] and sorted(cleaned) == ["a", "b", "c"]
    assert exc.__name__ in caplog.text and "'b'" in caplog.text


def test_logging_that_raises_while_reporting_a_fault_does_not_lose_the_rest_of_the_batch(clock):
    calls: list[str] = []
    cleaned: list[str] = []

    def on_expire(state, reason) -> None:
        calls.append(state.id)
        raise ValueError("broken on_expire")

    m = manager_with(clock, on_expire)
    for cid in "abc":
        m.register_conversation(cid)
    m.add_cleanup("b", lambda: cleaned.append("b"))  # the span path of the batch too
    clock.advance(11)
    with logging_raises("failed for conversation") as raising:
        assert sorted(m.cleanup_expired()) == ["a", "b", "c"]
    assert sorted(calls) == ["a", "b", "c"] and cleaned == ["b"]
    assert raising.left < 10**9  # logging did raise


@pytest.mark.parametrize("exc", CONTAINED, ids=lambda e: e.__name__)
def test_a_contained_base_exception_from_a_cleanup_does_not_stop_the_others(clock, exc):
    calls: list[str] = []
    m = manager_with(clock, lambda s, r: calls.append(s.id))
    m.register_conversation("a")
    m.add_cleanup("a", lambda: calls.append("first"))

    def bad() -> None:
        raise exc()

    m.add_cleanup("a", bad)
    assert m.end_conversation("a") is True
    assert calls == ["first", "a"]


@pytest.mark.parametrize("exc", EXITS, ids=lambda e: e.__name__)
def test_an_exit_from_on_expire_reaches_the_caller_after_the_whole_batch(clock, exc, caplog):
    calls: list[str] = []
    m = manager_with(clock, raising_for("a", exc, calls))
    for cid in "abc":
        m.register_conversation(cid)
    clock.advance(11)
    with caplog.at_level(logging.ERROR, logger="conversation_expiry"), pytest.raises(exc):
        m.cleanup_expired()
    assert sorted(calls) == ["a", "b", "c"]  # the others ran before it was raised again
    assert exc.__name__ in caplog.text  # never silent
    assert len(m) == 0 and m.cleanup_expired() == []  # and none of them runs twice


@pytest.mark.parametrize("exc", EXITS, ids=lambda e: e.__name__)
def test_an_exit_from_a_cleanup_of_end_conversation_still_runs_on_expire(clock, exc):
    calls: list[str] = []
    m = manager_with(clock, lambda s, r: calls.append(f"{s.id}:{r.value}"))
    m.register_conversation("a")

    def bad() -> None:
        raise exc()

    m.add_cleanup("a", bad)
    with pytest.raises(exc):
        m.end_conversation("a")
    assert calls == ["a:ended"] and "a" not in m


def test_stop_with_cleanup_remaining_runs_every_conversation_despite_an_exit(clock):
    calls: list[str] = []
    m = manager_with(clock, raising_for("a", KeyboardInterrupt, calls))
    for cid in "abc":
        m.register_conversation(cid)
    with pytest.raises(KeyboardInterrupt):
        m.stop(cleanup_remaining=True)
    assert sorted(calls) == ["a", "b", "c"] and len(m) == 0


@pytest.mark.parametrize("exc", EXITS, ids=lambda e: e.__name__)
def test_stop_with_cleanup_remaining_cleans_every_batch_before_an_exit_is_raised(clock, exc):
    # No later call would take the batches left: the thread has stopped.
    calls: list[str] = []
    m = manager_with(clock, raising_for("c0", exc, calls))
    ids = [f"c{i}" for i in range(2 * DRAIN_BATCH + 1)]  # three batches of the drain
    cleaned: list[str] = []
    for cid in ids:
        m.register_conversation(cid)
    m.add_cleanup(ids[-1], lambda: cleaned.append(ids[-1]))
    with pytest.raises(exc):
        m.stop(cleanup_remaining=True)
    assert sorted(calls) == sorted(ids) and cleaned == [ids[-1]] and len(m) == 0


def test_a_stop_iteration_from_on_expire_does_not_lose_the_rest_of_the_batch(clock, caplog):
    # map() takes a StopIteration raised by the function it calls for its own end.
    calls: list[str] = []
    m = manager_with(clock, raising_for("b", StopIteration, calls))
    for cid in "abcde":
        m.register_conversation(cid)
    clock.advance(11)
    with caplog.at_level(logging.ERROR, logger="conversation_expiry"):
        assert m.cleanup_expired() == list("abcde")
    assert calls == list("abcde")
    assert "StopIteration" in caplog.text and "'b'" in caplog.text


def test_a_stop_iteration_from_the_last_on_expire_of_a_batch_is_logged(clock, caplog):
    calls: list[str] = []
    m = manager_with(clock, raising_for("c", StopIteration, calls))
    for cid in "abc":
        m.register_conversation(cid)
    clock.advance(11)
    with caplog.at_level(logging.ERROR, logger="conversation_expiry"):
        m.cleanup_expired()
    assert calls == list("abc") and "'c'" in caplog.text


def test_after_a_stop_iteration_later_faults_are_logged_with_their_traceback(clock, caplog):
    calls: list[str] = []
    m = manager_with(clock, raising_for("a", StopIteration, calls))
    m.register_conversation("a")
    clock.advance(11)
    m.cleanup_expired()
    m.register_conversation("a")
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="conversation_expiry"):
        assert m.end_conversation("a")
    assert calls == ["a", "a"] and "Traceback" in caplog.text


@pytest.mark.parametrize("exc", EXITS, ids=lambda e: e.__name__)
def test_an_exit_from_on_expire_still_gives_the_claim_s_warnings(clock, exc):
    warned: list[str] = []
    m = ConversationExpiryManager(
        10, 3600, clock=clock, autostart=False, warning_before=5,
        on_expire=raising_for("a", exc, []), on_warning=lambda s: warned.append(s.id),
    )
    m.register_conversation("a")
    clock.advance(6)
    m.register_conversation("b")
    clock.advance(5)  # a past due, b in its warning window: one claim
    with pytest.raises(exc):
        m.cleanup_expired()
    assert warned == ["b"]
    m.stop()


@pytest.mark.parametrize("exc", EXITS, ids=lambda e: e.__name__)
def test_an_exit_from_on_expire_on_the_cleanup_thread_is_one_fault_not_a_failed_sweep(
    clock, exc, caplog
):
    import threading

    done = threading.Event()

    def on_expire(state, reason) -> None:
        if state.id == "bad":
            raise exc()
        done.set()

    with caplog.at_level(logging.ERROR, logger="conversation_expiry"):
        m = ConversationExpiryManager(10, 0.01, clock=clock, on_expire=on_expire)
        m.register_conversation("bad")
        clock.advance(11)
        m.register_conversation("good")
        clock.advance(11)
        assert done.wait(5)
        m.stop(timeout=5)
    assert caplog.text.count("Traceback") == 1
    assert "sweep failed" not in caplog.text


@pytest.mark.parametrize("exc", EXITS, ids=lambda e: e.__name__)
def test_an_exit_from_on_expire_on_the_cleanup_thread_does_not_end_its_sweep(clock, exc):
    import threading

    n = 1000  # several batches (the first holds 256)
    calls: list[str] = []
    all_done = threading.Event()

    def on_expire(state, reason) -> None:
        calls.append(state.id)
        if len(calls) == n:
            all_done.set()
        if state.id == "c0":
            raise exc()

    m = ConversationExpiryManager(10, 3600, clock=clock, on_expire=on_expire)
    for i in range(n):
        m.register_conversation(f"c{i}")
    clock.advance(11)
    m._worker.wake()  # one sweep, as at the end of an interval
    assert all_done.wait(10), f"{len(calls)} of {n} in that sweep"
    m.stop(timeout=5)


class KeepingStore(MemoryStore):
    """Keeps the departures of its claims, to look at them after the sweep."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed: list[Departures] = []

    def claim(self, limit: int) -> Sweep:
        sweep = super().claim(limit)
        self.claimed.append(sweep.departures)
        return sweep


@pytest.mark.parametrize(
    "exc", [None, StopIteration, *EXITS], ids=lambda e: getattr(e, "__name__", "none")
)
def test_the_store_s_list_of_states_is_left_as_it_was(clock, exc):
    # The loop that calls on_expire puts one item more at the end of the store's list, for the
    # time of the loop (a copy costs ~2 us a batch): it takes it off whatever on_expire raised.
    store = KeepingStore()
    on_expire = raising_for("b", exc, []) if exc is not None else (lambda state, reason: None)
    m = ConversationExpiryManager(
        10, 3600, clock=clock, on_expire=on_expire, autostart=False, store=store
    )
    for cid in "abc":
        m.register_conversation(cid)
    clock.advance(11)
    try:
        m.cleanup_expired()
    except BaseException as raised:  # (an exit reaches the synchronous caller)
        assert exc in EXITS and isinstance(raised, exc)
    states = [s for d in store.claimed for s in d.states]
    assert [s.id for s in states] == list("abc")
