"""The untrusted-id policy and settings both web integrations share (conversation_expiry._web)."""

from __future__ import annotations

import gc
import json
import logging
import re
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from conversation_expiry import ManualClock, MemoryStore
from conversation_expiry._web import DEFAULTS, Runtime
from conversation_expiry._web_ids import IdPolicy, InvalidConversationId, RejectLog, shown


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    made: list[Runtime] = []
    yield made
    for runtime in made:
        runtime.close(timeout=5)
    assert not any(t.name.startswith("web-ids-") for t in threading.enumerate())


def make_runtime(made: list[Runtime], **options: object) -> Runtime:
    opts = {"CLOCK": ManualClock(), "CLEANUP_INTERVAL": 3600, "THREAD_NAME": "web-ids-test"}
    runtime = Runtime({**opts, **options}, source="test")
    made.append(runtime)
    return runtime


@pytest.mark.parametrize("cid", ["a", "user-42", "org:team.chat_7", "A" * 128, "0", "x.y:z-_"])
def test_default_policy_accepts_plain_ids(cid: str) -> None:
    assert IdPolicy().check(cid) == cid


@pytest.mark.parametrize(
    "cid",
    [
        "",
        "A" * 129,
        "has space",
        "new\nline",
        "ok\n",  # "$" would let this through; fullmatch does not
        "carriage\rreturn",
        "tab\there",
        "quote'",
        "slash/",
        "\x1b[31mred",
        "caf\u00e9",
        "\u0661\u0662",  # Arabic-Indic digits: \d would take them, [0-9] does not
        "line\u2028sep",
        "a,b",  # two headers joined by the server
    ],
)
def test_default_policy_refuses_bad_ids(cid: str) -> None:
    with pytest.raises(InvalidConversationId):
        IdPolicy().check(cid)


def test_policy_refuses_a_non_str_id_as_a_type_error() -> None:
    with pytest.raises(TypeError, match="conversation_id"):
        IdPolicy().check(42)  # type: ignore[arg-type]


def test_refusal_reason_does_not_echo_the_id() -> None:
    with pytest.raises(InvalidConversationId) as info:
        IdPolicy().check("<script>")
    assert "<script>" not in info.value.reason


def test_policy_max_length_is_configurable() -> None:
    policy = IdPolicy(max_length=4)
    assert policy.check("abcd") == "abcd"
    with pytest.raises(InvalidConversationId, match="longer than 4"):
        policy.check("abcde")


def test_policy_pattern_is_configurable() -> None:
    policy = IdPolicy(pattern=r"[0-9a-f]{8}")
    assert policy.check("deadbeef") == "deadbeef"
    with pytest.raises(InvalidConversationId):
        policy.check("DEADBEEF")


def test_policy_takes_a_compiled_pattern() -> None:
    assert IdPolicy(pattern=re.compile(r"[a-z]+")).check("abc") == "abc"


@pytest.mark.parametrize("bad", [0, -1])
def test_policy_refuses_non_positive_max_length(bad: int) -> None:
    with pytest.raises(ValueError, match="ID_MAX_LENGTH"):
        IdPolicy(max_length=bad)


@pytest.mark.parametrize("bad", [True, 1.5, "128"])
def test_policy_refuses_non_int_max_length(bad: object) -> None:
    with pytest.raises(TypeError, match="ID_MAX_LENGTH"):
        IdPolicy(max_length=bad)  # type: ignore[arg-type]


def test_policy_refuses_a_broken_pattern() -> None:
    with pytest.raises(ValueError, match="ID_PATTERN"):
        IdPolicy(pattern="[a-z")


def test_policy_refuses_a_bytes_pattern() -> None:
    with pytest.raises(TypeError, match="ID_PATTERN"):
        IdPolicy(pattern=re.compile(rb"[a-z]+"))  # type: ignore[arg-type]


def test_shown_truncates_long_ids() -> None:
    assert shown("x" * 1000) == "x" * 64 + "..."
    assert shown("short") == "short"


def test_defaults_bound_capacity() -> None:
    assert DEFAULTS["MAX_CONVERSATIONS"] == 10_000


def test_runtime_refuses_unknown_settings(runtimes: list[Runtime]) -> None:
    with pytest.raises(ValueError, match="'TTl'"):
        make_runtime(runtimes, TTl=5)
    assert not any(t.name.startswith("web-ids-") for t in threading.enumerate())


def test_runtime_passes_options_to_the_manager(runtimes: list[Runtime]) -> None:
    runtime = make_runtime(runtimes, TTL=7, MAX_CONVERSATIONS=3, MAX_AGE=100)
    assert (runtime.manager.ttl, runtime.manager.max_conversations) == (7.0, 3)
    assert runtime.manager.max_age == 100.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1])
