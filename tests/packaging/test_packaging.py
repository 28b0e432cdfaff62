"""The distributions: built with ``python -m build``, checked, and the wheel installed for real.

The wheel goes into a fresh virtual environment (not editable, dependencies from the package
index) and runs the demo from a directory outside the clone, so it is the installed package that
runs, not the source tree. Every step has a time bound.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
import venv
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSION = version("conversation-expiry")  # of this editable install: pyproject.toml's
BUILD_WITHIN = 300  # seconds: two isolated build environments, setuptools from the index
INSTALL_WITHIN = 300

pytestmark = pytest.mark.timeout(BUILD_WITHIN + 2 * INSTALL_WITHIN)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The sdist and the wheel built from it (``build``'s default: the wheel from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=BUILD_WITHIN,
    )
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    yield sdist, wheel


def sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def wheel_metadata(wheel: Path) -> tuple[set[str], object]:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        return names, Parser().parsestr(archive.read(meta).decode())


@pytest.mark.parametrize(
    "path",
    ["tests/conftest.py", "tests/support.py", "tests/packaging/test_readme.py",
     "examples/flask_app.py",
     "examples/django_project/manage.py", "benchmarks/run.py", "LICENSE", "CHANGELOG.md",
     "README.md", "dev.py", "conversation_expiry/py.typed", "tests/redis_servers.py",
     "conversation_expiry/redis/lua/touch.lua"],
)
def test_sdist_ships_what_its_tests_need(dists: tuple[Path, Path], path: str) -> None:
    assert path in sdist_names(dists[0])


def test_wheel_holds_the_package_and_its_license_only(dists: tuple[Path, Path]) -> None:
    names, _ = wheel_metadata(dists[1])
    assert "conversation_expiry/py.typed" in names
    scripts = [n for n in names if n.startswith("conversation_expiry/redis/lua/")]
    assert "conversation_expiry/redis/lua/touch.lua" in scripts and len(scripts) >= 10
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert {n.split("/")[0] for n in names} <= {
        "conversation_expiry", f"conversation_expiry-{VERSION}.dist-info"
    }


@pytest.mark.parametrize(
    "classifier",
    ["Typing :: Typed", "Framework :: Flask", "Framework :: Django",
     "Programming Language :: Python :: 3.10", "Programming Language :: Python :: 3.13"],
)
def test_wheel_metadata_has_the_classifier(dists: tuple[Path, Path], classifier: str) -> None:
    _, meta = wheel_metadata(dists[1])
    assert classifier in meta.get_all("Classifier")  # type: ignore[attr-defined]


def test_wheel_metadata_has_license_urls_and_keywords(dists: tuple[Path, Path]) -> None:
    _, meta = wheel_metadata(dists[1])
    assert meta["License-Expression"] == "MIT"  # type: ignore[index]
    assert len(meta.get_all("Project-URL")) >= 3  # type: ignore[attr-defined]
    assert "conversation" in meta["Keywords"]  # type: ignore[index]


@pytest.mark.skipif(importlib.util.find_spec("ensurepip") is None, reason="needs ensurepip")
def test_built_wheel_installs_into_a_fresh_venv_and_runs_the_demo(
    dists: tuple[Path, Path], tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         str(dists[1])],
        check=True, timeout=INSTALL_WITHIN, cwd=tmp_path,
    )
    demo = subprocess.run(
        [str(python), "-m", "conversation_expiry", "demo", "--duration", "1.5", "--ttl", "0.3",
         "--conversations", "30", "--interval", "0.05", "--quiet"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )
    assert demo.returncode == 0, demo.stderr
    assert "(one per conversation, exactly once)" in demo.stdout
    where = subprocess.run(
        [str(python), "-c", "import conversation_expiry as c; print(c.__version__, c.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=True,
    )
    version, location = where.stdout.split()
    assert version == VERSION
    assert Path(location).is_relative_to(env_dir)
