"""``python -m conversation_expiry stats | inspect | sweep``: operator commands for a Redis store.

Each command builds a :class:`RedisStore` from ``--redis URL`` and ``--namespace NS`` and a
manager on it with no cleanup thread, does one thing and exits. Exit status: 0 done, 1
``inspect`` of a conversation that is not live, 2 a usage error, a bad URL, an unreachable
server or a bad ``--on-expire`` hook (one line on stderr, no traceback: operators run these from
cron and shells, where a traceback buries the one line that matters).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from ._errors import ConversationExpiryError, StoreUnavailableError
from ._operator_text import (
    one_line,
    print_json,
    redacted,
    rfc3339,
    scrubbed,
    show,
    state_fields,
)

if TYPE_CHECKING:
    from ._manager import ConversationExpiryManager

__all__ = ["NEXT_DEADLINES", "main"]

PROG = "python -m conversation_expiry"
# How many upcoming deadlines ``stats`` shows: enough to see what the next sweeps will do.
NEXT_DEADLINES = 10
# The manager's ttl and interval only matter for registrations and its thread, and the commands
# register nothing and start no thread: claims use the deadlines stored in Redis.
_TTL = 60.0
_INTERVAL = 60.0

OnExpire = Callable[..., object]


class _Failure(Exception):
    """A failure reported as one line on stderr with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so ``main`` returns the status."""

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            self._print_message(message, sys.stderr)
        raise _Exit(status)


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Operator commands for conversations kept in a shared Redis store.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=description)
        sub.add_argument("--redis", required=True, metavar="URL",
                         help="the store's server: redis://[[user]:password@]host[:port][/db], "
                         "rediss://... for TLS, or unix:///path/to/socket")
        sub.add_argument("--namespace", required=True, metavar="NS",
                         help="the store's namespace, as given to RedisStore(namespace=...)")
        sub.add_argument("--json", action="store_true",
                         help="print one JSON object on stdout instead of text")
        return sub

    command(
        "stats",
        "live count and the next deadlines",
        "Print how many conversations are live, the store's counters (claimed, dead, "
        f"late_acks, ...) and the next {NEXT_DEADLINES} deadlines. With --json: an object with "
        '"live", "next_deadlines" (a list of {"id", "expires_at"}, RFC 3339 UTC) and every '
        "counter the store reports.",
    )
    inspect = command(
        "inspect",
        "one conversation's state",
        "Print the state of one conversation: times in RFC 3339 UTC, its metadata. Exit "
        "status 1 if it is not live (unknown, ended, or past its deadline).",
    )
    inspect.add_argument("cid", metavar="CID",
                         help="the conversation id (put -- before an id that starts with -)")
    sweep = command(
        "sweep",
        "one sweep now (for cleanup from cron)",
        "Claim every conversation past its deadline, run the --on-expire hook for each "
        "(state, reason) and acknowledge them: what a manager's cleanup thread does, once, for "
        "deployments that run cleanup from cron instead of a thread. A hook that raises is "
        "logged and counts as done. With --json: an object with \"expired\" (a list of ids).",
    )
    sweep.add_argument("--on-expire", metavar="MODULE:FUNC", dest="on_expire",
                       help="the hook to run for each expired conversation, called as "
                       "FUNC(state, reason); MODULE is imported with the current directory on "
                       "the path")
    return parser


def main(argv: list[str]) -> int:
    """Run one operator command; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except _Exit as done:
        return done.status
    out = sys.stdout
    try:
        with _logging_to_stderr():
            if args.command == "stats":
                return _stats(args, out)
            if args.command == "inspect":
                return _inspect(args, out)
            return _sweep(args, out)
    except _Failure as failure:
        _error(str(failure))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


# -- the commands -------------------------------------------------------------------------------


def _stats(args: argparse.Namespace, out: TextIO) -> int:
    with _connected(args, reads=True) as (store, _manager):
        counters = _call(args, store.stats)
        deadlines = _call(args, lambda: store.next_deadlines(NEXT_DEADLINES))
    upcoming = [{"id": cid, "expires_at": rfc3339(at)} for cid, at in deadlines]
    if args.json:
        report: dict[str, Any] = {k: int(v) for k, v in counters.items()}
        report["live"] = int(counters.get("live", 0))
        report["next_deadlines"] = upcoming
        print_json(report, out)
        return 0
    width = max(len(k) for k in ("live", *counters))
    print(f"{'live':<{width}}  {int(counters.get('live', 0))}", file=out)
    for key, value in counters.items():
        if key != "live":
            print(f"{key:<{width}}  {int(value)}", file=out)
    if upcoming:
        print("next deadlines:", file=out)
        for entry in upcoming:
            print(f"  {entry['expires_at']}  {show(entry['id'])}", file=out)
    else:
        print("next deadlines: none", file=out)
    return 0


