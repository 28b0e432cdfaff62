"""A shared conversation store in Redis: one lifecycle across worker processes and hosts.

Needs the ``redis`` extra (redis-py); never imported by ``conversation_expiry`` itself.
"""

from __future__ import annotations

from ._store import RedisStore

__all__ = ["RedisStore"]
