"""``dev.py``, the README's two commands: its refusals and its decision to install again.

The full path (make ``.venv``, install, run) is what CI runs first, from a fresh clone; here are
the parts a fresh clone cannot show: a Python that is too old or cannot make a virtual
environment, and an install that is skipped only while it is still current.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_bootstrap", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_copy(tmp_path: Path, prelude: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a copy of dev.py in ``tmp_path`` after ``prelude`` (which can break the interpreter)."""
    shutil.copy(ROOT / "dev.py", tmp_path / "dev.py")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    code = (
        f"import runpy, sys\n{prelude}\n"
        f"sys.argv = ['dev.py', *{list(args)!r}]\n"
        "runpy.run_path('dev.py', run_name='__main__')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        check=False,
    )


def test_without_ensurepip_it_says_what_to_install(tmp_path: Path) -> None:
    done = run_copy(tmp_path, "sys.modules['ensurepip'] = None", "demo")
    assert done.returncode == 1
    assert "python3-venv" in done.stderr
    assert not (tmp_path / ".venv").exists()


def test_on_an_old_python_it_says_which_is_needed(tmp_path: Path) -> None:
    done = run_copy(tmp_path, "sys.version_info = (3, 9, 18, 'final', 0)", "test")
    assert done.returncode == 1
    assert "needs Python 3.10 or newer" in done.stderr


def test_an_unknown_command_shows_the_usage(tmp_path: Path) -> None:
    done = run_copy(tmp_path, "", "tests")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python3 dev.py {demo,test}")


def test_install_is_needed_without_a_stamp(tmp_path: Path) -> None:
    dev = load_dev()
    assert dev.wanted_stamp(("test",), tmp_path / "missing.json")["extras"] == ["test"]


def test_install_is_skipped_while_the_stamp_covers_the_extras(tmp_path: Path) -> None:
    dev = load_dev()
    stamp = tmp_path / "stamp.json"
    stamp.write_text(json.dumps(dev.wanted_stamp(("test",), stamp)))
    assert dev.wanted_stamp(("test",), stamp) is None
    assert dev.wanted_stamp((), stamp) is None


def test_install_adds_the_extras_the_stamp_lacks(tmp_path: Path) -> None:
    dev = load_dev()
    stamp = tmp_path / "stamp.json"
    stamp.write_text(json.dumps(dev.wanted_stamp((), stamp)))
    assert dev.wanted_stamp(("test",), stamp)["extras"] == ["test"]


def test_install_is_needed_again_when_pyproject_changed(tmp_path: Path) -> None:
    dev = load_dev()
    stamp = tmp_path / "stamp.json"
    stamp.write_text(json.dumps({"pyproject": "an older digest", "extras": ["test"]}))
    assert dev.wanted_stamp(("test",), stamp) is not None


@pytest.mark.parametrize("junk", ["", "not json", "[]", '{"extras": ["test"]}'])
def test_an_unreadable_stamp_means_install(tmp_path: Path, junk: str) -> None:
    stamp = tmp_path / "stamp.json"
    stamp.write_text(junk)
    assert load_dev().wanted_stamp(("test",), stamp) is not None
