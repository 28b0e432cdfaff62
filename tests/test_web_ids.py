"""The untrusted-id policy and settings both web integrations share (conversation_expiry._web)."""

from __future__ import annotations

import gc
import logging
import re
import threading
import weakref
from collections.abc import Iterator

import pytest

from conversation_expiry import ManualClock
from conversation_expiry._web import DEFAULTS, IdPolicy, InvalidConversationId, Runtime, shown


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
