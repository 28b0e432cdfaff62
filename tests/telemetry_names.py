"""The span names (the Go recipe's) and metric names (README, "Observability") the tests rely on.

Written out here rather than imported from the library, so a renamed span or metric fails them.
"""

from __future__ import annotations

# Spans
REGISTER = "expiry_manager.register"
UPDATE = "expiry_manager.update_activity"
END = "expiry_manager.end"
SWEEP = "expiry_manager.cleanup"
CLEANUP = "expiry_manager.cleanup_conversation"

# Metrics
REGISTERED = "conversation_expiry.conversation.registered"
REMOVED = "conversation_expiry.conversation.removed"
LIVE = "conversation_expiry.conversation.count"
SWEEP_DURATION = "conversation_expiry.sweep.duration"
LAG = "conversation_expiry.cleanup.lag"
ERRORS = "conversation_expiry.callback.errors"
