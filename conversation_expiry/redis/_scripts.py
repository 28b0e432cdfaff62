"""The Lua scripts (package data under ``lua/``) and the keys of one namespace.

Redis has no include, so a script is sent with the shared parts (``lib_<part>.lua``) it names
on its ``-- needs:`` lines, each part at the first line that needs it, after the parts it
needs itself, ``lib_keys`` first. A script carries only what it uses, and may define the
functions of a rare case only where that case begins: every function a script defines is
built again on every call (about 0.15 us each, on a touch of 5-10 us of server time).
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

__all__ = ["HOT", "NAMES", "Script", "Scripts", "check_namespace", "key_names", "parts", "source"]

NAMES = (
    "start", "touch", "read", "count", "hold", "end", "claim", "ack", "renew", "gone",
    "events", "stats", "deadlines",
)  # fmt: skip
# The request path's scripts: given only the first three keys (touch: two), and no owner or
# lease arguments.
HOT = ("touch", "read", "count", "hold")

# Key suffixes in the order the scripts read KEYS (see lib_keys.lua for what each holds).
_SUFFIXES = ("c", "w", "d", "m", "k", "l", "x", "s", "t")
_NEEDS = "-- needs:"


@cache
def _text(name: str) -> str:
    return resources.files(__package__).joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")


def _expand(name: str, included: set[str]) -> str:
    """The text of ``name`` with the parts it needs (those not ``included`` yet) inserted."""
    included.add(name)
    out = []
    for line in _text(name).splitlines(keepends=True):
        out.append(line)
        if line.startswith(_NEEDS):
            for need in line.removeprefix(_NEEDS).split(","):
                part = f"lib_{need.strip()}"
                if part not in included:
                    out.append(_expand(part, included))
    return "".join(out)


def parts(*names: str) -> str:
    """The text of the parts ``names`` (``"clock"`` for ``lib_clock.lua``), ready to run."""
    included: set[str] = set()
    return "".join(_expand(p, included) for p in ["lib_keys", *(f"lib_{n}" for n in names)])


@cache
def source(name: str) -> str:
    """The full text of one script."""
    included: set[str] = set()
    return _expand("lib_keys", included) + "\n" + _expand(name, included)


def check_namespace(namespace: object) -> str:
    """``namespace`` if it can be a hash tag (a non-empty str without braces), else raise."""
    if not isinstance(namespace, str):
        raise TypeError(
            f"namespace must be a str, got {type(namespace).__name__}: {namespace!r:.80}"
        )
    if not namespace or "{" in namespace or "}" in namespace:
        raise ValueError(
            f"namespace must be a non-empty str without '{{' or '}}', got {namespace!r:.80}"
        )
    try:
        namespace.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"namespace must be encodable as UTF-8, got {namespace!r:.80}") from None
    return namespace


def key_names(namespace: str) -> tuple[bytes, list[bytes]]:
    """The prefix and the keys of ``namespace``.

    The namespace is the hash tag (it has no braces), so a Cluster keeps every key of it in
    one slot; conversation ids are never part of a key name, so no id can reach another key.
    """
    prefix = f"ce:{{{namespace}}}:".encode()
    return prefix, [prefix + s.encode() for s in _SUFFIXES]


class Script:
    """One script on one client: ``EVALSHA``, or ``EVAL`` when the server lacks it (its script
    cache is emptied by a restart or failover), which also caches it there.

    ``EVAL`` goes where the keys are, as ``EVALSHA`` does; ``SCRIPT LOAD`` would go to every
    primary of a Cluster, and fail while any of them is down or stalled.

    Sent with ``execute_command`` rather than redis-py's ``Script``, which costs about 8 us a
    call on top (an import, a pipeline check, tuple copies): about half of what a touch may
    cost over a bare ``EVALSHA`` (issue 10: 1.3x, some 15 us).
    """

    __slots__ = ("client", "name", "sha", "text")
    client: Any  # the client, or an adapter for a double that only registers scripts

    def __init__(self, client: Any, name: str) -> None:
        self.name = name
        self.text = source(name)
        self.sha = hashlib.sha1(self.text.encode("utf-8")).hexdigest()
        # Looked up at each call, not kept: instrumentation may wrap the client's method later.
        self.client = client if hasattr(client, "execute_command") else _Registered(client, self)

    def __call__(self, keys: list[bytes], args: list[Any]) -> Any:
        return self.run("EVALSHA", self.sha, len(keys), *keys, *args)

    def run(self, *command: Any) -> Any:
        """``command`` is ``EVALSHA``, this script's SHA, the key count, keys and arguments."""
        try:
            return self.client.execute_command(*command)
        except NoScriptError:
            return self.client.execute_command("EVAL", self.text, *command[2:])


class _Registered:
    """A client that only registers scripts (a double), called through its own scripts."""

    def __init__(self, client: Any, script: Script) -> None:
        self._call = client.register_script(script.text)

    def execute_command(self, _evalsha: str, _sha: str, n: int, *rest: Any) -> Any:
        return self._call(list(rest[:n]), list(rest[n:]))


class Scripts:
    """The scripts registered on one client."""

    def __init__(self, client: Any) -> None:
        for name in NAMES:
            setattr(self, name, Script(client, name))

    start: Script
    touch: Script
    read: Script
    count: Script
    hold: Script
    end: Script
    claim: Script
    ack: Script
    renew: Script
    gone: Script
    events: Script
    stats: Script
    deadlines: Script
