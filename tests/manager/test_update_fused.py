"""``update_activity`` touches the in-memory store itself (``_fused_update``).

With the in-memory store, a manager's ``update_activity`` does the store's touch itself, the
clock's common case and the bookkeeping's plain case written out. These tests hold it to its
reference, the same method on a store that is not exactly ``MemoryStore`` (a subclass), which
calls ``MemoryStore.touch``: the same states, the same errors, the same store layout, and the
traced path whenever tracing is on and the sampler may keep the span.
"""

from __future__ import annotations

import gc
import typing
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from functools import partial
from random import Random
from typing import Any
from unittest import mock

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.util._once import Once
from telemetry_names import UPDATE

from conversation_expiry import ConversationExpiryManager, ManualClock, MemoryStore

START = datetime(2030, 1, 1, tzinfo=timezone.utc)
TTL = 10.0
REFERENCE = ConversationExpiryManager.update_activity


def fused(m: ConversationExpiryManager) -> bool:
    return m._inline is not None


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:  # the error's type and text must agree too
        return type(exc).__name__, str(exc)


class SubStore(MemoryStore):
    pass


def test_the_default_manager_touches_its_store_inline() -> None:
    m = ConversationExpiryManager(TTL, 3600, autostart=False, clock=ManualClock(START))
    assert fused(m)
    assert m.update_activity.__func__ is REFERENCE  # a method, bound to the manager
    assert "update_activity" not in vars(m)
    m.register_conversation("a")
    assert m.update_activity(conversation_id="a", activity_type="x").id == "a"  # keywords
    m.stop()


@pytest.mark.parametrize(
    "options",
    [{"meaningful_activities": {"message"}}, {"warning_before": 1.0, "on_warning": print}],
    ids=["meaningful_activities", "warnings"],
)
def test_a_manager_with_options_touches_inline_too(options: dict[str, Any]) -> None:
    m = ConversationExpiryManager(TTL, 3600, autostart=False, clock=ManualClock(START), **options)
    assert fused(m)
    m.stop()


def test_a_store_that_is_not_exactly_the_memory_store_gets_its_touch_called() -> None:
    touched: list[tuple[str, bool]] = []

    class Spying(MemoryStore):
        def touch(self, cid: str, extend: bool) -> Any:
            touched.append((cid, extend))
            return super().touch(cid, extend)

    m = ConversationExpiryManager(
        TTL, 3600, autostart=False, clock=ManualClock(START), store=Spying()
    )
    assert not fused(m)
    m.register_conversation("a")
    assert m.update_activity("a").id == "a" and touched == [("a", True)]
    m.stop()


def test_the_method_s_annotations_resolve_and_it_is_named_as_the_class_s() -> None:
    hints = typing.get_type_hints(REFERENCE)
    assert hints["self"] is ConversationExpiryManager
    assert REFERENCE.__qualname__ == "ConversationExpiryManager.update_activity"


def test_a_subclass_s_override_is_what_runs() -> None:
    calls: list[str] = []

    class Counting(ConversationExpiryManager):
        def update_activity(self, conversation_id: str, activity_type: str = "message") -> Any:
            calls.append(conversation_id)
            return super().update_activity(conversation_id, activity_type)

    m = Counting(TTL, 3600, autostart=False, clock=ManualClock(START))
    m.register_conversation("a")
    assert m.update_activity("a").id == "a" and calls == ["a"]
    m.stop()


