"""Every Python block of README.md runs, on its own, as a test (found by Sybil's Markdown lexer).

Each ```python block runs in a fresh namespace, as if pasted alone into a new interpreter: it
must import what it uses. Managers and Flask apps it leaves running are stopped afterwards.

Markers, an HTML comment alone on the line just above the block's opening fence:

    <!-- readme-test: skip REASON -->    never run this block (say why; keep it rare)
    <!-- readme-test: needs-redis -->    run it against a Redis server: redis-server is started
                                         on a free loopback port and its URL is in the REDIS_URL
                                         environment variable, so write the block to connect to
                                         os.environ.get("REDIS_URL", "redis://localhost:6379/0").
                                         Without redis-server on PATH the block is skipped, or
                                         fails when CONVERSATION_EXPIRY_REQUIRE_REDIS=1 (CI).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser

from conversation_expiry import ConversationExpiryManager

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*(?P<what>skip|needs-redis)(?P<why>[^>]*?)\s*-->\s*$")


def run_alone(example: Example) -> None:
    """Run one block in a namespace of its own; stop what it left running."""
    # Padding puts the block's lines at their README line numbers in a traceback.
    source = "\n" * example.line + example.parsed
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    try:
        exec(compile(source, str(README), "exec"), namespace)
    finally:
        for value in namespace.values():
            if isinstance(value, ConversationExpiryManager):
                value.stop(timeout=5)
            elif isinstance(value, Flask) and "conversation_expiry" in value.extensions:
                value.extensions["conversation_expiry"].close(timeout=5)


def python_blocks() -> list[Example]:
    document = Sybil([CodeBlockParser("python", evaluator=run_alone)]).parse(README)
    return list(document.examples())


def marker_of(example: Example) -> tuple[str, str] | None:
    """The readme-test marker on the line above the block, as (what, why)."""
    text = example.document.text[: example.region.start].rstrip("\n")
    found = MARKER.search(text.rsplit("\n", 1)[-1])
    return None if found is None else (found["what"], found["why"].strip())


BLOCKS = python_blocks()


def test_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize(
    "comment, expected",
    [
        ("<!-- readme-test: needs-redis -->", ("needs-redis", "")),
        ("<!-- readme-test: skip prints a secret -->", ("skip", "prints a secret")),
        ("<!-- a comment of the reader's -->", None),
    ],
)
def test_marker_above_a_block_is_found(
    tmp_path: Path, comment: str, expected: tuple[str, str] | None
) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"Text.\n\n{comment}\n```python\nx = 1\n```\n")
    (example,) = Sybil([CodeBlockParser("python", evaluator=run_alone)]).parse(doc).examples()
    assert marker_of(example) == expected


@pytest.mark.parametrize("example", BLOCKS, ids=[f"README.md:{e.line}" for e in BLOCKS])
def test_readme_block_runs_on_its_own(
    example: Example, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = marker_of(example)
    if marker is not None and marker[0] == "skip":
        pytest.skip(marker[1] or "marked readme-test: skip")
    if marker is not None and marker[0] == "needs-redis":
        # The session's server (tests/redis_servers.py): skips without redis-server, or fails
        # when CONVERSATION_EXPIRY_REQUIRE_REDIS=1.
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_server").url)
    example.evaluate()
