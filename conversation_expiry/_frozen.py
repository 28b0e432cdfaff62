"""freezegun support for SystemClock: what is frozen now, and where each freeze started.

A freeze continues the clock from where it stood when the freeze started, so that point must be
taken when the freeze starts: taken at the clock's first reading in it, a ``tick()`` made before
that reading would be lost (and after a nested freeze ended, the outer freeze's ticks). freezegun
offers no hook, so :func:`install` wraps ``_freeze_time.start`` / ``stop`` to record an
:class:`Anchor` per active freeze: the freeze's time at that instant and how far the clock has
moved since the outermost freeze of the chain started. Each clock maps its own position at the
chain's start (where it stood) through it. Without the records (freezegun imported after the
clock's last reading) a clock anchors at its first reading in the freeze, as before.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

__all__ = ["Anchor", "Chain", "anchor_of", "finished", "frozen_now", "install"]

_real_monotonic: tuple[Callable[[], float]] = (time.monotonic,)  # where freezegun does not patch
_MARK = "_conversation_expiry_anchors"


class Chain:
    """A freeze started outside any other, and the nested ones it held: one timeline."""

    __slots__ = ("real",)

    def __init__(self, real: float) -> None:
        self.real = real  # real time.monotonic() when it started


class Anchor:
    """One freeze at its latest start or resume: its time then, and the clock's gain since.

    A resume also says which freeze just ended and its time then (``ended``), so that a clock
    that followed that freeze continues from its own reading of it: the gain counts a freeze
    moved back as standing still, a clock that saw the move counts the ticks after it.
    """

    __slots__ = ("chain", "ended", "gain", "moment")

    def __init__(
        self,
        moment: datetime,
        chain: Chain,
        gain: float,
        ended: tuple[object, datetime] | None = None,
    ) -> None:
        self.moment = moment  # the freeze's time (naive UTC) at that instant
        self.chain = chain
        self.gain = gain  # seconds the clock moved from the chain's start until that instant
        self.ended = ended


# Active freezes (their factories) -> anchor. Written only by the thread starting or stopping a
# freeze; one dict operation each, so readers on other threads need no lock.
_anchors: dict[object, Anchor] = {}


def _moment(factory: object) -> datetime:
    """The freeze's time, without moving it: calling an auto-ticking one ticks it."""
    if type(factory).__name__ == "StepTickTimeFactory":
        return factory.time_to_freeze  # type: ignore[attr-defined, no-any-return]
    return factory()  # type: ignore[operator, no-any-return]


def frozen_now() -> tuple[object, datetime] | None:
    """freezegun's active freeze and its time (naive UTC), or None when none is active.

    freezegun gives real time to callers it finds under ``threading`` in the first few frames, so
    the cleanup thread and the test would read different clocks. Asking its factory directly gives
    every thread the test's time.
    """
    api = sys.modules.get("freezegun.api")
    factories = getattr(api, "freeze_factories", None) if api is not None else None
    if not factories:
        return None
    try:
        factory = factories[-1]
        return factory, _moment(factory)
    except (IndexError, TypeError, AttributeError):  # the freeze ended while we looked
        return None


def anchor_of(factory: object) -> Anchor | None:
    return _anchors.get(factory)


def _gain(anchor: Anchor, moment: datetime) -> float:
    # A freeze moved back counts as standing still: the clock never runs backwards.
    return anchor.gain + max(0.0, (moment - anchor.moment).total_seconds())


def _started(factory: object, outer: object | None, outer_moment: datetime | None) -> None:
    prior = _anchors.get(outer) if outer is not None else None
    if prior is None or outer_moment is None:
        anchor = Anchor(_moment(factory), Chain(_real_monotonic[0]()), 0.0)
    else:
        anchor = Anchor(_moment(factory), prior.chain, _gain(prior, outer_moment))
    _anchors[factory] = anchor


def finished() -> tuple[Chain, float, object, datetime] | None:
    """The chain whose outermost freeze ended last: the clock's gain over it by then, and the
    innermost freeze active at the end with its time then."""
    return _finished[0]


# (one tuple, replaced whole: readers on other threads need no lock)
_finished: list[tuple[Chain, float, object, datetime] | None] = [None]


def _stopped(inner: object | None, inner_moment: datetime | None, outer: object | None) -> None:
    anchor = _anchors.pop(inner, None) if inner is not None else None
    if anchor is not None and inner_moment is not None and outer is None:
        # The chain ends: a clock that last read it before a tick carries on from its end.
        _finished[0] = (anchor.chain, _gain(anchor, inner_moment), inner, inner_moment)
    if anchor is not None and inner_moment is not None and outer is not None:
        # The outer freeze resumes from where the inner one left the clock.
        _anchors[outer] = Anchor(
            _moment(outer), anchor.chain, _gain(anchor, inner_moment), (inner, inner_moment)
        )


def _top(api: Any) -> tuple[object | None, datetime | None]:
    """The innermost active freeze and its time; (None, None) when none (or freezegun changed)."""
    try:
        factory = api.freeze_factories[-1]
        return factory, _moment(factory)
    except (IndexError, TypeError, AttributeError):
        return None, None


def install() -> None:
    """Record where each freeze starts, from now on; cheap and idempotent."""
    api = sys.modules.get("freezegun.api")
    cls = getattr(api, "_freeze_time", None) if api is not None else None
    if cls is None or getattr(cls, _MARK, False):
        return
    start, stop = cls.start, cls.stop

    @functools.wraps(start)
    def recording_start(self: Any, *args: Any, **kwargs: Any) -> Any:
        outer, outer_moment = _top(api)
        factory = start(self, *args, **kwargs)
        # After start returned: freezegun has patched time.monotonic by then, so no reading of
        # the real clock given out before is later than the chain's start.
        _record(_started, factory, outer, outer_moment)
        return factory

    @functools.wraps(stop)
    def recording_stop(self: Any, *args: Any, **kwargs: Any) -> Any:
        inner, inner_moment = _top(api)
        result = stop(self, *args, **kwargs)
        _record(_stopped, inner, inner_moment, _top(api)[0])
        return result

    cls.start, cls.stop = recording_start, recording_stop
    setattr(cls, _MARK, True)


def _record(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # pragma: no cover - a freezegun we do not know: anchor at first reading
        _anchors.clear()
