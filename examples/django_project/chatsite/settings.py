"""Settings of the example project: no database, the conversation expiry app and middleware.

``CHAT_TTL`` (seconds, default 30), ``CHAT_CLEANUP_INTERVAL`` (5), ``CHAT_MAX_CONVERSATIONS``
(1000 per process), ``CHAT_STORE`` (a ``redis://`` URL shared by all workers) and
``CHAT_NAMESPACE`` (its key namespace) come from the environment, so a short TTL needs no
settings module of its own.
"""

from __future__ import annotations

import os

SECRET_KEY = "example-only-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
TIME_ZONE = "UTC"
DATABASES: dict[str, object] = {}
ROOT_URLCONF = "chatsite.urls"

INSTALLED_APPS = [
    "conversation_expiry.django",
    "chat",
]
MIDDLEWARE = ["conversation_expiry.django.ConversationExpiryMiddleware"]

CONVERSATION_EXPIRY: dict[str, object] = {
    # Seconds idle before a conversation expires: short, to watch it happen.
    "TTL": float(os.environ.get("CHAT_TTL", "30")),
    "CLEANUP_INTERVAL": float(os.environ.get("CHAT_CLEANUP_INTERVAL", "5")),
    # Ids come from clients: bound how many conversations one process keeps.
    "MAX_CONVERSATIONS": int(os.environ.get("CHAT_MAX_CONVERSATIONS", "1000")),
}
if os.environ.get("CHAT_STORE"):
    CONVERSATION_EXPIRY["STORE"] = os.environ["CHAT_STORE"]
if os.environ.get("CHAT_NAMESPACE"):
    CONVERSATION_EXPIRY["NAMESPACE"] = os.environ["CHAT_NAMESPACE"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s [%(process)d] %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "chat": {"handlers": ["console"], "level": "INFO"},
        "conversation_expiry": {"handlers": ["console"], "level": "INFO"},
    },
}
