"""WSGI entry point for gunicorn, from the repository root:

    gunicorn --chdir examples/django_project --workers 1 --threads 8 \\
        --bind 127.0.0.1:8000 chatsite.wsgi

Each worker process keeps its own conversations unless ``CHAT_STORE`` names a shared store.
The log (stderr) shows each conversation that leaves and the freeing of its history.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application  # type: ignore[import-untyped]

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
application = get_wsgi_application()
