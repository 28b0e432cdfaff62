"""What the contract tests share: constants and recorders (fixtures are in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from conversation_expiry import ConversationState, ExpiryReason

START = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
TTL = 10.0
WAIT = 5.0  # bound on every wait for something that must happen


@dataclass
class Recorder:
    """Collects on_expire calls as (id, reason, state)."""

    calls: list[tuple[str, ExpiryReason, ConversationState]] = field(default_factory=list)

    def __call__(self, state: ConversationState, reason: ExpiryReason) -> None:
        self.calls.append((state.id, reason, state))

    def reasons(self, cid: str) -> list[ExpiryReason]:
        return [r for i, r, _ in self.calls if i == cid]
