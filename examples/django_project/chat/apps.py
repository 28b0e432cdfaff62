"""Connects the chat app's receiver the usual Django way, in ready()."""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped]


class ChatConfig(AppConfig):  # type: ignore[misc]
    name = "chat"

    def ready(self) -> None:
        from conversation_expiry.django import conversation_expired, get_manager

        from .history import left, log

        conversation_expired.connect(left, dispatch_uid="chat.left")
        manager = get_manager()  # built by conversation_expiry.django, listed before this app
        log.info(
            "conversations expire after %g s idle (sweep every %g s, at most %s per process)",
            manager.ttl, manager.cleanup_interval, manager.max_conversations,
        )
