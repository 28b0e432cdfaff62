#!/usr/bin/env python
"""The Django example's manage.py: ``python examples/django_project/manage.py runserver``."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    from django.core.management import execute_from_command_line  # type: ignore[import-untyped]

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
