"""The operator commands ``python -m conversation_expiry stats | inspect | sweep`` on a real Redis.

Most tests run the real command in a subprocess (what an operator or cron runs); the argument
and error paths that need no server also call ``main()`` in this process, which is faster.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from redis_servers import RedisCluster, RedisServer

pytest.importorskip("redis")

from conversation_expiry import ConversationExpiryManager, ExpiryReason, ManualClock
from conversation_expiry import _operator as operator_module
from conversation_expiry._operator import main
from conversation_expiry._operator_text import rfc3339

RUN_TIMEOUT = 30.0  # seconds for one command in a subprocess; each takes well under one
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    return f"op-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def manager(url: str, namespace: str) -> Iterator[ConversationExpiryManager]:
    """A threadless manager on the namespace the commands look at (ttl 60 s)."""
    from conversation_expiry.redis import RedisStore

    store = RedisStore.from_url(url, namespace=namespace)
    m = ConversationExpiryManager(60, 3600, store=store, autostart=False)
    yield m
    m.stop()
    store.close()


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    """``python -m conversation_expiry ARGS`` in a subprocess, bounded by RUN_TIMEOUT."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "conversation_expiry", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=cwd,
        env=full_env,
    )


def store_args(url: str, namespace: str) -> list[str]:
    return ["--redis", url, "--namespace", namespace]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)  # a bounded poll


def past_due(manager: ConversationExpiryManager, *cids: str) -> None:
    """Register ``cids`` with a 50 ms ttl and wait until they are all past their deadline."""
    for cid in cids:
        manager.register_conversation(cid, ttl=0.05)
    wait_until(lambda: all(manager.is_expired(c) for c in cids))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_one_line_error(result: Any) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "error" in lines[0]


# -- arguments and help (no server) --------------------------------------------------------------


@pytest.mark.parametrize("command", ["stats", "inspect", "sweep"])
def test_each_command_has_help_naming_its_options(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m conversation_expiry {command}")
    for option in ("--redis URL", "--namespace NS", "--json"):
        assert option in out
    if command == "sweep":
        assert "--on-expire MODULE:FUNC" in out
    if command == "inspect":
        assert "CID" in out


def test_help_lists_the_three_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("stats", "inspect", "sweep"):
        assert re.search(rf"^\s+{command}\s", out, re.MULTILINE), out


def test_package_help_lists_the_operator_commands() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for command in ("demo", "stats", "inspect", "sweep"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), result.stdout


def test_help_runs_as_a_real_command() -> None:
    result = run("sweep", "--help")
    assert result.returncode == 0, result.stderr
    assert "--on-expire MODULE:FUNC" in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["stats"],
        ["stats", "--redis", "redis://localhost"],
        ["inspect", "--redis", "redis://localhost", "--namespace", "n"],
        ["purge", "--redis", "redis://localhost", "--namespace", "n"],
    ],
    ids=["no-options", "no-namespace", "no-cid", "unknown-command"],
)
def test_usage_errors_exit_with_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "error:" in err


