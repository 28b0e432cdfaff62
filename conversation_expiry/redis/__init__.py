"""A shared conversation store in Redis: one lifecycle across worker processes and hosts.

Needs the ``redis`` extra (redis-py); ``conversation_expiry`` itself never imports it.

How it is laid out, and what follows from it:

* Keys ``ce:{<namespace>}:c|d|w|k|l|x|s|m|t`` (plus short-lived ``...:r:<request>``): the
  namespace is the hash tag, so a Cluster keeps a namespace in one slot; ids are hash fields
  and set members, never key names, so no id can collide or reach another key. About 200-270
  bytes of Redis memory per live conversation (one packed hash record, one sorted-set entry).
* Time is the server's (``TIME`` in the scripts), never below a stored high-water mark, so a
  server clock step back or a failover to a lagging replica delays expiry, never hastens it.
  A manager with a ManualClock drives the time instead; the namespace records which kind it
  runs on, and the other kind is refused (ValueError) while it has conversations.
* ``update_activity`` is one script of three commands (read the record and the time mark, read
  the server's clock, write the record). It leaves the deadline index (a sorted set) at the
  deadline it had, which is earlier; sweeps, counts, ``stats()``, ``next_deadlines()`` and
  eviction read the records of what the index says is due and put it right (at most 256 per
  script, the caller calling again), so every view still goes by the real deadlines.
* ``from_url`` makes a ``RedisCluster`` for a Cluster node's URL (it asks ``INFO cluster``
  once, unless ``cluster=`` says), so any node's URL works.
* A claim takes at most 128 conversations per script (about 1 ms of server time).
* ``max_conversations`` bounds the namespace: the conversation nearest its deadline makes room,
  past-due ones first (with their own reason), at most 64 per registration. (When over 256
  conversations at the low end of the index were touched since it was written, a registration
  puts 256 right and then takes the lowest as it is: nearly, not exactly, deadline order.)
* A claim lapsed three times (its cleanup keeps taking processes down) is dead-lettered, logged
  once at ERROR, counted in ``stats()["dead"]`` and listed by ``dead_letters()``.
* Replication is asynchronous, so a failover can lose the last acknowledged writes: a lost
  touch means an earlier deadline (the conversation may expire up to one ``ttl`` early, counted
  from the lost activity); a lost acknowledgement means the claim comes back after the lease
  and ``on_expire`` runs again (hooks should be idempotent); a lost registration is a
  conversation that ``update_activity`` no longer knows. Redis' ``WAIT`` would narrow this,
  at a round trip per call; the store does not use it.
"""

from __future__ import annotations

from .._extras import missing_extra

try:
    from ._store import RedisStore
except ImportError as exc:  # redis-py missing, or older than 5.3 (ExponentialWithJitterBackoff)
    raise missing_extra("redis", "redis-py 5.3 or later", exc) from exc

__all__ = ["RedisStore"]
