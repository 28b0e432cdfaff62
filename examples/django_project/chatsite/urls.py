"""The example's one endpoint."""

from __future__ import annotations

from chat.views import chat, stats
from django.urls import path  # type: ignore[import-untyped]

urlpatterns = [path("chat", chat), path("stats", stats)]