def test_runtime_refuses_an_exit_timeout_out_of_range(runtimes: list[Runtime], bad: float) -> None:
    with pytest.raises(ValueError, match="EXIT_TIMEOUT"):
        make_runtime(runtimes, EXIT_TIMEOUT=bad)


def test_runtime_refuses_an_exit_timeout_of_a_wrong_type(runtimes: list[Runtime]) -> None:
    with pytest.raises(TypeError, match="EXIT_TIMEOUT"):
        make_runtime(runtimes, EXIT_TIMEOUT="5")


def test_runtime_accept_without_id_touches_nothing(runtimes: list[Runtime]) -> None:
    runtime = make_runtime(runtimes)
    assert runtime.accept(None) == (None, False)
    assert len(runtime.manager) == 0


def test_runtime_accept_starts_then_touches(runtimes: list[Runtime]) -> None:
    runtime = make_runtime(runtimes)
    first, fresh = runtime.accept("c1")
    again, fresh_again = runtime.accept("c1")
    assert (fresh, fresh_again) == (True, False)
    assert first is not None and again is not None and again.created_at == first.created_at


def test_runtime_refused_id_changes_nothing(runtimes: list[Runtime]) -> None:
    runtime = make_runtime(runtimes)
    with pytest.raises(InvalidConversationId):
        runtime.accept("bad id")
    assert len(runtime.manager) == 0


