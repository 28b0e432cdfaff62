"""Argument checks shared by the manager, the clocks and the stores."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import NoReturn

__all__ = ["check_id", "invalid_id", "to_optional_seconds", "to_seconds"]


def invalid_id(value: object, name: str = "conversation_id") -> NoReturn:
    """Raise the error a bad conversation id deserves."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}: {value!r:.80}")
    raise ValueError(f"{name} must be a non-empty str, got {value!r}")


def check_id(value: object, name: str = "conversation_id") -> str:
    """Return ``value`` if it is a usable conversation id, else raise."""
    if type(value) is not str or not value:
        if isinstance(value, str) and value:  # a str subclass is fine
            return str(value)
        invalid_id(value, name)
    return value


def to_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Convert a positive finite number or timedelta to float seconds, naming ``name`` on error."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a number of seconds or a timedelta, got {type(value).__name__}: "
            f"{value!r:.80}"
        )
    else:
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"{name} must be positive and finite, got {value!r:.80}") from None
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        wanted = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be {wanted} and finite, got {value!r}")
    return seconds


def to_optional_seconds(name: str, value: object) -> float | None:
    """Like :func:`to_seconds`, letting ``None`` through."""
    return None if value is None else to_seconds(name, value)
