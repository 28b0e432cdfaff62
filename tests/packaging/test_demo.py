"""`python -m conversation_expiry demo` runs the simulated workload and exits by itself."""

from __future__ import annotations

import io
import subprocess
import sys
from types import SimpleNamespace

import pytest

import conversation_expiry
from conversation_expiry import __main__ as entry
from conversation_expiry._demo import _parser, main, run_demo


def test_demo_runs_a_short_workload_and_reports() -> None:
    args = _parser().parse_args(
        ["demo", "--duration", "1.2", "--ttl", "0.3", "--conversations", "40",
         "--interval", "0.05", "--seed", "7"]
    )
    out = io.StringIO()
    assert run_demo(args, out) == 0
    text = out.getvalue()
    assert "summary" in text
    assert "expired " in text
    assert "(one per conversation, exactly once)" in text


def test_demo_quiet_prints_only_the_summary() -> None:
    args = _parser().parse_args(
        ["demo", "--duration", "0.8", "--ttl", "0.2", "--conversations", "10",
         "--interval", "0.05", "--seed", "1", "--quiet"]
    )
    out = io.StringIO()
    assert run_demo(args, out) == 0
    assert out.getvalue().lstrip().startswith("summary")


def test_demo_rejects_a_non_positive_ttl(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--ttl", "0"])
    assert exit_info.value.code == 2
    assert "must be positive" in capsys.readouterr().err


def test_module_help_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conversation_expiry", "demo", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0
    assert "--conversations" in result.stdout


def test_module_help_lists_every_subcommand() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conversation_expiry", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0
    for command in ("demo", "stats", "inspect", "sweep"):
        assert f"    {command} " in result.stdout


@pytest.mark.parametrize("command", ["stats", "inspect", "sweep"])
def test_operator_commands_go_to_the_operator_module(
    monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    calls: list[list[str]] = []
    stub = SimpleNamespace(main=lambda argv: calls.append(argv) or 3)
    monkeypatch.setitem(sys.modules, "conversation_expiry._operator", stub)
    monkeypatch.setattr(conversation_expiry, "_operator", stub, raising=False)
    assert entry.main([command, "--redis", "redis://cache", "--json"]) == 3
    assert calls == [[command, "--redis", "redis://cache", "--json"]]


def test_operator_command_without_its_module_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "conversation_expiry._operator", None)
    monkeypatch.delattr(conversation_expiry, "_operator", raising=False)
    assert entry.main(["stats", "--redis", "redis://cache"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("python -m conversation_expiry stats: ")


def test_entry_point_runs_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--duration", "0.3", "--ttl", "0.1", "--conversations", "5", "--quiet"]
    assert entry.main(argv) == 0
    assert "summary" in capsys.readouterr().out


def test_version_comes_from_the_installed_metadata() -> None:
    from importlib.metadata import version

    assert conversation_expiry.__version__ == version("conversation-expiry")
