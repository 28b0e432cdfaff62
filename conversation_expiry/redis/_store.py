"""RedisStore: the conversation store protocol on Redis, for managers in many processes.

Every change is one Lua script (``lua/``), decided on the server's clock (or the manager's
clock when it is not a SystemClock) guarded by a high-water mark, so the store's time never
runs backwards. Conversations leave by being claimed under a lease that this process's lease
keeper renews, then acknowledged; lapsed claims are taken over by any process's next sweep.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import NoScriptError

from .._clock import Clock, SystemClock
from .._errors import (
    ConversationExpiredError,
    ConversationNotFoundError,
    StoreUnavailableError,
)
from .._state import ConversationState, ExpiryReason
from .._store import Departures, Policy, Sweep
from .._validation import to_seconds
from . import _codec
from ._acks import Acknowledgements
from ._client import CLIENT_ERRORS, check_client, client_from_url, fail, warn_if_evictable
from ._codec import Claim, DrivenTime, decode_id, encode_id, live_state, to_us, touched_state
from ._events import Held
from ._forking import ForkHold
from ._lease import LeaseKeeper, track_store
from ._ops import OperatorViews
from ._scripts import Script, Scripts, check_namespace, key_names

__all__ = ["RedisStore"]

logger = logging.getLogger("conversation_expiry")

# Conversations per claim script, whatever the manager asks (it sweeps on while more=True): a
# claim costs ~7 us of server time per conversation, and no script may stall the server's other
# clients for 5 ms. 256 took 1.8 ms (median) and up to 4 ms on an idle 2-core host; 128 takes
# 1.0 ms, up to 2.2 ms, at the same sweep rate.
CLAIM_BATCH = 128
_NOW = b""  # the time argument that means "the server's TIME"


def _follow_arg() -> bytes:
    return b"f"  # the time argument that means "the namespace's own" (lib_clock.lua)


class RedisStore(OperatorViews):
    """Conversations of one namespace in Redis, shared by every process that uses it.

    ``lease`` (seconds): how long a claim stays this process's without renewal; its lease
    keeper renews it every ``lease / 3`` while the process lives. Eviction at
    ``max_conversations`` (which bounds the whole namespace) takes the conversation nearest its
    deadline, past-due ones first; a claim that lapsed three times is dead-lettered.
    """

    shared = True

    def __init__(
        self, client: Any, *, namespace: str = "conversation-expiry", lease: float = 30.0
    ) -> None:
        check_client(client)
        self.namespace = check_namespace(namespace)
        self.lease = to_seconds("lease", lease)
        self.prefix, keys = key_names(self.namespace)
        self.keys: list[bytes] = keys
        self._hot_keys = keys[:3]  # C, W, D: all that the request path's scripts use
        self._client = client
        self._owns_client = False
        self._scripts = Scripts(client)
        # The request path's commands up to the time argument, built once (see _hot).
        self._heads = {
            script: ("EVALSHA", script.sha, 3, *self._hot_keys)
            for script in (self._scripts.read, self._scripts.count, self._scripts.hold)
        }  # fmt: skip
        self._touch_client = self._scripts.touch.client  # the client, or a double's adapter
        # touch: C and W only, then its own arguments (touch.lua)
        self._touch_head = ("EVALSHA", self._scripts.touch.sha, 2, *keys[:2])
        self._lease_us = str(to_us(self.lease)).encode()
        # A manager's clock that is not a SystemClock, or (operators' reads) the namespace's.
        self._driven: Callable[[], bytes] | None = None
        self._policy: list[bytes] | None = None
        self._warns = b"0"
        self._held = Held()
        self._fork_hold: ForkHold | None = None
        self.maxmemory_warned = False
        self._new_owner()
        self._keeper = LeaseKeeper(self._renew, self._retry_acks, self.lease / 3)
        self._acks = Acknowledgements(self._send_acks, self._keeper)
        track_store(self)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "conversation-expiry",
        lease: float = 30.0,
        cluster: bool | None = None,
        _defer: bool = False,
        **client_kwargs: Any,
    ) -> RedisStore:
        """A store on a new client for ``url``; ``client_kwargs`` override the defaults
        (2 s socket timeouts, 1 retry with jittered exponential backoff, health checks).

        ``cluster``: True makes a ``redis.cluster.RedisCluster`` (any node's URL will do), False
        a plain client; None asks the server once (``INFO cluster``), so that a ``STORE`` URL
        naming a Cluster node works whichever node owns the namespace's slot. Asking connects:
        an unreachable server raises StoreUnavailableError here (a RedisCluster connects at
        once anyway); False makes a client that connects at its first call.
        """
        check_namespace(namespace)
        to_seconds("lease", lease)
        client = client_from_url(url, client_kwargs, cluster, defer=_defer)
        store = cls(client, namespace=namespace, lease=lease)
        store._owns_client = True
        return store

    def __repr__(self) -> str:
        return f"RedisStore(namespace={self.namespace!r}, lease={self.lease})"

    # -- plumbing ---------------------------------------------------------------------------

    def _new_owner(self) -> None:
        self.owner = os.urandom(8).hex().encode()  # 16 bytes, the claims' owner field
        self._requests = itertools.count()

    def before_fork(self, timeout: float) -> ForkHold:
        """Hold the client's locks across fork() (see ``_forking``)."""
        self._fork_hold = ForkHold(self._client, timeout)
        return self._fork_hold

    def reinit_after_fork(self) -> None:
        """In a forked child, before anything uses the client: its locks are free again."""
        hold, self._fork_hold = self._fork_hold, None
        if hold is not None:
            hold.release_in_child()

    def _after_fork_in_child(self) -> None:
        # A child is another process: its claims are its own, the parent's stay the parent's,
        # and so do the cleanups the parent attached (the parent runs them; guarantee 11).
        self._new_owner()
        self._acks.after_fork_in_child()
        self._held = Held()

    def _follow_namespace_time(self) -> None:
        """Read at the namespace's own time, whichever kind it runs on (before binding).

        For the operator commands' reads: a namespace a ManualClock drives (tests) is read at
        the time its calls last acted on, one on server time at the server's. Such a store
        only reads: the scripts refuse a change at that time (lib_clock.lua's ``now_rw``).
        """
        self._driven = _follow_arg

    def _now_arg(self) -> bytes:
        return _NOW if self._driven is None else self._driven()

    def _run(self, script: Script, args: list[Any], request: bool = False) -> Any:
        """One script with every key and (time, owner, lease, *args)."""
        keys = self.keys
        if request:  # a key for the reply, so a retried request gets the first one
            keys = [*keys, self.prefix + b"r:" + self.owner + b":%d" % next(self._requests)]
        now = _NOW if self._driven is None else self._driven()
        try:
            return script.run(
                "EVALSHA", script.sha, len(keys), *keys, now, self.owner, self._lease_us, *args
            )
        except CLIENT_ERRORS as exc:
            fail(exc, self.namespace)

    def _hot(self, script: Script, *args: bytes) -> Any:
        """One of the request path's scripts: three keys, then (time, *args)."""
        now = _NOW if self._driven is None else self._driven()
        try:
            return script.run(*self._heads[script], now, *args)
        except CLIENT_ERRORS as exc:
            fail(exc, self.namespace)

    def _policy_args(self) -> list[bytes]:
        if self._policy is None:
            raise RuntimeError("RedisStore.bind() must be called before register/ensure")
        return self._policy

    def _departures(self, blobs: list[bytes], now: bytes) -> Departures:
        deps, held = _codec.departures(blobs, now)
        if deps.claim is not None:
            self._keeper.add(deps.claim.incarnations)
            if held:
                self._held.forget(held)
        return deps

    # -- the protocol -----------------------------------------------------------------------

    def bind(self, policy: Policy, clock: Clock) -> None:
        if self._policy is not None:
            raise RuntimeError("this RedisStore is already bound to a manager")
        self._warns = b"0" if policy.warning_before is None else b"1"  # (claim.lua)
        self._policy = [
            str(to_us(policy.ttl)).encode(),
            b"0" if policy.max_age is None else str(to_us(policy.max_age)).encode(),
            b"0" if policy.warning_before is None else str(to_us(policy.warning_before)).encode(),
            str(policy.max_conversations or 0).encode(),
        ]
        if self._driven is _follow_arg:
            pass  # (reads at the namespace's own time: see _follow_namespace_time)
        elif not isinstance(clock, SystemClock):
            self._driven = DrivenTime(clock)  # a ManualClock (tests) drives the store's time
        # A namespace on the other kind of time is refused here rather than at first use (if
        # Redis is down now, every script checks it again).
        with contextlib.suppress(StoreUnavailableError):
            self.count()
        self.maxmemory_warned = warn_if_evictable(self._client, self.prefix)

    def register(
        self, cid: str, ttl: float | None, metadata: str | None
    ) -> tuple[ConversationState, Departures]:
        pol = self._policy_args()
        md = [b"0", b""] if metadata is None else [b"1", metadata.encode("utf-8", "surrogatepass")]
        ttl_arg = b"" if ttl is None else str(to_us(ttl)).encode()
        args = [encode_id(cid), b"r", b"1", ttl_arg, *pol, *md]
        _started, raw, now, blobs = self._run(self._scripts.start, args, request=True)
        return live_state(cid, raw), self._departures(blobs, now)

    def ensure(self, cid: str, extend: bool) -> tuple[ConversationState, bool, Departures]:
        pol = self._policy_args()
        args = [encode_id(cid), b"e", b"1" if extend else b"0", b"", *pol, b"0", b""]
        started, raw, now, blobs = self._run(self._scripts.start, args, request=True)
        return live_state(cid, raw), bool(started), self._departures(blobs, now)

    def touch(self, cid: str, extend: bool) -> ConversationState:
        # Written out (no _hot, no Script.run): this is update_activity, the call an application
        # makes most, and every Python step and every argument on its way costs (issue 10: at
        # most 1.3x a bare EVALSHA); the usual call sends only the id. The client's method is
        # looked up at each call, not kept: instrumentation may wrap it later.
        args: tuple[bytes, ...] = (cid.encode("utf-8", "surrogatepass"),)
        if self._driven is not None:
            args += (b"1" if extend else b"0", self._driven())
        elif not extend:
            args += (b"0",)
        try:
            reply = self._touch_client.execute_command(*self._touch_head, *args)
        except NoScriptError:  # the server lost its scripts (a restart, a failover): load it
            reply = self._rerun(self._scripts.touch, (*self._touch_head, *args))
        except CLIENT_ERRORS as exc:
            fail(exc, self.namespace)
        if type(reply) is bytes:
            return touched_state(cid, reply)
        if reply == 0:
            raise ConversationNotFoundError(cid)
        raise ConversationExpiredError(cid)

    def _rerun(self, script: Script, command: tuple[Any, ...]) -> Any:
        try:
            return script.run(*command)  # loads the script when the server still lacks it
        except CLIENT_ERRORS as exc:
            fail(exc, self.namespace)

    def get(self, cid: str) -> ConversationState | None:
        reply = self._hot(self._scripts.read, encode_id(cid))
        return live_state(cid, reply[0]) if reply else None

    def is_live(self, cid: str) -> bool:
        return bool(self._hot(self._scripts.read, encode_id(cid)))

    def count(self) -> int:
        while True:  # each call puts right a bounded number of deadline indexes (lib_due.lua)
            reply = self._hot(self._scripts.count)
            if reply[0]:
                return int(reply[1])

    def hold(self, cid: str) -> int:
        held: int | None = None
        self._held.begin_hold()  # (first: a read meanwhile must not stop reading the stream)
        try:
            self._held.start_reading(self._run, self._scripts.events)
            inc = int(self._hot(self._scripts.hold, encode_id(cid)))
            if inc == -1:
                raise ConversationNotFoundError(cid)
            if inc == -2:
                raise ConversationExpiredError(cid)
            held = inc
        finally:
            self._held.end_hold(held, cid)
        return inc

    def end(self, cid: str) -> Departures:
        now, blobs = self._run(self._scripts.end, [encode_id(cid)], request=True)
        return self._departures(blobs, now)

    def claim(self, limit: int) -> Sweep:
        if self._acks.unsent:
            # Claims of this process that it finished during an outage go first: once their
            # lease has lapsed, this very claim would take them over and run them again.
            self._acks.retry()
        if self._keeper.outstanding:
            # Claims this process still works on are renewed first, so that this claim never
            # takes them over: their lease may have lapsed on a ManualClock moved past it, or
            # while the keeper waited for the GIL.
            self._keeper.renew_now()
        now, more, next_warning, blobs, warned, dead = self._run(
            self._scripts.claim, [min(limit, CLAIM_BATCH), self._warns]
        )
        deps = self._departures(blobs, now)
        warned_states = [
            live_state(decode_id(warned[n]), warned[n + 1]) for n in range(0, len(warned), 2)
        ]
        for blob in dead:
            gone = _codec.decode_claimed(blob)
            logger.error(
                "conversation %r (incarnation %d): its claim lapsed %d times (its cleanup keeps "
                "taking processes down?); moved to the dead-letter set %r, not taken over again",
                gone.state[0], gone.incarnation, gone.lapses, (self.prefix + b"x").decode(),
            )
        wait = float(next_warning) / 1e6 if next_warning else None
        return Sweep(deps, warned_states, bool(more), wait)

    def ack(self, departures: Departures) -> None:
        if isinstance(departures.claim, Claim):
            self._acks.ack(departures.claim)

    @property
    def late_acks(self) -> int:
        """This process's acknowledgements that came after another process took the claim."""
        return self._acks.late

    def _send_acks(self, incarnations: list[bytes]) -> int:
        return int(self._run(self._scripts.ack, incarnations))

    def _retry_acks(self) -> None:  # (the keeper's: it is made before the acknowledgements)
        self._acks.retry()

    def _renew(self, incarnations: list[bytes]) -> list[bytes]:
        return list(self._run(self._scripts.renew, incarnations))

    def drain(self, limit: int) -> Departures:
        # Other processes still serve every conversation: nothing leaves at this one's shutdown.
        now = self._driven() if isinstance(self._driven, DrivenTime) else time.time() * 1e6
        return Departures([], [], {}, float(now) / 1e6)

    def left_elsewhere(self) -> list[tuple[str, int, ExpiryReason]]:
        return self._held.left_elsewhere(
            self._run, self._scripts.events, self._scripts.gone, self.owner
        )

    def close(self) -> None:
        self._keeper.close(timeout=5.0)
        self._acks.flush_at_close()
        if self._owns_client:
            self._client.close()
