"""Child processes for the multi-process Redis tests: one manager each, and what it saw.

A child is started with the ``spawn`` context (a fresh interpreter, as a gunicorn worker on
another host would be) and imports the library only after it has applied its clock skew, so the
skew reaches every module that reads the wall clock. Whatever its callbacks see goes to a JSON
lines file, one flushed line per event, so the parent can read it while the child runs, after it
was SIGKILLed, and after it exited.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event, Semaphore
from typing import Any

__all__ = ["Recorder", "apply_skew", "run_agent", "run_churn"]

_REAL_TIME = time.time  # kept before any skew: every record is stamped with real time
_HOOK_BLOCK_LIMIT = 60.0  # a blocked hook gives up after this, so no child outlives its test


def apply_skew(seconds: float) -> None:
    """Move this process's wall clock ``seconds`` ahead: ``time.time`` and ``datetime.now``.

    Only wall-clock readers are moved; ``time.monotonic`` keeps running, as on a host whose
    clock is set wrong.
    """
    if not seconds:
        return
    import datetime as dt

    real, real_ns = time.time, time.time_ns
    time.time = lambda: real() + seconds
    time.time_ns = lambda: real_ns() + int(seconds * 1e9)
    shift = dt.timedelta(seconds=seconds)

    class SkewedDatetime(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Any:
            return super().now(tz) + shift

        @classmethod
        def utcnow(cls) -> Any:
            return super().utcnow() + shift

        @classmethod
        def today(cls) -> Any:
            return super().today() + shift

    dt.datetime = SkewedDatetime  # type: ignore[misc]


class Recorder:
    """Appends one JSON object per event to a file, flushed at once; safe from any thread."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self.pid = os.getpid()

    def write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"e": event, "pid": self.pid, "t": _REAL_TIME(), **fields})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


def read_records(path: str) -> list[dict[str, Any]]:
    """Every complete line of a recorder's file (a killed child may leave half a line)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        if line:
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out


def _store(config: dict[str, Any]) -> Any:
    from conversation_expiry.redis import RedisStore

    return RedisStore.from_url(
        config["url"], namespace=config["namespace"], lease=config.get("lease", 30.0)
    )


def _state_fields(state: Any) -> dict[str, Any]:
    return {"id": state.id, "created": state.created_at.isoformat()}


def _hook(config: dict[str, Any], rec: Recorder) -> Callable[[Any, Any], None]:
    release = config.get("release")

    def on_expire(state: Any, reason: Any) -> None:
        rec.write("expire", reason=str(reason), **_state_fields(state))
        if config.get("hook") == "block":
            deadline = time.monotonic() + _HOOK_BLOCK_LIMIT
            while not (release and os.path.exists(release)) and time.monotonic() < deadline:
                time.sleep(0.01)  # a poll for the release file, bounded
            rec.write("released", id=state.id)

    return on_expire


def run_agent(config: dict[str, Any], conn: Connection) -> None:
    """Serve the parent's commands on ``conn`` with one manager, until ``quit`` or EOF.

    ``config``: url, namespace, lease, ttl, interval, autostart, records (path), hook
    ("record" or "block"), release (path whose existence lets a blocked hook return), skew.
    """
    apply_skew(config.get("skew", 0.0))
    from conversation_expiry import ConversationExpiryManager

    rec = Recorder(config["records"])
    store = _store(config)
    manager = ConversationExpiryManager(
        config.get("ttl", 30.0),
        config.get("interval", 0.1),
        store=store,
        on_expire=_hook(config, rec),
        autostart=config.get("autostart", True),
    )

    def cleanup(cid: str, tag: str) -> Callable[[], None]:
        return lambda: rec.write("cleanup", id=cid, tag=tag)

    commands: dict[str, Callable[..., Any]] = {
        "register": lambda cid, ttl=None: _state_fields(
            manager.register_conversation(cid, ttl=ttl)
        ),
        "update": lambda cid: _state_fields(manager.update_activity(cid)),
        "add_cleanup": lambda cid, tag: manager.add_cleanup(cid, cleanup(cid, tag)),
        "end": manager.end_conversation,
        "sweep": manager.cleanup_expired,
        # A sweep on a thread of its own, for a hook that blocks: the pipe stays answered.
        "sweep_async": lambda: threading.Thread(target=manager.cleanup_expired, daemon=True)
        .start(),
        "get": lambda cid: (lambda s: None if s is None else _state_fields(s))(manager.get(cid)),
        "stats": lambda: store.stats(),
        "stop": lambda cleanup_remaining=False: manager.stop(
            5.0, cleanup_remaining=cleanup_remaining
        ),
        "now": lambda: time.time(),
        "pid": os.getpid,
    }
    conn.send(("ready", os.getpid()))
    try:
        while True:
            try:
                name, args = conn.recv()
            except EOFError:
                return
            if name == "quit":
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", commands[name](*args)))
            except Exception as exc:
                conn.send(("error", type(exc).__name__, str(exc)))
    finally:
        manager.stop(5.0)
        store.close()


def run_churn(config: dict[str, Any], ready: Semaphore, go: Event, done: Event) -> None:
    """Random activity on a shared set of ids for a while, then keep sweeping until told to end.

    ``config``: url, namespace, lease, ttl, interval, ids (count), mine (index, of ``workers``),
    seconds, seed, out (path for the records, written at the end as one JSON object).
    Releases ``ready`` once it registered its share of the ids, starts on ``go``.

    Records are kept in memory while the clock runs (a write per call would slow the churn
    down); each activity is stamped with the real time *before* the call, the earliest the
    store can have taken it, so "expired at least ttl after its last activity" is checked
    conservatively.
    """
    import random

    from conversation_expiry import (
        ConversationExpiredError,
        ConversationExpiryManager,
        ConversationNotFoundError,
    )

    rng = random.Random(config["seed"])
    ttl = config["ttl"]
    ids = [f"churn-{i:05d}" for i in range(config["ids"])]
    activity: list[tuple[str, str, float]] = []  # (id, created, started at)
    expired: list[tuple[str, str, str, float]] = []  # (id, created, reason, at)
    lock = threading.Lock()

    def on_expire(state: Any, reason: Any) -> None:
        at = _REAL_TIME()
        with lock:
            expired.append((state.id, state.created_at.isoformat(), str(reason), at))

    store = _store(config)
    manager = ConversationExpiryManager(
        ttl, config["interval"], store=store, on_expire=on_expire, autostart=True
    )
    errors: list[str] = []
    try:
        mine = [cid for i, cid in enumerate(ids) if i % config["workers"] == config["mine"]]
        for cid in mine:
            t = _REAL_TIME()
            state = manager.register_conversation(cid)
            activity.append((cid, state.created_at.isoformat(), t))
        ready.release()
        if not go.wait(60):
            raise RuntimeError("no go signal")
        end = time.monotonic() + config["seconds"]
        while time.monotonic() < end:
            cid = rng.choice(ids)
            t = _REAL_TIME()
            try:
                if rng.random() < 0.3:
                    state = manager.register_conversation(cid)
                else:
                    state = manager.update_activity(cid)
            except (ConversationExpiredError, ConversationNotFoundError):
                continue
            activity.append((cid, state.created_at.isoformat(), t))
        # Quiet now: every conversation expires within ttl; the managers' threads sweep them.
        done.wait(ttl + 30)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        manager.stop(10.0)
        store.close()
        with lock, open(config["out"], "w", encoding="utf-8") as f:
            json.dump({"activity": activity, "expired": expired, "errors": errors}, f)
