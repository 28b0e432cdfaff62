"""`python -m conversation_expiry demo` runs the simulated workload and exits by itself."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

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


def test_demo_quiet_hides_each_cleanup() -> None:
    args = _parser().parse_args(
        ["demo", "--duration", "0.8", "--ttl", "0.2", "--conversations", "10",
         "--interval", "0.05", "--seed", "1", "--quiet"]
    )
    out = io.StringIO()
    assert run_demo(args, out) == 0
    assert "cleanup lag " not in out.getvalue().split("summary")[0]


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
