"""WSGI entry point, for ``gunicorn chatsite.wsgi`` (each worker keeps its own conversations)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application  # type: ignore[import-untyped]

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
application = get_wsgi_application()
