"""The chat endpoint: the middleware has already touched the conversation the header names."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponseNotAllowed, JsonResponse  # type: ignore[import-untyped]

from conversation_expiry.django import get_manager

from . import history


def chat(request: Any) -> Any:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    state = request.conversation
    if state is None:
        return JsonResponse(
            {"error": "name your conversation in an X-Conversation-ID header"}, status=400
        )
    messages = history.history_of(state)
    text = request.body.decode("utf-8", "replace")[:500]
    messages.append(text)
    return JsonResponse(
        {
            "conversation": state.id,
            "new": request.conversation_started,
            "turn": len(messages),
            "reply": f"you said {text!r}",
            "expires_at": state.expires_at.isoformat(),
        }
    )


def stats(request: Any) -> Any:
    return JsonResponse({"live_conversations": len(get_manager()), "histories": history.count()})
