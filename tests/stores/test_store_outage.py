"""The cleanup thread through a store outage: it survives, backs off, logs start and end once."""

from __future__ import annotations

import logging
import threading

import pytest
from support import WAIT

from conversation_expiry import ConversationExpiryManager, MemoryStore, StoreUnavailableError
from conversation_expiry._store import Sweep
from conversation_expiry._worker import _Failures


class DownStore(MemoryStore):
    """Unreachable for its first ``failures`` claims."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.claims = 0
        self.recovered = threading.Event()

    def claim(self, limit: int) -> Sweep:
        self.claims += 1
        if self.claims <= self.failures:
            raise StoreUnavailableError("down") from ConnectionError("refused")
        self.recovered.set()
        return super().claim(limit)


def test_the_thread_survives_an_outage_and_logs_its_start_and_end_once(clock, caplog):
    store = DownStore(failures=6)
    expired = threading.Event()
    with caplog.at_level(logging.WARNING, logger="conversation_expiry"):
        m = ConversationExpiryManager(
            1, 0.001, clock=clock, store=store, on_expire=lambda s, r: expired.set()
        )
        try:
            m.register_conversation("a")
            clock.advance(2)
            assert store.recovered.wait(WAIT) and expired.wait(WAIT)
            assert m.running
        finally:
            m.stop(timeout=WAIT)
    records = [r for r in caplog.records if r.name == "conversation_expiry"]
    (down,) = [r for r in records if "store unavailable" in r.getMessage()]
    (back,) = [r for r in records if "sweep works again" in r.getMessage()]
    assert down.levelname == "WARNING" and down.exc_info is None  # an outage, not a traceback
    assert "ConnectionError: refused" in down.getMessage()
    assert "6 failed sweeps" in back.getMessage()


def test_backoff_doubles_from_the_interval_up_to_a_cap_and_resets_after_recovery():
    failures = _Failures(0.5)
    waits = [failures.failed(StoreUnavailableError("down")) for _ in range(10)]
    assert 0.4 <= waits[0] <= 0.5 and 0.8 <= waits[1] <= 1.0 and 1.6 <= waits[2] <= 2.0
    assert max(waits) <= 30.0 and waits[-1] >= 24.0
    failures.succeeded()
    assert failures.count == 0 and failures.failed(StoreUnavailableError("down")) <= 0.5


def test_backoff_never_waits_less_than_a_long_interval():
    failures = _Failures(120.0)
    assert all(96.0 <= failures.failed(RuntimeError()) <= 120.0 for _ in range(5))


@pytest.mark.parametrize("call", ["cleanup_expired"])
def test_a_synchronous_sweep_raises_the_outage_to_its_caller(clock, call):
    store = DownStore(failures=1)
    m = ConversationExpiryManager(1, 3600, clock=clock, store=store, autostart=False)
    with pytest.raises(StoreUnavailableError) as info:
        getattr(m, call)()
    assert isinstance(info.value.__cause__, ConnectionError)
    assert getattr(m, call)() == []
