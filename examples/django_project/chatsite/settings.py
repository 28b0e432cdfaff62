"""Settings of the example project: no database, the conversation expiry app and middleware."""

from __future__ import annotations

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

CONVERSATION_EXPIRY = {
    "TTL": 30,  # seconds idle before a conversation expires: short, to watch it happen
    "CLEANUP_INTERVAL": 5,
    # Ids come from clients: bound how many conversations one process keeps.
    "MAX_CONVERSATIONS": 1000,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "chat": {"handlers": ["console"], "level": "INFO"},
        "conversation_expiry": {"handlers": ["console"], "level": "INFO"},
    },
}
