"""A recording OpenTelemetry SDK for one manager, passed in rather than installed globally.

Spans go through a ``SimpleSpanProcessor`` to an ``InMemorySpanExporter`` (cleared between timed
batches) and metrics to an ``InMemoryMetricReader``. The sampler is the SDK's default,
``ParentBased(ALWAYS_ON)``, behind a switch that drops spans while the benchmark registers its
population (100k spans at ~60 us each would dominate ``--quick``) and samples everything once
``sample_all()`` is called, before anything is timed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

__all__ = ["SdkSetup"]


class _Switch(Sampler):
    def __init__(self) -> None:
        self.on = False
        self._default = ParentBased(root=ALWAYS_ON)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        sampler = self._default if self.on else ALWAYS_OFF
        return sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "Switch(ParentBased(ALWAYS_ON))"


class SdkSetup:
    """The providers to pass as ``tracer_provider=`` and ``meter_provider=``."""

    def __init__(self) -> None:
        self._switch = _Switch()
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(sampler=self._switch)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.metric_reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metric_reader])

    def kwargs(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def sample_all(self) -> None:
        self._switch.on = True

    def drop_spans(self) -> None:
        self.exporter.clear()

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
