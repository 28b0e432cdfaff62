"""The Flask example under waitress, with SIGTERM turned into a clean shutdown.

    python examples/serve_waitress.py            # pip install waitress; PORT picks the port

waitress installs no SIGTERM handler, so a plain ``kill`` (what systemd, Docker and Kubernetes
send) ends the process without running interpreter-exit hooks: the live conversations' cleanups
would never run. Raising KeyboardInterrupt on SIGTERM makes it shut down as on Ctrl-C.
"""

from __future__ import annotations

import os
import signal

from flask_app import app
from waitress import serve  # type: ignore[import-untyped, unused-ignore]

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    serve(app, listen=f"127.0.0.1:{os.environ.get('PORT', '8080')}")
