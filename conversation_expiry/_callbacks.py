"""Running the user's callables for conversations that left, with their faults contained.

Whatever a callable raises, the other callables of the batch still run: the conversations were
already claimed, and a cleanup skipped now would never run. ``Exception`` and the other
``BaseException`` subclasses (``asyncio.CancelledError``, ``GeneratorExit``, custom ones) are
logged and the batch goes on; ``SystemExit`` and ``KeyboardInterrupt`` are logged too and, once
the batch is done, raised again to the caller (the cleanup thread logs them and goes on).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from contextlib import suppress
from operator import length_hint
from typing import Any, cast

from ._faults import FaultLog
from ._state import ConversationState, ExpiryReason
from ._store import Cleanup, Departures
from ._telemetry import Telemetry, no_cleanup_span

__all__ = ["EXITS", "Callbacks", "OnExpire", "OnWarning", "reported"]

OnExpire = Callable[[ConversationState, ExpiryReason], object]
OnWarning = Callable[[ConversationState], object]

# Logged like any fault, then raised again to a synchronous caller once its batch is done.
EXITS = (SystemExit, KeyboardInterrupt)
_REPORTED = "_conversation_expiry_reported"


def reported(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by a callable and logged (so raised again only to end a call)."""
    return getattr(exc, _REPORTED, False) is True


def _mark_reported(exc: BaseException) -> None:
    with suppress(Exception):  # (an exception class that refuses attributes: not marked)
        setattr(exc, _REPORTED, True)


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
        # Once on_expire raised StopIteration (which a loop in C takes for its end), it is
        # called one by one, where the fault is caught with its traceback.
        self._one_by_one = False

    def finish(self, departures: Departures, cleanups: dict[str, list[Cleanup]]) -> None:
        """Run the cleanups (last attached first) and ``on_expire`` of each departed one."""
        states, reasons = departures.states, departures.reasons
        on_expire = self.on_expire
        telemetry = self._telemetry
        exit_exc: BaseException | None = None
        cleanup_span = telemetry.cleanup_spans()  # one sampling decision for the whole batch
        if cleanup_span is None and not cleanups and not self._one_by_one:
            # The common sweep: nothing but on_expire to call, per conversation, so the loop runs
            # in C; a fault stops it, is reported, and the loop goes on after that conversation.
            if on_expire is not None:
                n = len(states)
                if len(reasons) != n:
                    raise ValueError("departures with more states than reasons, or fewer")
                # One state more than reasons: map stops at the reason it lacks, having taken
                # the extra state (never called), so states left untaken mean that on_expire
                # raised StopIteration, which map takes for its end. The list is the store's:
                # the extra one goes at its end for the loop (a copy costs ~2 us a batch).
                padded = cast("list[Any]", states if type(states) is list else list(states))
                padded.append(None)
                try:
                    left = iter(padded)
                    why = iter(reasons)
                    while True:
                        try:
                            deque(map(on_expire, left, why), 0)
                        except BaseException as exc:
                            state = states[n - length_hint(left)]  # the one being called
                            self._failed(None, "on_expire", on_expire, state[0], exc)
                            if isinstance(exc, EXITS):
                                exit_exc = exit_exc or exc
                            continue
                        untaken = length_hint(left)
                        if not untaken:
                            break
                        self._one_by_one = True
                        lost = StopIteration(
                            "on_expire raised StopIteration (its traceback is lost: the loop "
                            "that called it took it for its end; later calls are made one by one)"
                        )
                        self._failed(None, "on_expire", on_expire, states[n - untaken][0], lost)
                finally:
                    padded.pop()
        else:
            span_for = cleanup_span or no_cleanup_span
            for state, reason in zip(states, reasons, strict=True):
                cid = state[0]
                with span_for(cid, reason) as scope:
                    for fn in reversed(cleanups.get(cid, ())):
                        exit_exc = self._call(scope, "cleanup", fn, cid) or exit_exc
                    if on_expire is not None:
                        exit_exc = (
                            self._call(scope, "on_expire", on_expire, cid, state, reason)
                            or exit_exc
                        )
        telemetry.removed_batch(states, reasons, departures.now, departures.oldest)
        if exit_exc is not None:
            raise exit_exc

    def finish_local(self, left: Iterable[tuple[str, ExpiryReason, list[Cleanup]]]) -> None:
        """Run this process's cleanups of conversations that another process finished."""
        exit_exc: BaseException | None = None
        for cid, reason, fns in left:
            with self._telemetry.cleanup_span(cid, reason) as scope:
                for fn in reversed(fns):
                    exit_exc = self._call(scope, "cleanup", fn, cid) or exit_exc
        if exit_exc is not None:
            raise exit_exc

    def warn(self, states: list[ConversationState]) -> None:
        on_warning = self.on_warning
        exit_exc: BaseException | None = None
        if on_warning is not None:
            for state in states:
                exit_exc = self._call(None, "on_warning", on_warning, state[0], state) or exit_exc
        if exit_exc is not None:
            raise exit_exc

    def _call(
        self, scope: Any, what: str, fn: Callable[..., object], cid: str, *args: Any
    ) -> BaseException | None:
        """Call ``fn``; a fault is logged, and returned if it must reach the caller later."""
        try:
            fn(*args)
        except BaseException as exc:
            self._failed(scope, what, fn, cid, exc)
            return exc if isinstance(exc, EXITS) else None
        return None

    def _failed(
        self, scope: Any, what: str, fn: Callable[..., object], cid: str, exc: BaseException
    ) -> None:
        if isinstance(exc, EXITS):
            _mark_reported(exc)
        self.faults.report(what, fn, cid, exc)
        self._telemetry.callback_failed(what, scope, exc)
