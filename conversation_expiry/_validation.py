"""Argument checks shared by the manager, the clocks and the stores."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import NoReturn

__all__ = [
    "MAX_DURATION",
    "MAX_SECONDS",
    "WALL_HORIZON",
    "check_activity_type",
    "check_id",
    "invalid_id",
    "to_optional_seconds",
    "to_seconds",
]

# The longest duration accepted (ttl, cleanup_interval, max_age, warning_before, a timeout): 100
# years. A deadline is a clock reading plus at most this, so it stays a representable datetime
# for any reading up to WALL_HORIZON, and a wait this long is below threading.TIMEOUT_MAX
# (about 292 years on POSIX).
MAX_DURATION = timedelta(days=36525)
MAX_SECONDS = MAX_DURATION.total_seconds()
# The latest wall-clock time a clock of this library reads (ManualClock refuses to go beyond):
# with MAX_DURATION added, still a year before datetime.max (room for float rounding).
WALL_HORIZON = datetime(9899, 1, 1, tzinfo=timezone.utc)


def invalid_id(value: object, name: str = "conversation_id") -> NoReturn:
    """Raise the error a bad conversation id deserves."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}: {value!r:.80}")
    raise ValueError(f"{name} must be a non-empty str, got {value!r}")


def check_id(value: object, name: str = "conversation_id") -> str:
    """Return ``value`` if it is a usable conversation id, else raise."""
    if type(value) is not str or not value:
        if isinstance(value, str) and value:  # a str subclass is fine, as the str it holds
            return str.__str__(value)  # (not str(): its own __str__ could say anything)
        invalid_id(value, name)
    return value


def check_activity_type(activity_type: object) -> None:
    """Raise unless ``activity_type`` is a str (a subclass too)."""
    if not isinstance(activity_type, str):
        raise TypeError(f"activity_type must be a str, got {activity_type!r:.80}")


def to_seconds(
    name: str, value: object, *, allow_zero: bool = False, bounded: bool = True
) -> float:
    """Convert a positive finite number or timedelta to float seconds, naming ``name`` on error.

    ``bounded``: refuse more than MAX_DURATION too (a clock's advance checks its own bound).
    """
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
    if bounded and seconds > MAX_SECONDS:
        raise ValueError(
            f"{name} must be at most 100 years ({MAX_SECONDS:.0f} seconds), got {value!r:.80}"
        )
    return seconds


def to_optional_seconds(name: str, value: object) -> float | None:
    """Like :func:`to_seconds`, letting ``None`` through."""
    return None if value is None else to_seconds(name, value)
