"""Running the user's callables for conversations that left, with their faults contained."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._faults import FaultLog
from ._state import ConversationState, ExpiryReason
from ._store import Removed
from ._telemetry import Telemetry

__all__ = ["Callbacks", "OnExpire", "OnWarning"]

OnExpire = Callable[[ConversationState, ExpiryReason], object]
OnWarning = Callable[[ConversationState], object]

_EXPIRIES = (ExpiryReason.EXPIRED, ExpiryReason.MAX_AGE)


class Callbacks:
    """Calls ``on_expire``, per-conversation cleanups and ``on_warning``; never under a lock."""

    def __init__(
        self,
        on_expire: OnExpire | None,
        on_warning: OnWarning | None,
        telemetry: Telemetry,
    ) -> None:
        self.on_expire = on_expire
        self.on_warning = on_warning
        self._telemetry = telemetry
        self.faults = FaultLog()

    def finish(self, removed: Removed, now: float) -> None:
        """Run the cleanups (last attached first) and ``on_expire`` of each removed one."""
        states, reasons, cleanups = removed
        on_expire = self.on_expire
        telemetry = self._telemetry
        if not (cleanups or telemetry.tracing or telemetry.measuring):
            # The common sweep: nothing but on_expire to call, per conversation, so written out.
            if on_expire is not None:
                for state, reason in zip(states, reasons, strict=True):
                    try:
                        on_expire(state, reason)
                    except Exception as exc:
                        self._failed(None, "on_expire", on_expire, state[0], exc)
            return
        for state, reason in zip(states, reasons, strict=True):
            cid = state[0]
            with telemetry.cleanup_span(cid, reason) as scope:
                for fn in reversed(cleanups.get(cid, ())):
                    self._call(scope, "cleanup", fn, cid)
                if on_expire is not None:
                    self._call(scope, "on_expire", on_expire, cid, state, reason)
            telemetry.removed(reason, now - state[3] if reason in _EXPIRIES else None)

    def warn(self, states: list[ConversationState]) -> None:
        on_warning = self.on_warning
        if on_warning is not None:
            for state in states:
                self._call(None, "on_warning", on_warning, state[0], state)

    def _call(self, scope: Any, what: str, fn: Callable[..., object], cid: str, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._failed(scope, what, fn, cid, exc)

    def _failed(
        self, scope: Any, what: str, fn: Callable[..., object], cid: str, exc: Exception
    ) -> None:
        self.faults.report(what, fn, cid, exc)
        self._telemetry.callback_failed(what, scope, exc)
