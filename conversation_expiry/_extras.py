"""The error an integration raises when the package of its extra is missing or too old."""

from __future__ import annotations

__all__ = ["missing_extra"]


def missing_extra(extra: str, needs: str, exc: ImportError) -> ImportError:
    """An ImportError naming the extra to install (raise it ``from exc``)."""
    return ImportError(
        f"conversation_expiry.{extra} needs {needs}: pip install 'conversation-expiry[{extra}]' "
        f"({exc})"
    )
