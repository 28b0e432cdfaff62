"""Acknowledgements this process owes the store: sent when a claim is done, or kept and retried.

An acknowledgement that an outage kept back must still go, and before this process's next
claim: once the claim's lease lapses, that claim (or another process's) takes the conversation
over and runs its ``on_expire`` again. The lease keeper retries them meanwhile
(``LeaseKeeper.acks_pending``), so a claim whose cleanups ran is not renewed forever.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .._errors import StoreUnavailableError
from .._faults import log_safely
from ._codec import Claim
from ._lease import LeaseKeeper

__all__ = ["Acknowledgements"]

logger = logging.getLogger("conversation_expiry")

_CHUNK = 1000  # incarnations per ack script


class Acknowledgements:
    """Sends a claim's acknowledgement, keeps the ones an outage held back, counts late ones."""

    def __init__(self, send: Callable[[list[bytes]], int], keeper: LeaseKeeper) -> None:
        self._send = send  # one ack script's worth; returns how many came after a takeover
        self._keeper = keeper
        self._reset()

    def _reset(self) -> None:
        self.unsent: list[Claim] = []
        self._unsent_lock = threading.Lock()  # the keeper and a sweep both retry them
        self.late = 0  # acknowledgements of this process that came after a takeover
        self._late_lock = threading.Lock()  # the keeper thread acknowledges too

    def ack(self, claim: Claim) -> None:
        """Acknowledge ``claim``; during an outage it is kept for a retry, and the error raised."""
        if claim.acked:
            return
        try:
            self._ack(claim)
        except StoreUnavailableError:
            self.unsent.append(claim)  # the keeper retries, so the claim is not renewed forever
            self._keeper.acks_pending()
            raise

    def _ack(self, claim: Claim) -> None:
        incs = claim.incarnations
        late = 0
        for start in range(0, len(incs), _CHUNK):
            late += self._send(incs[start : start + _CHUNK])
        claim.acked = True
        self._keeper.discard(incs)
        if late:
            with self._late_lock:
                self.late += late

    def retry(self) -> None:
        """Send every acknowledgement kept back, oldest first; raises as the store does."""
        with self._unsent_lock:
            while self.unsent:
                claim = self.unsent[0]
                if not claim.acked:
                    self._ack(claim)
                self.unsent.pop(0)

    def flush_at_close(self) -> None:
        """One last retry; what still fails is logged with its ids (nobody retries it now)."""
        if not self.unsent:
            return
        # The keeper and the next sweep would have sent them: this process has neither now.
        # Unsent, each claim lapses and another process runs its on_expire again.
        try:
            self.retry()
        except Exception as exc:  # (closing goes on: the client is closed all the same)
            ids = [cid for claim in self.unsent for cid in claim.ids]
            cause = exc.__cause__ or exc
            log_safely(
                logger.warning,
                "conversation store closed with %d acknowledgements unsent (%s: %s): their "
                "on_expire ran here, and will run again in another process once the lease "
                "lapses: %s",
                len(ids), type(cause).__name__, cause,
                ", ".join(map(repr, ids[:100])) + (" ..." if len(ids) > 100 else ""),
            )

    def after_fork_in_child(self) -> None:
        # The parent's claims stay the parent's: it acknowledges them.
        self._reset()
