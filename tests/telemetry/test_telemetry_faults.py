"""A tracing SDK that raises (a span processor, a sampler) fails no call and loses no cleanup.

The SDK contains neither its span processors' faults nor its sampler's: without the manager
containing them, a removal done under a span was followed by an exception instead of its
cleanups.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult

from conversation_expiry import ConversationExpiryManager, ManualClock
from conversation_expiry import _spans as spans_module

START = datetime(2024, 5, 6, tzinfo=timezone.utc)
TTL = 10.0


class Raising(SpanProcessor):
    def __init__(self, at: str) -> None:
        self.at = at

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.at == "start":
            raise RuntimeError("on_start boom")

    def on_end(self, span: Any) -> None:
        if self.at == "end":
            raise RuntimeError("on_end boom")


class RaisingSampler(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        raise RuntimeError("sampler boom")

    def get_description(self) -> str:
        return "raising"


@pytest.fixture(autouse=True)
def fresh_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spans_module, "_reported", set(), raising=False)


def provider_for(fault: str) -> TracerProvider:
    if fault == "sampler":
        return TracerProvider(sampler=RaisingSampler())
    provider = TracerProvider()
    provider.add_span_processor(Raising(fault))
    return provider


Made = tuple[ConversationExpiryManager, ManualClock, list[str]]


@pytest.fixture(params=["start", "end", "sampler"])
def made(request: pytest.FixtureRequest) -> Iterator[Made]:
    clock = ManualClock(START)
    ran: list[str] = []
    m = ConversationExpiryManager(
        TTL, 3600, clock=clock, autostart=False, tracer_provider=provider_for(request.param),
        on_expire=lambda s, r: ran.append(f"{s.id}:{r.value}"),
    )
    yield m, clock, ran
    m.stop()


def test_the_calls_work(made: Made) -> None:
    m, _clock, _ran = made
    assert m.register_conversation("a").id == "a"
    assert m.update_activity("a").id == "a"
    assert m.ensure_conversation("b")[1] is True
    assert "a" in m and len(m) == 2


def test_an_ended_conversation_gets_its_callables(made: Made) -> None:
    m, _clock, ran = made
    m.register_conversation("a")
    m.add_cleanup("a", lambda: ran.append("cleanup"))
    assert m.end_conversation("a") is True
    assert ran == ["cleanup", "a:ended"]


def test_a_sweep_cleans_every_conversation_once(made: Made) -> None:
    m, clock, ran = made
    for cid in "abc":
        m.register_conversation(cid)
    clock.advance(TTL + 1)
    assert sorted(m.cleanup_expired()) == ["a", "b", "c"]
    assert sorted(ran) == ["a:expired", "b:expired", "c:expired"]
    assert m.cleanup_expired() == []


def test_stop_cleans_what_is_left(made: Made) -> None:
    m, _clock, ran = made
    m.register_conversation("a")
    m.stop(cleanup_remaining=True)
    assert ran == ["a:shutdown"]


def test_the_fault_is_logged_once(made: Made, caplog: pytest.LogCaptureFixture) -> None:
    m, _clock, _ran = made
    with caplog.at_level(logging.ERROR, logger="conversation_expiry"):
        for cid in "abcd":
            m.register_conversation(cid)
            m.update_activity(cid)
    reports = [r for r in caplog.records if "OpenTelemetry SDK raised" in r.getMessage()]
    assert len(reports) == 1 and reports[0].exc_info is not None
