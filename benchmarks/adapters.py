"""The implementations under comparison, each behind the same tiny interface.

An adapter holds plain callables: ``register(id)``, ``update(id)`` and ``sweep()``. Where the
implementation has a method for it, the callable *is* that bound method, so no adapter frame is
timed; where a user would write a wrapper (a lock around a cache), the wrapper is the adapter.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cachetools import TTLCache
from expiringdict import ExpiringDict

from conversation_expiry import ConversationExpiryManager

from .measure import gc_paused
from .naive_port import NaiveExpiryManager, utcnow
from .otel_sdk import SdkSetup

__all__ = [
    "BASELINES",
    "CACHETOOLS",
    "EXPIRINGDICT",
    "FLOOR",
    "ISSUE3",
    "NAIVE",
    "OURS",
    "Adapter",
    "cachetools_lock",
    "close_all",
    "expiring_dict",
    "floor",
    "issue3_set",
    "lifecycle_variants",
    "naive",
    "ours",
    "ours_with_sdk",
    "populate",
]

OURS = "conversation-expiry"
NAIVE = "naive Go port"
CACHETOOLS = "cachetools TTLCache+Lock"
EXPIRINGDICT = "expiringdict"
FLOOR = "floor: dict+Lock"
BASELINES = (NAIVE, CACHETOOLS, EXPIRINGDICT, FLOOR)
ISSUE3 = (OURS, *BASELINES)

TTL = 3600.0  # long enough that nothing expires unless a benchmark moves a clock


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Adapter:
    name: str
    register: Callable[[str], object]
    update: Callable[[str], object]
    sweep: Callable[[], object]
    close: Callable[[], object] = _nothing
    settle: Callable[[], object] = _nothing  # after each timed batch, untimed (drop spans)
    load: Callable[[Iterable[str]], object] | None = None  # fast bulk register, if any
    target: object = field(default=None, repr=False)  # keeps the implementation alive


def populate(adapter: Adapter, ids: Iterable[str]) -> None:
    """Register every id, in bulk where the implementation allows it (untimed set-up).

    The cyclic GC is paused meanwhile: its passes over a growing heap only slow the set-up.
    """
    with gc_paused():
        if adapter.load is not None:
            adapter.load(ids)
        else:
            register = adapter.register
            for cid in ids:
                register(cid)
    adapter.settle()


def ours(ttl: float = TTL, *, name: str = OURS, **options: Any) -> Adapter:
    """This library through its public API; ``options`` go to the constructor."""
    options.setdefault("autostart", False)
    m = ConversationExpiryManager(ttl, 60.0, **options)
    return Adapter(
        name, m.register_conversation, m.update_activity, m.cleanup_expired, m.stop, target=m
    )


def ours_with_sdk(ttl: float = TTL, *, name: str = f"{OURS} + OTel SDK") -> Adapter:
    """This library with a recording OpenTelemetry SDK passed in (not installed globally)."""
    sdk = SdkSetup()
    base = ours(ttl, name=name, **sdk.kwargs())
    populated = [False]

    def settle() -> None:
        # populate() ends with settle(): spans are dropped while the population registers
        # and recorded from then on, before anything is timed.
        if not populated[0]:
            populated[0] = True
            sdk.sample_all()
        sdk.drop_spans()

    def close() -> None:
        base.close()
        sdk.shutdown()

    return Adapter(
        name, base.register, base.update, base.sweep, close, settle, target=(base.target, sdk)
    )


def naive(
    ttl: float = TTL,
    *,
    now: Callable[[], datetime] = utcnow,
    on_expire: Callable[[Any], object] | None = None,
) -> Adapter:
    m = NaiveExpiryManager(
        timedelta(seconds=ttl),
        timedelta(seconds=60),
        now=now,
        on_expire=on_expire,
        autostart=False,
    )
    return Adapter(
        NAIVE,
        m.register_conversation,
        m.update_activity,
        m.cleanup_expired,
        m.stop,
        load=m.load,
        target=m,
    )


def cachetools_lock(ttl: float = TTL) -> Adapter:
    """``TTLCache`` is not thread-safe: a user guards it with a lock. set = register = update."""
    cache: TTLCache[str, bool] = TTLCache(maxsize=sys.maxsize, ttl=ttl, timer=time.monotonic)
    lock = threading.Lock()

    def put(cid: str) -> None:
        with lock:
            cache[cid] = True

    def sweep() -> object:
        with lock:
            return cache.expire()

    return Adapter(CACHETOOLS, put, put, sweep, target=cache)


def expiring_dict(ttl: float = TTL) -> Adapter:
    """``ExpiringDict`` locks internally; it expires lazily, on access."""
    d: ExpiringDict = ExpiringDict(max_len=sys.maxsize, max_age_seconds=ttl)

    def put(cid: str) -> None:
        d[cid] = True

    return Adapter(EXPIRINGDICT, put, put, d.items, target=d)


class _Floor:
    """The least a thread-safe expiry map can do: a dict of floats under one lock."""

    __slots__ = ("_last", "_lock", "_ttl")

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def register(self, cid: str, now: Callable[[], float] = time.monotonic) -> None:
        with self._lock:
            self._last[cid] = now()

    def update(self, cid: str, now: Callable[[], float] = time.monotonic) -> None:
        with self._lock:
            if cid not in self._last:
                raise KeyError(cid)
            self._last[cid] = now()

    def sweep(self) -> list[str]:
        with self._lock:
            cutoff = time.monotonic() - self._ttl
            expired = [cid for cid, last in self._last.items() if last < cutoff]
            for cid in expired:
                del self._last[cid]
            return expired


def floor(ttl: float = TTL) -> Adapter:
    f = _Floor(ttl)
    return Adapter(FLOOR, f.register, f.update, f.sweep, target=f)


def issue3_set(ttl: float = TTL) -> list[Adapter]:
    """This library and the four baselines of issue 3, fresh and empty."""
    return [ours(ttl), naive(ttl), cachetools_lock(ttl), expiring_dict(ttl), floor(ttl)]


def close_all(adapters: Sequence[Adapter]) -> None:
    for adapter in adapters:
        adapter.close()


def _ignore(_state: object) -> None:
    return None


def lifecycle_variants(ttl: float = TTL) -> list[Adapter]:
    """This library with each issue-5 option configured, then with all three."""
    warning: dict[str, Any] = {"warning_before": ttl / 60, "on_warning": _ignore}
    max_age: dict[str, Any] = {"max_age": 2 * ttl}
    meaningful: dict[str, Any] = {"meaningful_activities": frozenset({"message"})}
    return [
        ours(ttl, name=f"{OURS} + warning_before", **warning),
        ours(ttl, name=f"{OURS} + max_age", **max_age),
        ours(ttl, name=f"{OURS} + meaningful_activities", **meaningful),
        ours(ttl, name=f"{OURS} + all three", **warning, **max_age, **meaningful),
    ]
