"""The cleanup callables attached in this process, by conversation and incarnation.

They stay in the process that attached them, whatever store holds the conversations: a shared
store cannot carry callables, and an id started again (here or elsewhere) is another incarnation,
whose departure must never run the old one's cleanups.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from . import _fork
from ._state import ExpiryReason
from ._store import Cleanup, ConversationStore

__all__ = ["HeldCleanups"]


class HeldCleanups:
    """Callables by (id, incarnation); safe to use from many threads."""

    def __init__(self) -> None:
        self._fns: dict[tuple[str, int], list[Cleanup]] = {}
        # Spans the store's hold() and the append, so a departure claimed after hold() returned
        # always finds the callable (its claim needs this lock to take it).
        self._lock = threading.Lock()
        _fork.renew_after_fork(self, _lock=threading.Lock)

    def __bool__(self) -> bool:
        return bool(self._fns)

    def __len__(self) -> int:
        return len(self._fns)

    def attach(self, store: ConversationStore, cid: str, fn: Cleanup) -> None:
        """Attach ``fn`` to the live ``cid`` (the store raises if it is not live)."""
        with self._lock:
            token = store.hold(cid)
            self._fns.setdefault((cid, token), []).append(fn)

    def take(self, tokens: dict[str, int]) -> dict[str, list[Cleanup]]:
        """The callables of departed incarnations, by id; they are forgotten here."""
        taken: dict[str, list[Cleanup]] = {}
        with self._lock:
            pop = self._fns.pop
            for cid, token in tokens.items():
                fns = pop((cid, token), None)
                if fns:
                    taken[cid] = fns
        return taken

    def take_left(
        self, left: Iterable[tuple[str, int, ExpiryReason]]
    ) -> list[tuple[str, ExpiryReason, list[Cleanup]]]:
        """The callables of incarnations that left in another process, with their reasons."""
        runs: list[tuple[str, ExpiryReason, list[Cleanup]]] = []
        with self._lock:
            for cid, token, reason in left:
                fns = self._fns.pop((cid, token), None)
                if fns:
                    runs.append((cid, reason, fns))
        return runs

    def forget_all(self) -> None:
        """Drop every callable without running it (a forked child's copies of a shared store's:
        they are the parent's, and the parent runs them)."""
        self._fns = {}

    def take_all(self, reason: ExpiryReason) -> list[tuple[str, ExpiryReason, list[Cleanup]]]:
        """Every callable still held (at shutdown), with ``reason``."""
        with self._lock:
            fns, self._fns = self._fns, {}
        return [(cid, reason, f) for (cid, _), f in fns.items()]
