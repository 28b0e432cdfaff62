#!/usr/bin/env python3
"""Set up a virtual environment and run the demo or the tests: needs only CPython >= 3.10.

    python3 dev.py demo [DEMO OPTIONS]      # e.g. python3 dev.py demo --quiet
    python3 dev.py test [PYTEST OPTIONS]    # e.g. python3 dev.py test -k flask

The first run makes ``.venv`` (with the standard library's ``venv``) and installs the package
into it in editable mode (``pip install -e .`` for the demo, ``-e ".[test]"`` for the tests);
later runs install again only when ``pyproject.toml`` changed or more extras are needed. Nothing
is installed outside ``.venv``, so an externally managed system Python (Debian) is fine as long
as it has ``venv`` with ``ensurepip`` (Debian: the ``python3-venv`` package). On Windows, run
``py dev.py demo``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "dev-py-installed.json"
COMMANDS = {
    # command: (extras to install, what to run with the venv's python)
    "demo": ((), ["-m", "conversation_expiry", "demo"]),
    "test": (("test",), ["-m", "pytest"]),
}
USAGE = "usage: python3 dev.py {demo,test} [options for the demo or for pytest]"


def say(message: str) -> None:
    print(f"dev.py: {message}", file=sys.stderr, flush=True)


def venv_python(venv: Path = VENV) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def no_venv_message() -> str:
    version = "{}.{}".format(*sys.version_info[:2])
    return (
        f"this Python ({sys.executable}, {version}) cannot make a virtual environment with pip "
        "in it: its ensurepip module is missing.\n"
        f"  Debian/Ubuntu: sudo apt install python3-venv   (or python{version}-venv)\n"
        "  Fedora/RHEL: sudo dnf install python3-pip;  elsewhere: install CPython from "
        "python.org.\nThen run this command again."
    )


def make_venv() -> bool:
    """Create ``.venv`` with pip in it; False (after saying why) when this Python cannot."""
    import importlib.util

    if importlib.util.find_spec("ensurepip") is None:
        say(no_venv_message())
        return False
    import venv

    say(f"creating .venv with Python {sys.version.split()[0]} ({sys.executable})")
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    except (subprocess.CalledProcessError, OSError, SystemExit) as exc:  # Debian's venv may exit
        shutil.rmtree(VENV, ignore_errors=True)  # half made: the next run starts over
        say(f"{no_venv_message()}\n(creating it failed: {exc})")
        return False
    # The pip that ensurepip brings may predate editable installs from pyproject.toml (21.3).
    return pip("install", "--quiet", "--upgrade", "pip")


def pip(*args: str) -> bool:
    command = [str(venv_python()), "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(command, cwd=ROOT, check=False).returncode == 0


def wanted_stamp(extras: tuple[str, ...], stamp: Path = STAMP) -> dict[str, object] | None:
    """What the stamp must say after installing ``extras``; None when it already covers them."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    try:
        done = json.loads(stamp.read_text())
        installed = set(done["extras"]) if done["pyproject"] == digest else None
    except (OSError, ValueError, KeyError, TypeError):
        installed = None
    if installed is not None and installed >= set(extras):
        return None
    return {"pyproject": digest, "extras": sorted(set(extras) | (installed or set()))}


def ensure_installed(extras: tuple[str, ...]) -> bool:
    python = venv_python()
    broken = not python.exists() or subprocess.run([str(python), "-c", ""], check=False).returncode
    if broken and not make_venv():
        return False
    stamp = wanted_stamp(extras)
    if stamp is None:
        return True
    extras_list = stamp["extras"]
    assert isinstance(extras_list, list)
    target = f".[{','.join(extras_list)}]" if extras_list else "."
    say(f"installing -e {target} into .venv (again only when pyproject.toml changes)")
    STAMP.unlink(missing_ok=True)
    if not pip("install", "--quiet", "-e", target):
        say("pip install failed (see above); nothing else was changed outside .venv")
        return False
    STAMP.write_text(json.dumps(stamp))
    return True


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 10):  # noqa: UP036 - this file runs on whatever python3 is
        say(f"needs Python 3.10 or newer; this is {sys.version.split()[0]} ({sys.executable})")
        return 1
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    extras, run = COMMANDS[argv[0]]
    if not ensure_installed(extras):
        return 1
    return subprocess.run([str(venv_python()), *run, *argv[1:]], cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
