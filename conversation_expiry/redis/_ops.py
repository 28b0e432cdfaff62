"""What operators ask a RedisStore (the ``python -m conversation_expiry`` commands use it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from .._state import ConversationState
from . import _codec
from ._client import unavailable
from ._codec import decode_id, to_datetime
from ._lease import LeaseKeeper
from ._scripts import Scripts

__all__ = ["OperatorViews"]


class OperatorViews:
    """Counts, upcoming deadlines and the dead-letter set of a namespace; reads only, except
    :meth:`forget_dead_letters`. None of these need the store to be bound."""

    prefix: bytes
    _client: Any
    _scripts: Scripts
    _keeper: LeaseKeeper
    _run: Callable[..., Any]

    def stats(self) -> dict[str, int]:
        """Counts of the whole namespace, every process's: live, due (past due, not yet
        claimed), claimed, dead, late_acks and takeovers.

        Only what Redis holds, so any process (an operator's command) reads the same; this
        process's own claims are :attr:`outstanding`.
        """
        live, due, claimed, dead, late, takeovers, _now = self._complete(self._scripts.stats, [])
        return {
            "live": int(live),
            "due": int(due),
            "claimed": int(claimed),
            "dead": int(dead),
            "late_acks": int(late),
            "takeovers": int(takeovers),
        }

    def _complete(self, script: Any, args: list[Any]) -> list[Any]:
        """The reply of a script that puts right a bounded number of deadline indexes per call
        and says whether it is done ({1, ...}) or must be called again ({0}): lib_due.lua."""
        while True:
            reply = self._run(script, args)
            if reply[0]:
                return list(reply[1:])

    @property
    def outstanding(self) -> int:
        """This process's claims not yet acknowledged (its lease keeper renews them)."""
        return self._keeper.outstanding

    def next_deadlines(self, n: int) -> list[tuple[str, datetime]]:
        """The ``n`` live conversations nearest their deadlines, nearest first."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r:.80}")
        reply = self._complete(self._scripts.deadlines, [n])[0] if n else []
        return [
            (decode_id(reply[i]), to_datetime(float(reply[i + 1]))) for i in range(0, len(reply), 2)
        ]

    def dead_letters(self, n: int = 100) -> list[ConversationState]:
        """Up to ``n`` dead-lettered conversations (states as claimed), for operators."""
        key = self.prefix + b"x"
        found: list[ConversationState] = []
        cursor = 0
        while len(found) < n:
            cursor, batch = unavailable(self._client.hscan, key, cursor, None, min(n, 500))
            found += [_codec.decode_claimed(b).state for b in batch.values()]
            if not cursor:
                break
        return found[:n]

    def forget_dead_letters(self) -> int:
        """Delete the dead-letter set (after an operator dealt with it); returns how many."""
        key = self.prefix + b"x"
        count = int(unavailable(self._client.hlen, key))
        unavailable(self._client.delete, key)
        return count


