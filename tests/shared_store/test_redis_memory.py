"""Memory in Redis per live conversation: under 300 bytes (INFO memory delta at 100k)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from redis_servers import RedisServer
from support import START

from conversation_expiry import ManualClock
from conversation_expiry._store import Policy
from conversation_expiry.redis import RedisStore
from conversation_expiry.redis._codec import encode_id

pytest.importorskip("redis")

N = 100_000
TARGET = 300


@pytest.fixture
def server() -> Iterator[RedisServer]:
    s = RedisServer().start()  # its own: nothing else in its memory
    yield s
    s.stop()


@pytest.mark.parametrize("ids", ["short", "uuid"])
def test_memory_per_live_conversation(server: RedisServer, ids: str) -> None:
    client = server.client()
    store = RedisStore(client, namespace="memory")
    store.bind(Policy(ttl=1800.0), ManualClock(START))
    store.register("warm-up", None, None)  # the namespace's fixed keys exist before the count
    store.claim(1)
    before = client.info("memory")["used_memory"]
    sha = store._scripts.start.sha
    keys = [*store.keys, store.prefix + b"r:bulk"]
    now = store._now_arg()
    pipe = client.pipeline(transaction=False)
    for n in range(N):
        cid = f"conv-{n:08d}" if ids == "short" else str(uuid.UUID(int=n))
        # ensure(cid, extend=True), as the store sends it, without a round trip each
        args = [now, store.owner, store._lease_us, encode_id(cid), b"e", b"1", b"",
                *store._policy, b"0", b""]  # fmt: skip
        pipe.evalsha(sha, len(keys), *keys, *args)
        if n % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    assert store.count() == N + 1
    per = (client.info("memory")["used_memory"] - before) / N
    print(f"{ids} ids: {per:.0f} bytes per live conversation")
    assert per < TARGET
    store.close()
