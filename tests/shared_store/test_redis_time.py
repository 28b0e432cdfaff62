"""The kind of time a namespace runs on (the server's, or driven by a manager's ManualClock):
recorded at the first write, the other kind refused while the namespace has conversations."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from support import START

from conversation_expiry import ConversationExpiryManager, ManualClock, SystemClock
from conversation_expiry._store import Policy

pytest.importorskip("redis")

TTL = 60.0


def recorded(store: Any) -> tuple[bytes | None, float]:
    """The namespace's kind of time and its time mark: C's field 0xff, kind byte then time."""
    mark = store._client.hget(store.prefix + b"c", b"\xff")
    if mark is None:
        return None, 0.0
    return {b"s": b"server", b"d": b"driven"}[mark[:1]], float(mark[1:]) / 1e6


def test_the_first_write_records_the_kind(redis_store: Callable[..., Any]) -> None:
    server = redis_store()
    server.bind(Policy(ttl=TTL), SystemClock())
    assert recorded(server)[0] is None  # a read writes nothing
    server.register("a", None, None)
    assert recorded(server)[0] == b"server"
    driven = redis_store()
    driven.bind(Policy(ttl=TTL), ManualClock(START))
    driven.register("a", None, None)
    assert recorded(driven) == (b"driven", START.timestamp())


def test_a_driven_clock_cannot_move_a_server_namespace(redis_store: Callable[..., Any]) -> None:
    server = redis_store()
    server.bind(Policy(ttl=TTL), SystemClock())
    server.register("a", None, None)
    kind, mark = recorded(server)
    clock = ManualClock()
    clock.advance(3600)  # an hour ahead of the server: would expire everything at once
    with pytest.raises(ValueError, match=repr(server.namespace)) as info:
        ConversationExpiryManager(TTL, 60, store=redis_store(namespace=server.namespace),
                                  clock=clock, autostart=False)  # fmt: skip
    assert "server's clock" in str(info.value)
    assert recorded(server) == (kind, mark) and server.is_live("a")


def test_a_server_store_cannot_run_a_driven_namespace(redis_store: Callable[..., Any]) -> None:
    driven = redis_store()
    driven.bind(Policy(ttl=TTL), ManualClock(START))
    driven.register("a", None, None)
    server = redis_store(namespace=driven.namespace)
    with pytest.raises(ValueError, match="driven clock"):
        server.bind(Policy(ttl=TTL), SystemClock())


def test_the_other_kind_is_refused_at_the_first_call_too(
    redis_store: Callable[..., Any],
) -> None:
    server = redis_store()
    server.bind(Policy(ttl=TTL), SystemClock())  # while the namespace is empty
    driven = redis_store(namespace=server.namespace)
    driven.bind(Policy(ttl=TTL), ManualClock(START))
    driven.register("a", None, None)  # an empty namespace: the driven clock takes it
    for call in (lambda: server.register("b", None, None), lambda: server.touch("a", True),
                 lambda: server.get("a"), server.count, lambda: server.claim(10)):  # fmt: skip
        with pytest.raises(ValueError, match=repr(server.namespace)):
            call()
    assert recorded(driven) == (b"driven", START.timestamp())


def test_an_empty_namespace_switches_and_starts_its_time_afresh(
    redis_store: Callable[..., Any],
) -> None:
    first = ManualClock()
    first.advance(86400)  # a day ahead of the server
    driven = redis_store()
    driven.bind(Policy(ttl=TTL), first)
    driven.register("a", None, None)
    driven.ack(driven.end("a"))  # empty again (nothing live, nothing claimed)
    server = redis_store(namespace=driven.namespace)
    server.bind(Policy(ttl=TTL), SystemClock())
    state, _ = server.register("b", None, None)
    assert recorded(server)[0] == b"server"
    ahead = datetime.now(timezone.utc) + timedelta(hours=1)
    assert state.created_at < ahead  # the driven mark was let go: the server's time decides
    server.ack(server.end("b"))
    again = redis_store(namespace=driven.namespace)
    again.bind(Policy(ttl=TTL), ManualClock(START))  # earlier than the server's mark
    state, _ = again.register("c", None, None)
    assert state.created_at == START and recorded(again) == (b"driven", START.timestamp())


def test_claimed_conversations_keep_the_namespace(redis_store: Callable[..., Any]) -> None:
    clock = ManualClock(START)
    driven = redis_store()
    driven.bind(Policy(ttl=TTL), clock)
    driven.register("a", None, None)
    clock.advance(TTL + 1)
    sweep = driven.claim(10)  # claimed, not acknowledged: its lease runs on driven time
    assert len(sweep.departures.states) == 1
    server = redis_store(namespace=driven.namespace)
    server.bind(Policy(ttl=TTL), SystemClock())  # no live ones: bind cannot tell
    with pytest.raises(ValueError, match="driven clock"):
        server.register("b", None, None)
    driven.ack(sweep.departures)
    server.register("b", None, None)
    assert recorded(server)[0] == b"server"
