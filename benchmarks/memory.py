"""Bytes held per live conversation, measured with ``tracemalloc``.

The ids are built before tracing starts, so they are not counted: what is left is what the
implementation allocates to track them (its map, entries, timestamps, lock, everything it keeps).
Implementations are measured one at a time; memory needs no interleaving.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Sequence

from .adapters import Adapter, populate

__all__ = ["bytes_per_conversation"]


def bytes_per_conversation(
    factories: Sequence[Callable[[], Adapter]], ids: Sequence[str]
) -> dict[str, float]:
    return dict(_measure(make, ids) for make in factories)


def _measure(make: Callable[[], Adapter], ids: Sequence[str]) -> tuple[str, float]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        adapter = make()
        populate(adapter, ids)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    adapter.close()
    name = adapter.name
    del adapter
    gc.collect()
    return name, held / len(ids)
