"""The Lua scripts (package data under ``lua/``) and the keys of one namespace.

Every script is ``prelude.lua`` followed by its own file: Redis has no include, and one prelude
keeps the record layouts and the clock in one place.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

__all__ = ["NAMES", "Scripts", "key_names", "source"]

NAMES = (
    "start", "touch", "read", "count", "hold", "end", "claim", "ack", "renew", "gone",
    "events", "stats", "deadlines",
)  # fmt: skip

# Key suffixes in the order the prelude reads KEYS (see prelude.lua for what each holds).
_SUFFIXES = ("c", "d", "w", "m", "k", "l", "x", "s", "t")


def source(name: str) -> str:
    """The full text of one script."""
    lua = resources.files(__package__).joinpath("lua")
    return lua.joinpath("prelude.lua").read_text("utf-8") + "\n" + lua.joinpath(
        f"{name}.lua"
    ).read_text("utf-8")


def key_names(namespace: str) -> tuple[bytes, list[bytes]]:
    """The prefix and the keys of ``namespace``.

    The namespace is the hash tag (it has no braces), so a Cluster keeps every key of it in
    one slot; conversation ids are never part of a key name, so no id can reach another key.
    """
    prefix = f"ce:{{{namespace}}}:".encode()
    return prefix, [prefix + s.encode() for s in _SUFFIXES]


class Scripts:
    """The scripts registered on one client (redis-py ``Script`` objects: EVALSHA, loading
    the script again after a restart or failover emptied the server's script cache)."""

    def __init__(self, client: Any) -> None:
        for name in NAMES:
            setattr(self, name, client.register_script(source(name)))

    start: Any
    touch: Any
    read: Any
    count: Any
    hold: Any
    end: Any
    claim: Any
    ack: Any
    renew: Any
    gone: Any
    events: Any
    stats: Any
    deadlines: Any
