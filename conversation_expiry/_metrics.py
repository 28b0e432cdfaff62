"""The OpenTelemetry instruments: one set per meter provider, named by OTel conventions."""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics

from . import _fork
from ._errors import ConversationExpiryError
from ._state import ExpiryReason

if TYPE_CHECKING:
    from ._manager import ConversationExpiryManager

__all__ = ["CALLBACK", "ERROR_TYPE", "METRICS", "REASON", "SCOPE", "instruments_for", "type_name"]

SCOPE = "conversation_expiry"
try:
    _VERSION = metadata.version("conversation-expiry")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0"

# Metric attribute keys (namespaced, as the OpenTelemetry naming conventions ask).
REASON = "conversation_expiry.reason"
NAMESPACE = "conversation_expiry.namespace"
CALLBACK = "conversation_expiry.callback"
ERROR_TYPE = "error.type"

# Histogram bucket advice: sweeps take micro- to milliseconds; cleanup lag is bounded by the
# cleanup interval, typically seconds to minutes. (The SDK's default buckets suit milliseconds.)
_SWEEP_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)
_LAG_BUCKETS = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0,
)

# name, instrument, unit, description, attributes: the README lists these.
METRICS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    (
        "conversation_expiry.conversation.registered", "Counter", "{conversation}",
        "Conversations registered", (),
    ),
    (
        "conversation_expiry.conversation.removed", "Counter", "{conversation}",
        "Conversations that left the manager, by reason", (REASON,),
    ),
    (
        "conversation_expiry.conversation.count", "ObservableUpDownCounter", "{conversation}",
        "Live conversations (not past their deadline); a shared store's per namespace",
        (NAMESPACE,),
    ),
    (
        "conversation_expiry.sweep.duration", "Histogram", "s",
        "Duration of one cleanup sweep", (),
    ),
    (
        "conversation_expiry.cleanup.lag", "Histogram", "s",
        "Time from a conversation's deadline to its cleanup", (REASON,),
    ),
    (
        "conversation_expiry.callback.errors", "Counter", "{error}",
        "Cleanup callables, on_expire and on_warning calls that raised", (CALLBACK, ERROR_TYPE),
    ),
)

_REASON_ATTRS: dict[ExpiryReason, Mapping[str, str]] = {r: {REASON: r.value} for r in ExpiryReason}


class _Instruments:
    """One set of instruments per meter provider, shared by the managers that use it.

    The SDK hands back the existing instrument when one of the same name is created again, but
    keeps only the first callbacks of an observable one: so the live count is one instrument
    whose callback sums the managers registered here.
    """

    def __init__(self, meter: metrics.Meter) -> None:
        def args(i: int) -> tuple[str, str, str]:
            name, _instrument, unit, description, _attributes = METRICS[i]
            return name, unit, description

        self.managers: weakref.WeakSet[ConversationExpiryManager] = weakref.WeakSet()
        self.registered = meter.create_counter(*args(0))
        self.removed = meter.create_counter(*args(1))
        name, unit, description = args(2)
        meter.create_observable_up_down_counter(
            name, callbacks=[self._observe], unit=unit, description=description
        )
        self.duration = _histogram(meter, args(3), _SWEEP_BUCKETS)
        self.lag = _histogram(meter, args(4), _LAG_BUCKETS)
        self.errors = meter.create_counter(*args(5))

    def _observe(self, _options: Any) -> list[metrics.Observation]:
        # Every process sees a shared store's whole namespace: it is reported once per
        # namespace, with that attribute, never added to this process's own conversations.
        local = 0
        shared: dict[str, int] = {}
        for m in list(self.managers):
            store = m.store
            if not store.shared:
                local += len(m)
                continue
            name = str(getattr(store, "namespace", type(store).__name__))
            if name not in shared:
                try:
                    shared[name] = len(m)
                except ConversationExpiryError:  # unreachable now: no figure rather than 0
                    continue
        out = [metrics.Observation(n, {NAMESPACE: name}) for name, n in shared.items()]
        if local or not out:
            out.append(metrics.Observation(local))
        return out


def _histogram(
    meter: metrics.Meter, spec: tuple[str, str, str], buckets: Sequence[float]
) -> metrics.Histogram:
    name, unit, description = spec
    try:
        return meter.create_histogram(
            name, unit, description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:  # pragma: no cover - opentelemetry-api < 1.23 takes no advice
        return meter.create_histogram(name, unit, description)


# Instruments by meter provider; None (the global provider, proxied until one is set) included.
# The global one is kept under None for good: a proxy instrument follows the provider set later.
_INSTRUMENTS: weakref.WeakKeyDictionary[object, _Instruments] = weakref.WeakKeyDictionary()
_GLOBAL_INSTRUMENTS: dict[None, _Instruments] = {}
_INSTRUMENTS_LOCK = threading.Lock()
_fork.renew_after_fork(sys.modules[__name__], _INSTRUMENTS_LOCK=threading.Lock)


def instruments_for(meter_provider: metrics.MeterProvider | None) -> _Instruments:
    table: Any = _GLOBAL_INSTRUMENTS if meter_provider is None else _INSTRUMENTS
    with _INSTRUMENTS_LOCK:
        found: _Instruments | None = table.get(meter_provider)
        if found is None:
            meter = metrics.get_meter(SCOPE, _VERSION, meter_provider=meter_provider)
            found = table[meter_provider] = _Instruments(meter)
        return found


def type_name(exc: BaseException) -> str:
    """The exception's type as the SDK writes ``exception.type``: qualified unless a builtin."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "", None) else f"{module}.{cls.__qualname__}"
