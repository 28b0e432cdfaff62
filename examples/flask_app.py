"""A Flask chat endpoint whose conversations expire after 30 idle seconds.

Run it from the repository root (after ``python3 dev.py demo`` or ``pip install -e ".[flask]"``),
under gunicorn (``pip install gunicorn``):

    gunicorn --chdir examples --workers 1 --threads 8 --bind 127.0.0.1:5000 flask_app:app

or Flask's development server: ``python examples/flask_app.py`` (``PORT`` picks the port).
Then talk to it; the header names the conversation:

    curl -X POST -H 'X-Conversation-ID: alice' -d 'hello' http://127.0.0.1:5000/chat
    curl -X POST -H 'X-Conversation-ID: alice' -d 'again' http://127.0.0.1:5000/chat

Wait 30 seconds: the log (stderr) says alice's conversation expired and its history was freed,
and the next message starts a fresh one (``"new": true``). A bad id (``-H 'X-Conversation-ID:
a b'``) gets 400 with a JSON body. Environment variables set the expiry without editing code:
``CHAT_TTL`` (seconds, default 30), ``CHAT_CLEANUP_INTERVAL`` (5), ``CHAT_MAX_CONVERSATIONS``
(1000 per process), ``CHAT_STORE`` (a ``redis://`` URL to share conversations between workers)
and ``CHAT_NAMESPACE`` (its key namespace).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flask import Flask, g, jsonify, request
from flask.typing import ResponseReturnValue

from conversation_expiry import ConversationNotFoundError, ConversationState, ExpiryReason
from conversation_expiry.flask import ConversationExpiry, current_conversation, current_manager

log = logging.getLogger("chat")


def settings_from_env(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The expiry settings, from ``CHAT_*`` environment variables where they are set."""
    config: dict[str, Any] = {
        "CONVERSATION_EXPIRY_TTL": float(env.get("CHAT_TTL", "30")),
        "CONVERSATION_EXPIRY_CLEANUP_INTERVAL": float(env.get("CHAT_CLEANUP_INTERVAL", "5")),
        # Ids come from clients: bound how many conversations one process keeps.
        "CONVERSATION_EXPIRY_MAX_CONVERSATIONS": int(env.get("CHAT_MAX_CONVERSATIONS", "1000")),
    }
    if env.get("CHAT_STORE"):
        config["CONVERSATION_EXPIRY_STORE"] = env["CHAT_STORE"]
    if env.get("CHAT_NAMESPACE"):
        config["CONVERSATION_EXPIRY_NAMESPACE"] = env["CHAT_NAMESPACE"]
    return config


def log_to_stderr() -> None:
    """Show this example's INFO lines and the library's warnings, whatever server runs it.

    gunicorn configures only its own loggers, so without this the expiries would not be seen.
    A handler is added only where none is, so an application that configures logging wins; such
    a logger stops propagating, so a server that configures the root logger (waitress) does not
    print each line twice.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(name)s %(message)s"))
    for name in ("chat", "conversation_expiry"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False


def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
    log.info("conversation %r left (%s), idle since %s", state.id, reason, state.last_activity)


def create_app(**config: Any) -> Flask:
    """The example app; ``config`` overrides the environment's settings (tests use a clock)."""
    app = Flask(__name__)
    app.config.update(settings_from_env())
    app.config.update(config)
    ConversationExpiry(app, on_expire=on_expire)

    # What a conversation holds, keyed by id and tagged with the conversation's created_at:
    # an id that started afresh gets a new history. A cleanup frees it when it leaves.
    histories: dict[str, tuple[datetime, list[str]]] = {}
    lock = threading.Lock()

    def history_of(state: ConversationState) -> list[str]:
        with lock:
            entry = histories.get(state.id)
            if entry is not None and entry[0] == state.created_at:
                return entry[1]
            entry = histories[state.id] = (state.created_at, [])

        def free() -> None:
            # Only this conversation's own history: the id may have started afresh meanwhile.
            with lock:
                if histories.get(state.id) is entry:
                    del histories[state.id]
            log.info("freed the history of %r (%d messages)", state.id, len(entry[1]))

        try:
            current_manager().add_cleanup(state.id, free)
        except ConversationNotFoundError:  # already gone again (evicted under load): no leak
            free()
        return entry[1]

    @app.post("/chat")
    def chat() -> ResponseReturnValue:
        state = current_conversation()
        if state is None:
            return jsonify(error="name your conversation in an X-Conversation-ID header"), 400
        history = history_of(state)
        text = request.get_data(as_text=True)[:500]
        history.append(text)
        return jsonify(
            conversation=state.id,
            new=g.conversation_started,
            turn=len(history),
            reply=f"you said {text!r}",
            expires_at=state.expires_at.isoformat(),
        )

    @app.get("/stats")
    def stats() -> ResponseReturnValue:
        return jsonify(live_conversations=len(current_manager()), histories=len(histories))

    with app.app_context():
        manager = current_manager()
    log.info(
        "conversations expire after %g s idle (sweep every %g s, at most %s per process)",
        manager.ttl, manager.cleanup_interval, manager.max_conversations,
    )
    return app


log_to_stderr()
app = create_app()  # what gunicorn serves: flask_app:app

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), threaded=True)
