"""The operator commands' text: times, states and ids as printed, errors on one line, URLs masked.

Apart from the commands (``_operator``) because what an operator reads, and what it must never
read (a password quoted back by a client's error), is a concern of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ._state import ConversationState

__all__ = [
    "one_line",
    "print_json",
    "redacted",
    "rfc3339",
    "scrubbed",
    "show",
    "state_fields",
]

_UTC = timezone.utc


def rfc3339(at: datetime) -> str:
    """``at`` in UTC as RFC 3339 with microseconds and a ``Z``: one fixed shape for scripts."""
    if at.utcoffset() is None:
        at = at.replace(tzinfo=_UTC)  # the library's times are UTC; never guess a local zone
    return at.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def state_fields(state: ConversationState) -> dict[str, Any]:
    """The fields of ``state`` as JSON values: times RFC 3339 UTC, metadata a plain dict."""
    fields: dict[str, Any] = {}
    for key, value in state.to_dict().items():
        fields[key] = rfc3339(value) if isinstance(value, datetime) else value
    fields["metadata"] = plain(getattr(state, "metadata", None) or {})
    return fields


def print_json(value: object, out: TextIO) -> None:
    # ASCII: any id is a valid store key, a lone surrogate included, which no UTF-8 stream can
    # write raw (the sweep would be done and its report lost); escaped, json.loads gives it back.
    print(json.dumps(value), file=out)


def plain(value: object) -> object:
    """Read-only mappings (and what they hold) as dicts and lists, for ``json.dumps``."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def show(text: str) -> str:
    """``text`` as is when printable, else as a JSON string: an id must not break a line."""
    return text if text.isprintable() and text.strip() == text and text else json.dumps(text)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def password_of(url: str) -> str | None:
    """The password in ``url``, also when the URL does not parse (it is still masked)."""
    try:
        return urlsplit(url).password
    except ValueError:
        found = re.match(r"[^:/]+://[^:@/]*:([^@/]*)@", url)
        return found.group(1) if found else None


def redacted(url: str) -> str:
    """``url`` without its password, fit for an error message."""
    return scrubbed(url, url)


def scrubbed(text: str, url: str) -> str:
    """``text`` with the password of ``url`` masked, wherever a message quoted it.

    Bare occurrences are masked too (a client's message may quote it alone), unless it is so
    short that masking would garble the host and port more than it hides.
    """
    password = password_of(url)
    if not password:
        return text
    text = text.replace(f":{password}@", ":***@")
    return text.replace(password, "***") if len(password) >= 4 else text
