"""How many conversations a sweep claims at a time: about as many as take ``BATCH_SECONDS``.

Bigger batches make a sweep cheaper (the work done once per batch, ~7 us, is ~25 ns per
conversation in batches of 256, a twelfth of what a conversation costs at 1M), but ``stop()``
waits for the batch in progress, and a slow ``on_expire`` (a remote call) makes a batch long.
So a batch is sized from the last one's time per conversation, between ``base // 16`` and
``base * 4`` (``base``: the manager's ``SWEEP_BATCH``, also the first batch).
"""

from __future__ import annotations

__all__ = ["BATCH_SECONDS", "next_batch"]

BATCH_SECONDS = 0.002  # what a batch aims at: claim, callables and all


def next_batch(base: int, size: int, took: float, n: int) -> int:
    """The next batch's size, after one of ``size`` that removed ``n`` in ``took`` seconds."""
    if n <= 0:
        return size  # nothing measured
    most = base * 4
    fits = BATCH_SECONDS * n / took if took > 0 else most
    return max(1, base // 16, int(min(most, fits)))
