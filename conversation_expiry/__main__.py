"""Entry point: ``python -m conversation_expiry demo``."""

from __future__ import annotations

import sys

from ._demo import main

if __name__ == "__main__":
    sys.exit(main())
