"""Connects the chat app's receiver the usual Django way, in ready()."""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped]


class ChatConfig(AppConfig):  # type: ignore[misc]
    name = "chat"

    def ready(self) -> None:
        from conversation_expiry.django import conversation_expired

        from .history import forget

        conversation_expired.connect(forget, dispatch_uid="chat.forget")