def test_a_patch_of_the_class_s_method_is_what_runs_before_or_after_construction() -> None:
    before = ConversationExpiryManager(TTL, 3600, autostart=False, clock=ManualClock(START))
    with mock.patch.object(
        ConversationExpiryManager, "update_activity", autospec=True, side_effect=KeyError("x")
    ) as patched:
        after = ConversationExpiryManager(TTL, 3600, autostart=False, clock=ManualClock(START))
        for m in (before, after):
            with pytest.raises(KeyError):
                m.update_activity("a")
    assert patched.call_count == 2
    for m in (before, after):
        m.stop()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"warning_before": 1.0, "on_warning": print},
        {"meaningful_activities": {"message"}},
        {"store": SubStore, "warning_before": 1.0, "on_warning": print},
    ],
    ids=["plain", "warnings", "meaningful_activities", "another store, warnings"],
)
def test_a_manager_nobody_references_is_freed_at_once(options: dict[str, Any]) -> None:
    # No reference cycle through the request path: freed without the cyclic collector.
    options = {k: v() if k == "store" else v for k, v in options.items()}
    m = ConversationExpiryManager(TTL, 3600, autostart=False, clock=ManualClock(START), **options)
    m.register_conversation("a")
    m.update_activity("a")
    gone = weakref.ref(m)
    gc.disable()
    try:
        del m
        assert gone() is None
    finally:
        gc.enable()


def test_a_third_argument_is_refused() -> None:
    m = ConversationExpiryManager(TTL, 3600, autostart=False, clock=ManualClock(START))
    m.register_conversation("a")
    with pytest.raises(TypeError):
        m.update_activity("a", "message", "extra")  # type: ignore[misc]
    m.stop()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"max_conversations": 40},
        {"max_age": 25.0},
        {"custom": True},
        {"meaningful_activities": {"message"}},
        {"meaningful_activities": {"message"}, "max_conversations": 40},
        {"warning_before": 2.0},
    ],
    ids=[
        "plain", "capacity: ties", "max_age", "custom TTLs and metadata",
        "meaningful_activities", "meaningful_activities and capacity", "warnings",
    ],
)
def test_the_inline_touch_agrees_with_the_store_s_touch(options: dict[str, Any]) -> None:
    custom = options.pop("custom", False)
    managers, clocks = [], []
    warned: list[list[tuple[str, bool]]] = [[], []]
    for k in range(2):
        clock = ManualClock(START)
        if "warning_before" in options:
            options["on_warning"] = lambda s, k=k: warned[k].append((s.id, s.warning_sent))
        managers.append(
            ConversationExpiryManager(
                TTL, 3600, autostart=False, clock=clock, store=[MemoryStore, SubStore][k](),
                **options,
            )
        )
        clocks.append(clock)
    fast, ref = managers
    assert not fused(ref)
    assert fused(fast)
    rng = Random(3)
    ids = [f"c{i}" for i in range(60)]
    for step in range(1500):
        op = rng.random()
        cid = rng.choice(ids)
        if op < 0.1:
            kwargs: dict[str, Any] = {}
            if custom and rng.random() < 0.5:
                kwargs = {"ttl": rng.choice((5.0, 30.0)), "metadata": {"n": step}}
            results = [outcome(partial(m.register_conversation, cid, **kwargs)) for m in managers]
        elif op < 0.2:
            amount = rng.choice((0.0, 0.0, 1e-7, 0.5, 3.0, 11.0))
            for clock in clocks:
                clock.advance(amount)
            continue
        elif op < 0.23:
            results = [outcome(m.cleanup_expired) for m in managers]
        else:
            args: tuple[Any, ...] = rng.choice(
                [(cid,), (cid,), (cid, "message"), (cid, "other"), ("unknown",)]
            )
            results = [outcome(partial(m.update_activity, *args)) for m in managers]
        assert results[0] == results[1], (step, results)
        if results[0][0] == "ok" and results[0][1] is not None and not isinstance(
            results[0][1], list
        ):
            assert type(results[0][1]) is type(results[1][1])
            assert tuple(results[0][1]) == tuple(results[1][1])  # the layout, exactly
    assert warned[0] == warned[1]
    assert fast._wake_pending == ref._wake_pending
    a, b = fast._store, ref._store
    assert isinstance(a, MemoryStore) and isinstance(b, MemoryStore)
    assert a._last == b._last and a._seq == b._seq and a._floor == b._floor
    assert a._act_t == b._act_t and a._act_id == b._act_id
    for ttl, q in a._queues.items():
        assert [dict(x) for x in q.fresh.bks] == [dict(x) for x in b._queues[ttl].fresh.bks]
        assert q.fresh.room == b._queues[ttl].fresh.room
    for m in managers:
        m.stop()


