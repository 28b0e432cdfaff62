"""Where Django looks for the app config when ``INSTALLED_APPS`` names the package."""

from __future__ import annotations

from . import ConversationExpiryConfig

__all__ = ["ConversationExpiryConfig"]
