"""Checking the manager's constructor arguments, all before anything is built."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._store import Policy
from ._validation import to_optional_seconds, to_seconds

__all__ = ["check_conversation_ttl", "check_options", "check_seam", "meaningful_predicate"]


def meaningful_predicate(value: object) -> Callable[[str], bool] | None:
    """``meaningful_activities`` as a predicate: a collection of names or a callable."""
    if value is None:
        return None
    if callable(value):
        return value
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(
            "meaningful_activities must be a collection of activity type names or a predicate, "
            f"got {type(value).__name__}: {value!r:.80}"
        )
    names = frozenset(value)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"meaningful_activities must hold str names, got {name!r:.80}")
    return names.__contains__


def check_options(
    *,
    ttl: object,
    cleanup_interval: object,
    max_age: object,
    warning_before: object,
    max_conversations: object,
    on_expire: object,
    on_warning: object,
    clock: object,
    thread_name: object,
    tracer_provider: object = None,
    meter_provider: object = None,
) -> tuple[Policy, float]:
    """Validate the manager's options; returns its store policy and its cleanup interval.

    Durations are at most 100 years (``MAX_DURATION``), so that every deadline is a datetime.
    """
    ttl_s = to_seconds("ttl", ttl)
    interval_s = to_seconds("cleanup_interval", cleanup_interval)
    max_age_s = to_optional_seconds("max_age", max_age)
    warn_s = to_optional_seconds("warning_before", warning_before)
    if warn_s is not None and warn_s >= ttl_s:
        raise ValueError(f"warning_before must be less than ttl ({ttl_s}s), got {warning_before!r}")
    if max_conversations is not None:
        if isinstance(max_conversations, bool) or not isinstance(max_conversations, int):
            raise TypeError(f"max_conversations must be an int or None, got {max_conversations!r}")
        if max_conversations < 1:
            raise ValueError(f"max_conversations must be at least 1, got {max_conversations!r}")
    for name, fn in (("on_expire", on_expire), ("on_warning", on_warning)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable or None, got {fn!r:.80}")
    if on_warning is not None and warn_s is None:
        raise ValueError("on_warning needs warning_before")
    check_seam("clock", clock, "monotonic", "wall_offset")
    check_seam("tracer_provider", tracer_provider, "get_tracer")
    check_seam("meter_provider", meter_provider, "get_meter")
    if not isinstance(thread_name, str) or not thread_name:
        raise TypeError(f"thread_name must be a non-empty str, got {thread_name!r:.80}")
    return Policy(ttl_s, max_age_s, warn_s, max_conversations), interval_s


def check_seam(name: str, value: object, *methods: str) -> None:
    """``value`` is None or an instance with the callable ``methods``; TypeError naming ``name``.

    A class passes a ``callable(getattr(...))`` test (its methods are plain functions) and then
    fails on every call, so a class is refused by name: ``clock=ManualClock`` for
    ``clock=ManualClock()``.
    """
    if value is None:
        return
    wanted = " and ".join(f"{m}()" for m in methods)
    if isinstance(value, type):
        raise TypeError(
            f"{name} must be an instance with {wanted}, got the class {value.__qualname__}; "
            f"did you mean {value.__qualname__}()?"
        )
    if not all(callable(getattr(value, m, None)) for m in methods):
        raise TypeError(f"{name} must have {wanted}, got {type(value).__name__}: {value!r:.80}")


def check_conversation_ttl(ttl: Any, policy: Policy) -> float | None:
    """A per-conversation ``ttl`` (None: the manager's), checked like the manager's own."""
    ttl_s = to_optional_seconds("ttl", ttl)
    warn = policy.warning_before
    if ttl_s is not None and warn is not None and ttl_s <= warn:
        raise ValueError(f"ttl must be more than warning_before ({warn}s), got {ttl!r}")
    return ttl_s