def test_runtime_logs_refused_id_quoted(
    runtimes: list[Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    runtime = make_runtime(runtimes)
    with (
        caplog.at_level(logging.WARNING, "conversation_expiry"),
        pytest.raises(InvalidConversationId),
    ):
        runtime.accept("x\nERROR forged line")
    (message,) = [r.getMessage() for r in caplog.records]
    assert "'x\\nERROR forged line'" in message
    assert "\n" not in message


def test_runtime_close_is_idempotent(runtimes: list[Runtime]) -> None:
    runtime = make_runtime(runtimes)
    runtime.close(timeout=5)
    runtime.close(timeout=5)
    assert not runtime.manager.running


def test_closed_runtime_is_not_kept_alive_by_atexit() -> None:
    runtime = Runtime({"CLOCK": ManualClock(), "THREAD_NAME": "web-ids-gc"}, source="test")
    runtime.close(timeout=5)
    ref = weakref.ref(runtime)
    del runtime
    gc.collect()
    assert ref() is None


def test_policy_repr_shows_its_limits() -> None:
    assert repr(IdPolicy(8, "[a-z]+")) == "IdPolicy(max_length=8, pattern='[a-z]+')"


def test_runtime_refuses_an_empty_header_name(runtimes: list[Runtime]) -> None:
    with pytest.raises(TypeError, match="HEADER"):
        make_runtime(runtimes, HEADER="")


def test_runtime_refuses_a_non_str_activity_type(runtimes: list[Runtime]) -> None:
    with pytest.raises(TypeError, match="ACTIVITY_TYPE"):
        make_runtime(runtimes, ACTIVITY_TYPE=1)


def test_activity_type_decides_whether_a_request_extends(runtimes: list[Runtime]) -> None:
    clock = ManualClock()
    runtime = make_runtime(
        runtimes, CLOCK=clock, MEANINGFUL_ACTIVITIES=["message"], ACTIVITY_TYPE="ping"
    )
    first, _ = runtime.accept_id("c1")
    clock.advance(10)
    again, fresh = runtime.accept_id("c1")
    assert not fresh
    assert again.expires_at == first.expires_at


# -- refused ids are logged rate-limited ------------------------------------------------------


class FakeTime:
    """A monotonic reading the test moves by hand, for the reject log's windows."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rejections(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "conversation_expiry.web"]


@pytest.fixture
def reject_log(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[RejectLog, FakeTime]]:
    time = FakeTime()
    with caplog.at_level(logging.WARNING, "conversation_expiry"):
        yield RejectLog(time), time


def test_reject_log_writes_the_first_burst_in_full(
    reject_log: tuple[RejectLog, FakeTime], caplog: pytest.LogCaptureFixture
) -> None:
    log, _ = reject_log
    for n in range(20):
        log.report(f"bad {n}", "it has characters that are not allowed")
    lines = rejections(caplog)
    assert sum(line.startswith("rejected conversation id 'bad ") for line in lines) == 20
    assert "further rejections are counted" in lines[-1]


def test_reject_log_counts_what_it_does_not_write(
    reject_log: tuple[RejectLog, FakeTime], caplog: pytest.LogCaptureFixture
) -> None:
    log, time = reject_log
    for n in range(2000):
        log.report(f"bad {n}", "it is empty")
    assert len(rejections(caplog)) == 21
    time.now += 60
    log.report("late", "it is empty")
    assert rejections(caplog)[21:] == [
        "1980 more conversation ids were rejected (the last because it is empty); "
        "those were not logged",
        "rejected conversation id 'late' (4 characters): it is empty",
    ]


def test_reject_log_writes_one_a_minute_while_rejections_go_on(
    reject_log: tuple[RejectLog, FakeTime], caplog: pytest.LogCaptureFixture
) -> None:
    log, time = reject_log
    for n in range(25):
        log.report(f"bad {n}", "it is empty")
    time.now += 30
    log.report("midway", "it is empty")
    time.now += 30
    for n in range(5):
        log.report(f"next {n}", "it is empty")
    assert [line for line in rejections(caplog) if "'next" in line] == [
        "rejected conversation id 'next 0' (6 characters): it is empty"
    ]


def test_reject_log_gives_a_full_burst_after_a_quiet_minute(
    reject_log: tuple[RejectLog, FakeTime], caplog: pytest.LogCaptureFixture
) -> None:
    log, time = reject_log
    for n in range(25):
        log.report(f"bad {n}", "it is empty")
    time.now += 120
    for n in range(5):
        log.report(f"back {n}", "it is empty")
    assert sum("'back" in line for line in rejections(caplog)) == 5


def test_reject_log_flush_writes_the_pending_count(
    reject_log: tuple[RejectLog, FakeTime], caplog: pytest.LogCaptureFixture
) -> None:
    log, _ = reject_log
    for n in range(23):
        log.report(f"bad {n}", "it is empty")
    log.flush()
    log.flush()
    assert [line for line in rejections(caplog) if "more conversation ids" in line] == [
        "3 more conversation ids were rejected (the last because it is empty); "
        "those were not logged"
    ]


def test_runtime_close_writes_the_pending_rejection_count(
    runtimes: list[Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    runtime = make_runtime(runtimes)
    with caplog.at_level(logging.WARNING, "conversation_expiry"):
        for n in range(30):
            with pytest.raises(InvalidConversationId):
                runtime.accept_id(f"bad {n}")
        runtime.close(timeout=5)
    assert "10 more conversation ids were rejected" in rejections(caplog)[-1]


# -- the 400 body -----------------------------------------------------------------------------


def test_invalid_id_body_is_json_by_default(runtimes: list[Runtime]) -> None:
    body, content_type = make_runtime(runtimes).invalid_id_body("it is empty")
    assert (json.loads(body), content_type) == (
        {"error": "Invalid conversation id: it is empty."},
        "application/json",
    )


def test_invalid_id_body_may_be_plain_text(runtimes: list[Runtime]) -> None:
    runtime = make_runtime(runtimes, INVALID_ID_BODY="text")
    assert runtime.invalid_id_body("it is empty") == (
        "Invalid conversation id: it is empty.",
        "text/plain; charset=utf-8",
    )


def test_invalid_id_body_may_be_a_callable(runtimes: list[Runtime]) -> None:
    runtime = make_runtime(runtimes, INVALID_ID_BODY=lambda reason: (reason.upper(), "text/x"))
    assert runtime.invalid_id_body("it is empty") == ("IT IS EMPTY", "text/x")


@pytest.mark.parametrize("bad, error", [("html", ValueError), (400, TypeError), (dict, TypeError)])
def test_invalid_id_body_refuses_anything_else(
    runtimes: list[Runtime], bad: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="INVALID_ID_BODY"):
        make_runtime(runtimes, INVALID_ID_BODY=bad)


# -- the store setting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["redis://cache:6379/0", "rediss://user:pw@cache:6380", "unix:///run/redis.sock"]
)
def test_store_url_builds_a_redis_store(
    runtimes: list[Runtime], redis_calls: list[tuple[str, dict[str, Any]]], url: str
) -> None:
    make_runtime(runtimes, STORE=url)
    assert redis_calls == [(url, {"namespace": "conversation-expiry", "_defer": True})]


def test_store_url_uses_the_namespace_setting(
    runtimes: list[Runtime], redis_calls: list[tuple[str, dict[str, Any]]]
) -> None:
    make_runtime(runtimes, STORE="redis://cache", NAMESPACE="chat")
    assert redis_calls == [("redis://cache", {"namespace": "chat", "_defer": True})]


def test_store_url_gives_the_manager_the_store_it_built(
    runtimes: list[Runtime], redis_calls: list[tuple[str, dict[str, Any]]]
) -> None:
    runtime = make_runtime(runtimes, STORE="redis://cache")
    runtime.accept_id("c1")
    assert "c1" in runtime.manager


def test_store_object_is_passed_to_the_manager(runtimes: list[Runtime]) -> None:
    store, clock = MemoryStore(), ManualClock()
    make_runtime(runtimes, STORE=store, CLOCK=clock).accept_id("c1")
    assert store.count() == 1


def test_store_url_of_another_scheme_is_a_value_error(runtimes: list[Runtime]) -> None:
    with pytest.raises(ValueError, match="STORE must be a redis://") as info:
        make_runtime(runtimes, STORE="http://user:secret@cache")
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("bad", [42, object(), b"redis://cache"])
def test_store_of_a_wrong_type_is_a_type_error(runtimes: list[Runtime], bad: object) -> None:
    with pytest.raises(TypeError, match="STORE"):
        make_runtime(runtimes, STORE=bad)


@pytest.mark.parametrize("bad", ["", 7])
def test_namespace_must_be_a_non_empty_str(
    runtimes: list[Runtime], redis_calls: list[tuple[str, dict[str, Any]]], bad: object
) -> None:
    with pytest.raises(TypeError, match="NAMESPACE"):
        make_runtime(runtimes, STORE="redis://cache", NAMESPACE=bad)
    assert redis_calls == []


def test_store_url_without_the_redis_extra_says_what_to_install(
    runtimes: list[Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "conversation_expiry.redis", None)
    with pytest.raises(ImportError, match=r"conversation-expiry\[redis\]"):
        make_runtime(runtimes, STORE="redis://cache")


def test_setting_names_in_errors_follow_the_frameworks_spelling(runtimes: list[Runtime]) -> None:
    with pytest.raises(TypeError, match=r"CONVERSATION_EXPIRY_STORE must"):
        Runtime({"STORE": 42}, source="test", key="CONVERSATION_EXPIRY_{}")


class FakeCounter:
    """The perf counter the exit's cleanups are timed by; each cleanup moves it one second."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_exit_cleanups_start_only_within_exit_timeout(
    runtimes: list[Runtime], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from conversation_expiry import _manager as manager_module
    from conversation_expiry import _shutdown as shutdown_module

    counter = FakeCounter()
    for module in (manager_module, shutdown_module):
        monkeypatch.setattr(module, "PERF_COUNTER", (counter,))
    runtime = make_runtime(runtimes, EXIT_TIMEOUT=2.5)
    ran: list[str] = []
    for cid in "abcde":
        runtime.manager.register_conversation(cid)

        def slow(cid: str = cid) -> None:
            ran.append(cid)
            counter.now += 1.0  # a cleanup that takes a second

        runtime.manager.add_cleanup(cid, slow)
    with caplog.at_level(logging.WARNING, logger="conversation_expiry"):
        runtime._at_exit()
    assert ran == ["a", "b", "c"]  # started at 0, 1 and 2 s; not at 3
    assert len(runtime.manager) == 2
    assert any("2 conversations left" in r.getMessage() for r in caplog.records)
    assert runtime.manager.end_conversation("e") and ran[-1] == "e"  # its cleanups stayed


def test_exit_cleanups_all_run_within_exit_timeout(runtimes: list[Runtime]) -> None:
    runtime = make_runtime(runtimes, EXIT_TIMEOUT=60)
    ran: list[str] = []
    for n in range(600):  # more than a batch of the drain
        runtime.manager.register_conversation(f"c{n}")
    runtime.manager.add_cleanup("c599", lambda: ran.append("c599"))
    runtime._at_exit()
    assert ran == ["c599"] and len(runtime.manager) == 0


@pytest.mark.parametrize("flag", ["CLEANUP_AT_EXIT", "AUTOSTART"])
@pytest.mark.parametrize("bad", ["false", 0, None])
def test_runtime_refuses_a_flag_that_is_not_a_bool(
    runtimes: list[Runtime], flag: str, bad: object
) -> None:
    with pytest.raises(TypeError, match=flag):
        make_runtime(runtimes, **{flag: bad})


@pytest.mark.redis
def test_a_store_the_runtime_built_from_a_url_is_closed_with_it(
    runtimes: list[Runtime], redis_server: Any
) -> None:
    runtime = make_runtime(runtimes, STORE=redis_server.url, NAMESPACE="web-close")
    store = runtime.manager.store
    closed: list[bool] = []
    real_close = store.close

    def spy() -> None:
        closed.append(True)
        real_close()

    store.close = spy
    runtime.close(timeout=5)
    assert closed == [True]


def test_a_store_object_given_is_left_to_its_owner(runtimes: list[Runtime]) -> None:
    store = MemoryStore()
    closed: list[bool] = []
    store.close = lambda: closed.append(True)  # type: ignore[method-assign]
    runtime = make_runtime(runtimes, STORE=store)
    runtime.close(timeout=5)
    assert closed == []