@pytest.mark.parametrize(
    "spec",
    ["no_colon", ":func", "module:", "no_such_module_xyz:f", "json:no_such_function",
     "json:__doc__", "json.decoder.nope:f"],
)
def test_bad_hook_is_a_one_line_error_with_status_2(
    spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The hook is resolved before any connection: an unroutable URL proves it is not reached.
    code = main(["sweep", "--redis", "redis://192.0.2.1:1", "--namespace", "n",
                 "--on-expire", spec])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "--on-expire" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("body", "shown"),
    [("raise RuntimeError('boom\\nsecond line')\n", "boom second line"),
     ("import sys\nsys.exit(5)\n", "exits (5)")],
    ids=["raises", "exits"],
)
def test_hook_whose_import_fails_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    body: str, shown: str,
) -> None:
    (tmp_path / "broken_hook_mod.py").write_text(body)
    monkeypatch.chdir(tmp_path)
    code = main(["sweep", "--redis", "redis://192.0.2.1:1", "--namespace", "n",
                 "--on-expire", "broken_hook_mod:f"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and shown in err


@pytest.mark.parametrize("url", ["http://localhost:6379", "redis://localhost:notaport", "::"])
def test_bad_url_is_a_one_line_error_with_status_2(url: str) -> None:
    assert_one_line_error(run("stats", "--redis", url, "--namespace", "n"))


def test_unreachable_server_is_a_one_line_error_with_status_2() -> None:
    started = time.monotonic()
    result = run("stats", "--redis", f"redis://127.0.0.1:{free_port()}", "--namespace", "n")
    assert_one_line_error(result)
    assert "cannot reach Redis" in result.stderr
    assert time.monotonic() - started < RUN_TIMEOUT


def test_a_server_that_never_answers_is_a_one_line_error_with_status_2() -> None:
    # It takes the connection and says nothing (a Redis under SIGSTOP): the command makes one
    # try, not the retries within retries of redis-py's reconnects (34 s with three).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        result = run("stats", "--redis", f"redis://127.0.0.1:{port}", "--namespace", "n")
    assert_one_line_error(result)
    assert "cannot reach Redis" in result.stderr


@pytest.mark.parametrize(
    "url",
    [f"redis://user:s3cret@127.0.0.1:{free_port()}", "redis://user:s3cret@host:port",
     "redis://user:s3cret@[::1"],
    ids=["unreachable", "bad-port", "unparsable"],
)
def test_error_messages_hide_the_password(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--redis", url, "--namespace", "n"]) == 2
    err = capsys.readouterr().err
    assert "s3cret" not in err and "***" in err


def test_bad_namespace_is_a_one_line_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--redis", "redis://127.0.0.1:1", "--namespace", "{x}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "namespace" in err


def test_rfc3339_is_utc_with_microseconds_and_z() -> None:
    at = datetime(2026, 12, 1, 23, 5, 7, tzinfo=timezone.utc)
    assert rfc3339(at) == "2026-12-01T23:05:07.000000Z"
    assert rfc3339(at.replace(tzinfo=None)) == "2026-12-01T23:05:07.000000Z"  # naive is UTC


def test_missing_redis_py_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "conversation_expiry.redis", None)  # import fails
    assert main(["stats", "--redis", "redis://127.0.0.1:1", "--namespace", "n"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "conversation-expiry[redis]" in err


def test_interrupt_exits_with_status_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(operator_module, "_stats", interrupted)
    assert main(["stats", "--redis", "redis://127.0.0.1:1", "--namespace", "n"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_namespace_holding_foreign_data_is_a_one_line_error(
    redis_server: RedisServer, url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from conversation_expiry.redis._scripts import key_names

    client = redis_server.client()
    _prefix, keys = key_names(namespace)
    client.set(keys[0], "not a hash")  # another app wrote where the store keeps its records
    try:
        assert main(["inspect", "x", *store_args(url, namespace)]) == 2
    finally:
        client.delete(keys[0])
        client.close()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "WRONGTYPE" in err, err


# -- stats -------------------------------------------------------------------------------------


def test_stats_json_gives_live_count_and_deadlines_soonest_first(
    url: str, namespace: str, manager: ConversationExpiryManager
) -> None:
    states = [manager.register_conversation(f"c{i}", ttl=100 - i) for i in range(3)]
    result = run("stats", *store_args(url, namespace), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["live"] == 3
    expected = sorted(states, key=lambda s: s.expires_at)
    assert report["next_deadlines"] == [
        {"id": s.id, "expires_at": rfc3339(s.expires_at)} for s in expected
    ]


def test_json_reports_hold_any_id_as_json_gives_it_back(
    url: str, namespace: str, manager: ConversationExpiryManager
) -> None:
    # A lone surrogate is a valid id; no UTF-8 stream can write it raw, and the sweep is done
    # before it reports.
    odd, gone = "odd\ud800id", "gone\udfff"
    manager.register_conversation(odd)
    manager.register_conversation("noted", ttl=120, metadata={"note": "\udc80"})
    past_due(manager, gone)
    stats = run("stats", *store_args(url, namespace), "--json")
    assert stats.returncode == 0, stats.stderr
    assert [d["id"] for d in json.loads(stats.stdout)["next_deadlines"]] == [odd, "noted"]
    inspect = run("inspect", "noted", *store_args(url, namespace), "--json")
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["metadata"] == {"note": "\udc80"}
    sweep = run("sweep", *store_args(url, namespace), "--json")
    assert sweep.returncode == 0, sweep.stderr
    assert json.loads(sweep.stdout) == {"expired": [gone]}


def test_stats_json_includes_the_store_counters(
    url: str, namespace: str, manager: ConversationExpiryManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["stats", *store_args(url, namespace), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("live", "claimed", "dead", "late_acks"):
        assert type(report[key]) is int
    assert report["live"] == 0 and report["next_deadlines"] == []


def test_stats_shows_at_most_ten_deadlines(
    url: str, namespace: str, manager: ConversationExpiryManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for i in range(12):
        manager.register_conversation(f"c{i:02d}")
    assert main(["stats", *store_args(url, namespace), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["live"] == 12
    assert len(report["next_deadlines"]) == 10
    assert all(RFC3339_UTC.match(d["expires_at"]) for d in report["next_deadlines"])


def test_stats_text_shows_live_count_and_next_deadline(
    url: str, namespace: str, manager: ConversationExpiryManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = manager.register_conversation("only-one")
    assert main(["stats", *store_args(url, namespace)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^live\s+1$", out, re.MULTILINE), out
    assert re.search(r"^late_acks\s+0$", out, re.MULTILINE), out
    assert f"{rfc3339(state.expires_at)}  only-one" in out


def test_stats_text_of_an_empty_namespace_says_no_deadlines(
    url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", *store_args(url, namespace)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^live\s+0$", out, re.MULTILINE)
    assert out.rstrip().endswith("next deadlines: none")


def test_stats_runs_as_a_real_command(
    url: str, namespace: str, manager: ConversationExpiryManager
) -> None:
    manager.register_conversation("one")
    result = run("stats", *store_args(url, namespace))
    assert result.returncode == 0, result.stderr
    assert re.search(r"^live\s+1$", result.stdout, re.MULTILINE), result.stdout


def test_stats_does_not_count_past_due_conversations_as_live(
    url: str, namespace: str, manager: ConversationExpiryManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manager.register_conversation("stays")
    past_due(manager, "gone")
    assert main(["stats", *store_args(url, namespace), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["live"] == 1


# -- inspect -----------------------------------------------------------------------------------


def test_inspect_json_gives_every_state_field_and_metadata(
    url: str, namespace: str, manager: ConversationExpiryManager
) -> None:
    meta = {"user": "ann", "tags": ["a", "b"], "n": 3, "nested": {"x": None}}
    state = manager.register_conversation("conv-1", metadata=meta)
    result = run("inspect", "conv-1", *store_args(url, namespace), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "id": "conv-1",
        "created_at": rfc3339(state.created_at),
        "last_activity": rfc3339(state.last_activity),
        "expires_at": rfc3339(state.expires_at),
        "active": True,
        "warning_sent": False,
        "metadata": meta,
    }


def test_inspect_text_shows_the_times_and_metadata(
    url: str, namespace: str, manager: ConversationExpiryManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = manager.register_conversation("conv-1", metadata={"user": "ann", "tags": ["a"]})
    assert main(["inspect", "conv-1", *store_args(url, namespace)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^expires_at:\s+{re.escape(rfc3339(state.expires_at))}$", out, re.M)
    assert re.search(r'^metadata:\s+\{"tags": \["a"\], "user": "ann"\}$', out, re.M), out


def test_inspect_of_an_unknown_conversation_exits_1(
    url: str, namespace: str, manager: ConversationExpiryManager
) -> None:
    result = run("inspect", "nobody", *store_args(url, namespace), "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "not live" in result.stderr and "Traceback" not in result.stderr


def test_inspect_of_a_past_due_conversation_exits_1(
    url: str, namespace: str, manager: ConversationExpiryManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    past_due(manager, "late")
    assert main(["inspect", "late", *store_args(url, namespace)]) == 1


def test_inspect_takes_an_id_that_looks_like_an_option(
    url: str, namespace: str, manager: ConversationExpiryManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manager.register_conversation("--json")
    assert main(["inspect", *store_args(url, namespace), "--json", "--", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "--json"


def test_inspect_text_quotes_an_id_that_would_break_the_line(
    url: str, namespace: str, manager: ConversationExpiryManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manager.register_conversation("two\nlines")
    assert main(["inspect", "two\nlines", *store_args(url, namespace)]) == 0
    out = capsys.readouterr().out
    assert 'id:' in out and '"two\\nlines"' in out


def test_inspect_of_an_empty_id_is_an_error_with_status_2(
    url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", "", *store_args(url, namespace)]) == 2
    assert "conversation_id" in capsys.readouterr().err


def test_commands_work_through_any_node_of_a_cluster(
    redis_cluster: RedisCluster, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from conversation_expiry.redis import RedisStore

    client = redis_cluster.client()
    store = RedisStore(client, namespace=namespace)
    m = ConversationExpiryManager(60, 3600, store=store, autostart=False)
    try:
        m.register_conversation("live")
        past_due(m, "old")
        reports = []
        for node in redis_cluster.servers:  # the namespace's slot is on one of them
            assert main(["stats", *store_args(node.url, namespace), "--json"]) == 0
            reports.append(json.loads(capsys.readouterr().out)["live"])
        assert reports == [1] * len(redis_cluster.servers)
        assert main(["sweep", *store_args(redis_cluster.servers[-1].url, namespace),
                     "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"expired": ["old"]}
        assert main(["inspect", "live", *store_args(redis_cluster.servers[0].url, namespace),
                     "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["id"] == "live"
    finally:
        m.stop()
        store.close()
        client.close()


# -- sweep -------------------------------------------------------------------------------------

HOOK_MODULE = '''
import json, os

def record(state, reason):
    with open(os.environ["HOOK_LOG"], "a") as f:
        f.write(json.dumps([state.id, str(reason), state.active]) + "\\n")

def explode(state, reason):
    raise RuntimeError("hook failed on purpose")
'''


@pytest.fixture
def hook_dir(tmp_path: Path) -> Path:
    (tmp_path / "ops_hooks.py").write_text(HOOK_MODULE)
    return tmp_path


def test_sweep_runs_the_hook_once_for_each_past_due_conversation(
    url: str, namespace: str, manager: ConversationExpiryManager, hook_dir: Path
) -> None:
    manager.register_conversation("live")
    past_due(manager, "a", "b")
    log = hook_dir / "hook.log"
    result = run("sweep", *store_args(url, namespace), "--on-expire", "ops_hooks:record",
                 "--json", cwd=hook_dir, env={"HOOK_LOG": str(log)})
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)["expired"]) == ["a", "b"]
    calls = sorted(json.loads(line) for line in log.read_text().splitlines())
    assert calls == [["a", "expired", False], ["b", "expired", False]]


def test_sweep_leaves_live_conversations_and_forgets_the_swept(
    url: str, namespace: str, manager: ConversationExpiryManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live = manager.register_conversation("live")
    past_due(manager, "old")
    assert main(["sweep", *store_args(url, namespace), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"expired": ["old"]}
    assert manager.get("live") == live
    assert manager.cleanup_expired() == []  # nothing left to claim, nothing claimed twice
    assert main(["stats", *store_args(url, namespace), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["live"], report["claimed"]) == (1, 0)


def test_sweep_with_nothing_due_reports_nothing(
    url: str, namespace: str, manager: ConversationExpiryManager
) -> None:
    manager.register_conversation("live")
    result = run("sweep", *store_args(url, namespace))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "expired 0 conversations"


def test_sweep_whose_hook_raises_logs_it_and_counts_it_as_done(
    url: str, namespace: str, manager: ConversationExpiryManager, hook_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    past_due(manager, "doomed")
    result = run("sweep", *store_args(url, namespace), "--on-expire", "ops_hooks:explode",
                 "--json", cwd=hook_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"expired": ["doomed"]}
    assert "doomed" in result.stderr and "hook failed on purpose" in result.stderr
    assert main(["stats", *store_args(url, namespace), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["live"], report["claimed"]) == (0, 0)


def test_hook_error_shows_on_stderr_when_logging_is_not_configured(
    url: str, namespace: str, manager: ConversationExpiryManager,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    module = type(sys)("inproc_failing_hooks")

    def explode(state: object, reason: object) -> None:
        raise RuntimeError("hook failed on purpose")

    module.explode = explode  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "inproc_failing_hooks", module)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in a plain `python -m`
    past_due(manager, "doomed")
    code = main(["sweep", *store_args(url, namespace), "--on-expire",
                 "inproc_failing_hooks:explode"])
    err = capsys.readouterr().err
    assert code == 0
    assert "ERROR" in err and "doomed" in err and "hook failed on purpose" in err
    assert logging.getLogger("conversation_expiry").handlers == []  # removed again


def test_sweep_hook_gets_the_reason_expired(
    url: str, namespace: str, manager: ConversationExpiryManager,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[tuple[str, ExpiryReason]] = []
    module = type(sys)("inproc_hooks")
    module.hook = lambda state, reason: seen.append((state.id, reason))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "inproc_hooks", module)
    past_due(manager, "x")
    assert main(["sweep", *store_args(url, namespace), "--on-expire", "inproc_hooks:hook"]) == 0
    assert seen == [("x", ExpiryReason.EXPIRED)]
    assert capsys.readouterr().out.splitlines() == ["expired 1 conversation", "  x"]


def test_a_namespace_driven_by_a_manual_clock_is_a_one_line_error(
    url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from conversation_expiry import ManualClock
    from conversation_expiry.redis import RedisStore

    store = RedisStore.from_url(url, namespace=namespace)
    m = ConversationExpiryManager(60, 3600, store=store, clock=ManualClock(), autostart=False)
    try:
        m.register_conversation("test-only")
        assert main(["sweep", *store_args(url, namespace)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and repr(namespace) in err and "ManualClock" in err
    finally:
        m.stop()
        store.close()



@pytest.fixture
def driven(url: str, namespace: str) -> Iterator[tuple[ConversationExpiryManager, ManualClock]]:
    """A threadless manager whose ManualClock drives the namespace's time (a test's)."""
    from conversation_expiry.redis import RedisStore

    clock = ManualClock()
    store = RedisStore.from_url(url, namespace=namespace)
    m = ConversationExpiryManager(60, 3600, store=store, clock=clock, autostart=False)
    yield m, clock
    m.stop()


def test_stats_and_inspect_read_a_namespace_a_manual_clock_drives_at_its_time(
    url: str, namespace: str, driven: tuple[ConversationExpiryManager, ManualClock],
    capsys: pytest.CaptureFixture[str],
) -> None:
    manager, clock = driven
    kept = manager.register_conversation("kept")
    manager.register_conversation("gone")
    clock.advance(30)
    manager.update_activity("kept")
    clock.advance(31)
    manager.update_activity("kept")  # the namespace's time: "gone" is past due, "kept" is not
    assert main(["stats", *store_args(url, namespace), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["live"] == 1 and [d["id"] for d in report["next_deadlines"]] == ["kept"]
    assert main(["inspect", "kept", *store_args(url, namespace), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["created_at"] == rfc3339(kept.created_at)
    assert main(["inspect", "gone", *store_args(url, namespace)]) == 1


def test_sweep_of_a_namespace_a_manual_clock_drives_is_a_one_line_error(
    url: str, namespace: str, driven: tuple[ConversationExpiryManager, ManualClock],
    capsys: pytest.CaptureFixture[str],
) -> None:
    manager, _clock = driven
    manager.register_conversation("c")
    assert main(["sweep", *store_args(url, namespace)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "driven" in err
    assert "c" in manager
