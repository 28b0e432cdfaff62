"""Entry point: ``python -m conversation_expiry demo|stats|inspect|sweep``.

``demo`` runs here; the operator commands (``stats``, ``inspect``, ``sweep``) are handed, with
their arguments, to ``conversation_expiry._operator.main``, imported only when asked for: they
need a shared store and its client, which the demo does not.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import _demo

__all__ = ["OPERATOR_COMMANDS", "main"]

OPERATOR_COMMANDS = {
    "stats": "live count and the next deadlines of a shared store",
    "inspect": "one conversation's state in a shared store",
    "sweep": "one sweep of a shared store now, e.g. from cron",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conversation_expiry",
        description="Expire idle conversations and release what they hold, exactly once.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _demo.add_parser(commands)
    for name, summary in OPERATOR_COMMANDS.items():
        # Listed for --help only: main() hands these to the operator module before parsing.
        commands.add_parser(name, help=f"{summary} (python -m conversation_expiry {name} --help)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names (default: ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in OPERATOR_COMMANDS:
        return _run_operator(args)
    return _demo.run_demo(_parser().parse_args(args))


def _run_operator(argv: list[str]) -> int:
    try:
        from . import _operator  # type: ignore[attr-defined, unused-ignore]
    except ImportError as exc:
        print(
            f"python -m conversation_expiry {argv[0]}: the operator commands are not available "
            f"({exc})",
            file=sys.stderr,
        )
        return 2
    status: int = _operator.main(argv)
    return status


if __name__ == "__main__":
    sys.exit(main())