class Text(str):
    def __str__(self) -> str:
        return "something else"


@pytest.mark.parametrize(
    "args",
    [(5,), ("",), (None,), (b"a",), (Text("a"),), ("a", 5), ("a", None), ("a", Text("x")),
     (5, 5), ("", None)],
)
def test_the_inline_path_checks_its_arguments_as_the_other_path_does(args: tuple[Any, ...]) -> None:
    managers = [
        ConversationExpiryManager(TTL, 3600, autostart=False, clock=ManualClock(START), store=s)
        for s in (MemoryStore(), SubStore())
    ]
    for m in managers:
        m.register_conversation("a")
    fast, ref = managers
    got = outcome(lambda: fast.update_activity(*args))
    want = outcome(lambda: ref.update_activity(*args))
    assert got == want
    for m in managers:
        m.stop()


@pytest.fixture
def global_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
    yield


def test_a_provider_configured_later_traces_even_a_kept_reference(global_provider: None) -> None:
    m = ConversationExpiryManager(TTL, 3600, autostart=False, clock=ManualClock(START))
    try:
        assert fused(m) and not m._telemetry.tracing
        update = m.update_activity  # kept, as a request handler may
        m.register_conversation("a")
        update("a")
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        m._telemetry.refresh()  # what the cleanup thread does on every wake
        assert m._telemetry.tracing
        update("a")
        with pytest.raises(TypeError, match="activity_type"):
            update("a", 5)  # type: ignore[arg-type]
        spans = [s for s in exporter.get_finished_spans() if s.name == UPDATE]
        assert len(spans) == 2
        assert spans[0].attributes is not None and spans[0].attributes["extended"] is True
        assert spans[1].status.status_code is trace.StatusCode.ERROR
    finally:
        m.stop()


def test_sampled_out_the_inline_path_skips_the_traced_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    clock = ManualClock(START)
    m = ConversationExpiryManager(
        TTL, 3600, autostart=False, clock=clock, tracer_provider=provider
    )
    twin = ConversationExpiryManager(TTL, 3600, autostart=False, clock=clock)
    traced: list[object] = []
    monkeypatch.setattr(m._telemetry, "traced_update", lambda *a: traced.append(a))
    try:
        assert fused(m) and m._telemetry.tracing
        for each in (m, twin):
            each.register_conversation("a")
        clock.advance(1.0)
        assert m.update_activity("a") == twin.update_activity("a")
        with pytest.raises(TypeError, match="activity_type"):
            m.update_activity("a", 5)  # type: ignore[arg-type]
        assert traced == [] and exporter.get_finished_spans() == ()
    finally:
        m.stop()
        twin.stop()


def test_sampled_in_the_inline_path_takes_the_traced_path() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    m = ConversationExpiryManager(
        TTL, 3600, autostart=False, clock=ManualClock(START), tracer_provider=provider
    )
    try:
        assert fused(m)
        m.register_conversation("a")
        m.update_activity("a")
        assert [s.name for s in exporter.get_finished_spans()].count(UPDATE) == 1
    finally:
        m.stop()


def test_the_inline_path_survives_fork_reinit() -> None:
    m = ConversationExpiryManager(TTL, 3600, autostart=False, clock=ManualClock(START))
    m.register_conversation("a")
    m._after_fork_in_child()  # fresh locks, as in a forked child
    assert m.update_activity("a").id == "a"
    store = m._store
    assert isinstance(store, MemoryStore) and not store._guard.write.locked()
    m._clock.advance(timedelta(seconds=TTL + 1))  # type: ignore[attr-defined]
    assert outcome(lambda: m.update_activity("a"))[0] == "ConversationExpiredError"
    m.stop()