def _inspect(args: argparse.Namespace, out: TextIO) -> int:
    with _connected(args, reads=True) as (_store, manager):
        try:
            state = _call(args, lambda: manager.get(args.cid))
        except (TypeError, ValueError) as exc:
            raise _Failure(str(exc)) from None
    if state is None:
        _error(f"conversation {show(args.cid)} is not live in namespace {args.namespace!r}")
        return 1
    fields = state_fields(state)
    if args.json:
        print_json(fields, out)
        return 0
    width = max(map(len, fields))
    for key, value in fields.items():
        if key == "id":
            shown = show(value)
        elif isinstance(value, str):
            shown = value  # a time
        else:
            shown = json.dumps(value)  # (metadata: ASCII, as in print_json)
        print(f"{key + ':':<{width + 1}} {shown}", file=out)
    return 0


def _sweep(args: argparse.Namespace, out: TextIO) -> int:
    hook = resolve_hook(args.on_expire) if args.on_expire else None
    with _connected(args, on_expire=hook) as (_store, manager):
        expired = _call(args, manager.cleanup_expired)
    if args.json:
        print_json({"expired": expired}, out)
        return 0
    print(f"expired {len(expired)} conversation{'' if len(expired) == 1 else 's'}", file=out)
    for cid in expired:
        print(f"  {show(cid)}", file=out)
    return 0


# -- helpers ------------------------------------------------------------------------------------


def resolve_hook(spec: str) -> OnExpire:
    """The callable named by ``MODULE:FUNC`` (FUNC may be dotted); ``_Failure`` if it is not."""
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise _Failure(f"--on-expire must be MODULE:FUNC, got {spec!r}")
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)  # as `python -m` does, so a hook next to the crontab imports
    try:
        target: Any = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # the import's error is the hook's, and is reported
        what = f"exits ({exc.code!r})" if isinstance(exc, SystemExit) else one_line(exc)
        raise _Failure(f"--on-expire {spec}: cannot import {module_name!r}: {what}") from None
    finally:
        if added:
            sys.path.remove(cwd)
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise _Failure(f"--on-expire {spec}: {module_name!r} has no attribute "
                           f"{qualname!r}") from None
    if not callable(target):
        raise _Failure(f"--on-expire {spec}: {qualname!r} is not callable")
    return target  # type: ignore[no-any-return]


@contextmanager
def _connected(
    args: argparse.Namespace, on_expire: OnExpire | None = None, reads: bool = False
) -> Iterator[tuple[Any, ConversationExpiryManager]]:
    """A store on ``--redis`` / ``--namespace`` and a threadless manager on it; closed after."""
    try:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from .redis import RedisStore
    except ImportError as exc:
        raise _Failure(f"the Redis store needs redis-py: pip install "
                       f"'conversation-expiry[redis]' ({one_line(exc)})") from None
    from ._manager import ConversationExpiryManager

    # No retries: a command that cannot reach Redis says so within a few seconds (2 s socket
    # timeouts); cron runs the next one. from_url asks the server whether it is a Cluster node.
    once = Retry(NoBackoff(), 0)
    try:
        store = _call(args, lambda: RedisStore.from_url(
            args.redis, namespace=args.namespace, retry=once
        ))
    except (ValueError, TypeError) as exc:  # the message names the bad --redis or --namespace
        raise _Failure(scrubbed(one_line(exc), args.redis)) from None
    if reads:  # stats and inspect: also a namespace a test's ManualClock drives
        store._follow_namespace_time()
    try:
        manager = _call(args, lambda: ConversationExpiryManager(
            _TTL, _INTERVAL, store=store, on_expire=on_expire, autostart=False
        ))
        try:
            yield store, manager
        finally:
            manager.stop()  # never removes anything from a shared store (guarantee 13)
    finally:
        store.close()


def _call(args: argparse.Namespace, fn: Callable[[], Any]) -> Any:
    """``fn()``, with the store's failures turned into one-line ``_Failure``s."""
    try:
        return fn()
    except StoreUnavailableError as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise _Failure(f"cannot reach Redis at {redacted(args.redis)}: "
                       f"{scrubbed(one_line(cause), args.redis)}") from None
    except (ConversationExpiryError, ValueError) as exc:  # ValueError: a namespace on driven time
        raise _Failure(scrubbed(one_line(exc), args.redis)) from None
    except Exception as exc:
        # redis-py errors the store did not wrap (a wrong server), by module so that this
        # module stays importable without redis-py.
        if not type(exc).__module__.startswith("redis"):
            raise
        from redis import exceptions as rx

        if isinstance(exc, (rx.ConnectionError, rx.TimeoutError)):
            raise _Failure(f"cannot reach Redis at {redacted(args.redis)}: "
                           f"{scrubbed(one_line(exc), args.redis)}") from None
        raise _Failure(f"Redis at {redacted(args.redis)}: {type(exc).__name__}: "
                       f"{scrubbed(one_line(exc), args.redis)}") from None


@contextmanager
def _logging_to_stderr() -> Iterator[None]:
    """Show the library's warnings and hook errors on stderr when nobody configured logging.

    In a process that set up logging (an app calling ``main``, pytest) its handlers decide.
    """
    logger = logging.getLogger("conversation_expiry")
    if logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover - the package's __main__ is the entry point
    sys.exit(main(sys.argv[1:]))
