"""The Flask integration, on real Flask: the test client and a threaded development server."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, current_app, g, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.serving import make_server

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationState,
    ExpiryReason,
    ManualClock,
    MemoryStore,
)
from conversation_expiry.flask import (
    ConversationExpiry,
    current_conversation,
    current_manager,
    touch_conversation,
)

THREAD = "flask-test-cleanup"
HEADER = "X-Conversation-ID"

Left = list[tuple[str, ExpiryReason]]


def _describe(state: ConversationState | None) -> ResponseReturnValue:
    if state is None:
        return jsonify(conversation=None)
    return jsonify(
        conversation=state.id,
        new=g.conversation_started,
        created_at=state.created_at.isoformat(),
        expires_at=state.expires_at.isoformat(),
    )


def build_app(clock: ManualClock, left: Left | None = None, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        CONVERSATION_EXPIRY_CLOCK=clock,
        CONVERSATION_EXPIRY_TTL=60,
        CONVERSATION_EXPIRY_CLEANUP_INTERVAL=3600,
        CONVERSATION_EXPIRY_THREAD_NAME=THREAD,
    )
    app.config.update(config)

    def record(state: ConversationState, reason: ExpiryReason) -> None:
        if left is not None:
            left.append((state.id, reason))

    ConversationExpiry(app, on_expire=record)

    @app.route("/chat", methods=["GET", "POST"])
    def chat() -> ResponseReturnValue:
        return _describe(current_conversation())

    @app.post("/chat/<cid>")
    def chat_by_url(cid: str) -> ResponseReturnValue:
        return _describe(touch_conversation(cid))

    return app


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """Apps built by a test; every manager is stopped after it, and no cleanup thread is left."""
    made: list[Flask] = []
    yield made
    for app in made:
        app.extensions["conversation_expiry"].close(timeout=5)
    assert [t for t in threading.enumerate() if t.name == THREAD] == []


@pytest.fixture
def make(clock: ManualClock, apps: list[Flask]) -> Callable[..., Flask]:
    def make(left: Left | None = None, **config: Any) -> Flask:
        app = build_app(clock, left, **config)
        apps.append(app)
        return app

    return make


@pytest.fixture
def app(make: Callable[..., Flask]) -> Flask:
    return make()


def manager_of(app: Flask) -> ConversationExpiryManager:
    with app.app_context():
        return current_manager()


def post(app: Flask, cid: str | None, **kwargs: Any) -> Any:
    headers = {} if cid is None else {HEADER: cid}
    return app.test_client().post("/chat", headers=headers, **kwargs)


# -- touching per request --------------------------------------------------------------------


def test_request_with_header_starts_conversation(app: Flask) -> None:
    body = post(app, "c1").get_json()
    assert (body["conversation"], body["new"]) == ("c1", True)
    assert "c1" in manager_of(app)


def test_each_request_slides_expiry(app: Flask, clock: ManualClock) -> None:
    first = post(app, "c1").get_json()
    clock.advance(30)
    second = post(app, "c1").get_json()
    assert second["new"] is False
    assert second["created_at"] == first["created_at"]
    assert second["expires_at"] > first["expires_at"]


def test_returning_user_after_expiry_gets_fresh_conversation(
    app: Flask, clock: ManualClock
) -> None:
    first = post(app, "c1").get_json()
    clock.advance(61)
    again = post(app, "c1")
    assert again.status_code == 200
    body = again.get_json()
    assert body["new"] is True
    assert body["created_at"] > first["created_at"]


def test_returning_user_after_sweep_gets_fresh_conversation(
    make: Callable[..., Flask], clock: ManualClock
) -> None:
    left: Left = []
    app = make(left)
    post(app, "c1")
    clock.advance(61)
    assert manager_of(app).cleanup_expired() == ["c1"]
    assert post(app, "c1").get_json()["new"] is True
    assert left == [("c1", ExpiryReason.EXPIRED)]


def test_request_without_header_has_no_conversation(app: Flask) -> None:
    assert post(app, None).get_json() == {"conversation": None}
    assert len(manager_of(app)) == 0


def test_header_name_is_configurable(make: Callable[..., Flask]) -> None:
    app = make(CONVERSATION_EXPIRY_HEADER="X-Chat")
    body = app.test_client().post("/chat", headers={"X-Chat": "c9"}).get_json()
    assert body["conversation"] == "c9"


# -- untrusted ids ---------------------------------------------------------------------------

BAD_IDS = [
    "",
    "x" * 129,
    "has space",
    "line\nbreak",
    "tail\n",
    "semi;colon",
    "caf\u00e9",
    "<script>",
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_id_answers_400_and_changes_nothing(app: Flask, clock: ManualClock, bad: str) -> None:
    post(app, "c1")
    before = manager_of(app).get("c1")
    clock.advance(10)
    # environ_overrides puts the raw value in the WSGI environ, as a server would, newlines too.
    response = app.test_client().post("/chat", environ_overrides={"HTTP_X_CONVERSATION_ID": bad})
    assert response.status_code == 400
    assert bad not in response.get_data(as_text=True) or bad == ""
    assert manager_of(app).get("c1") == before
    assert len(manager_of(app)) == 1


def test_bad_id_answers_a_json_body_by_default(app: Flask) -> None:
    response = post(app, "has space")
    assert response.content_type == "application/json"
    assert response.get_json() == {
        "error": "Invalid conversation id: it has characters that are not allowed."
    }


def test_bad_id_body_is_configurable(make: Callable[..., Flask]) -> None:
    app = make(CONVERSATION_EXPIRY_INVALID_ID_BODY="text")
    response = post(app, "has space")
    assert (response.status_code, response.mimetype) == (400, "text/plain")
    assert response.get_data(as_text=True).startswith("Invalid conversation id:")


def test_bad_id_from_the_view_helper_gets_the_same_body(app: Flask) -> None:
    response = app.test_client().post("/chat/a%20b")
    assert response.get_json() == post(app, "a b").get_json()


def test_unknown_route_touches_no_conversation(app: Flask) -> None:
    response = app.test_client().post("/nowhere", headers={HEADER: "c1"})
    assert response.status_code == 404
    assert len(manager_of(app)) == 0


def test_method_not_allowed_touches_no_conversation(app: Flask) -> None:
    response = app.test_client().delete("/chat", headers={HEADER: "c1"})
    assert response.status_code == 405
    assert len(manager_of(app)) == 0


def test_automatic_options_answer_touches_no_conversation(app: Flask) -> None:
    response = app.test_client().options("/chat", headers={HEADER: "c1"})
    assert response.status_code == 200
    assert len(manager_of(app)) == 0


def test_bad_id_on_an_unknown_route_is_a_404(app: Flask) -> None:
    assert app.test_client().get("/nowhere", headers={HEADER: "a b"}).status_code == 404


def test_store_setting_takes_a_redis_url(
    make: Callable[..., Flask], redis_calls: list[tuple[str, dict[str, Any]]]
) -> None:
    make(CONVERSATION_EXPIRY_STORE="redis://cache:6379/0", CONVERSATION_EXPIRY_NAMESPACE="chat")
    assert redis_calls == [("redis://cache:6379/0", {"namespace": "chat", "_defer": True})]


def test_store_setting_takes_a_store_object(make: Callable[..., Flask], clock: ManualClock) -> None:
    store = MemoryStore()
    app = make(CONVERSATION_EXPIRY_STORE=store)
    post(app, "c1")
    assert store.count() == 1


def test_bad_store_setting_names_the_config_key(clock: ManualClock) -> None:
    with pytest.raises(TypeError, match="CONVERSATION_EXPIRY_STORE"):
        build_app(clock, CONVERSATION_EXPIRY_STORE=42)


def test_id_length_limit_is_configurable(make: Callable[..., Flask]) -> None:
    app = make(CONVERSATION_EXPIRY_ID_MAX_LENGTH=4)
    assert post(app, "abcd").status_code == 200
    assert post(app, "abcde").status_code == 400


def test_id_pattern_is_configurable(make: Callable[..., Flask]) -> None:
    app = make(CONVERSATION_EXPIRY_ID_PATTERN=r"[0-9]+")
    assert post(app, "123").status_code == 200
    assert post(app, "abc").status_code == 400


def test_refused_id_is_logged_quoted(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="conversation_expiry"):
        app.test_client().post(
            "/chat", environ_overrides={"HTTP_X_CONVERSATION_ID": "x\nCRITICAL forged"}
        )
    (message,) = [r.getMessage() for r in caplog.records if r.name.startswith("conversation_")]
    assert "'x\\nCRITICAL forged'" in message
    assert "\n" not in message


def test_touched_id_is_logged_quoted(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="conversation_expiry"):
        post(app, "c1")
    assert "started conversation 'c1'" in caplog.messages


def test_view_helper_touches_id_from_url(app: Flask) -> None:
    body = app.test_client().post("/chat/from-url").get_json()
    assert (body["conversation"], body["new"]) == ("from-url", True)


def test_view_helper_answers_400_for_bad_id(app: Flask) -> None:
    assert app.test_client().post("/chat/a%20b").status_code == 400
    assert len(manager_of(app)) == 0


# -- capacity --------------------------------------------------------------------------------


def test_capacity_bounds_conversations_a_client_invents(make: Callable[..., Flask]) -> None:
    left: Left = []
    app = make(left, CONVERSATION_EXPIRY_MAX_CONVERSATIONS=3)
    for n in range(10):
        assert post(app, f"invented-{n}").status_code == 200
    assert len(manager_of(app)) == 3
    assert {reason for _, reason in left} == {ExpiryReason.EVICTED}
    assert len(left) == 7


def test_capacity_is_bounded_by_default(app: Flask) -> None:
    assert manager_of(app).max_conversations == 10_000


# -- the extension, its config and its lifecycle ----------------------------------------------


def test_config_keys_reach_the_manager(make: Callable[..., Flask]) -> None:
    app = make(
        CONVERSATION_EXPIRY_TTL=5,
        CONVERSATION_EXPIRY_MAX_AGE=50,
        CONVERSATION_EXPIRY_WARNING_BEFORE=1,
        CONVERSATION_EXPIRY_CLEANUP_INTERVAL=7,
    )
    manager = manager_of(app)
    assert (manager.ttl, manager.max_age, manager.warning_before) == (5.0, 50.0, 1.0)
    assert manager.cleanup_interval == 7.0


def test_unknown_config_key_is_refused(clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="'TTl'"):
        build_app(clock, CONVERSATION_EXPIRY_TTl=5)


def test_manager_is_reachable_from_a_view(app: Flask) -> None:
    ext: ConversationExpiry = ConversationExpiry()
    seen: list[ConversationExpiryManager] = []

    @app.get("/whoami")
    def whoami() -> ResponseReturnValue:
        seen.append(current_manager())
        seen.append(ext.manager)
        return ""

    app.test_client().get("/whoami")
    assert seen == [app.extensions["conversation_expiry"].manager] * 2


def test_one_extension_keeps_a_manager_per_app(clock: ManualClock, apps: list[Flask]) -> None:
    ext = ConversationExpiry()
    first, second = Flask("first"), Flask("second")
    for app in (first, second):
        app.config.update(CONVERSATION_EXPIRY_CLOCK=clock, CONVERSATION_EXPIRY_THREAD_NAME=THREAD)
        ext.init_app(app)
        apps.append(app)
    with first.app_context():
        one = ext.manager
    with second.app_context():
        two = ext.manager
    assert one is not two
    assert "extensions" not in vars(ext) and not hasattr(ext, "app")


def test_init_app_twice_on_one_app_is_refused(app: Flask) -> None:
    with pytest.raises(RuntimeError, match="already set up"):
        ConversationExpiry().init_app(app)


def test_current_manager_without_setup_is_a_clear_error() -> None:
    with Flask("bare").app_context(), pytest.raises(RuntimeError, match="not set up"):
        current_manager()


def test_stop_ends_the_thread_and_is_idempotent(app: Flask) -> None:
    ext = ConversationExpiry()
    assert manager_of(app).running
    ext.stop(app, timeout=5)
    ext.stop(app, timeout=5)
    assert not manager_of(app).running


def test_stop_with_cleanup_remaining_ends_live_conversations(make: Callable[..., Flask]) -> None:
    left: Left = []
    app = make(left)
    post(app, "c1")
    with app.app_context():
        ConversationExpiry().stop(timeout=5, cleanup_remaining=True)
    assert left == [("c1", ExpiryReason.SHUTDOWN)]


def test_on_expire_runs_in_the_app_context_on_the_cleanup_thread(
    clock: ManualClock, apps: list[Flask]
) -> None:
    ran = threading.Event()
    seen: list[tuple[str, str]] = []

    def on_expire(state: ConversationState, reason: ExpiryReason) -> None:
        seen.append((current_app.name, threading.current_thread().name))
        ran.set()

    app = Flask("ctx-app")
    app.config.update(
        CONVERSATION_EXPIRY_CLOCK=clock,
        CONVERSATION_EXPIRY_TTL=60,
        CONVERSATION_EXPIRY_CLEANUP_INTERVAL=0.05,
        CONVERSATION_EXPIRY_THREAD_NAME=THREAD,
    )
    ConversationExpiry(app, on_expire=on_expire)
    apps.append(app)
    manager_of(app).register_conversation("c1")
    clock.advance(61)
    assert ran.wait(timeout=10)
    assert seen == [("ctx-app", THREAD)]


def test_manager_is_stopped_at_interpreter_exit() -> None:
    script = """
from flask import Flask
from conversation_expiry.flask import ConversationExpiry
app = Flask("exit-app")
app.config["CONVERSATION_EXPIRY_TTL"] = 600
ext = ConversationExpiry(app, on_expire=lambda s, r: print("left", s.id, r.value, flush=True))
app.add_url_rule("/", view_func=lambda: "")
app.test_client().get("/", headers={"X-Conversation-ID": "c1"})
with app.app_context():
    print("running", ext.manager.running, flush=True)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["running True", "left c1 shutdown"]


# -- a real threaded server ------------------------------------------------------------------


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="flask-test-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/chat"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


def fetch(url: str, cid: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method="POST", headers={HEADER: cid})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        error.close()
        return error.code, {}


def run_clients(count: int, client: Callable[[int], None]) -> None:
    """Run ``client(n)`` on ``count`` threads released together; re-raise the first failure."""
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def run(n: int) -> None:
        try:
            start.wait(timeout=10)
            client(n)
        except BaseException as exc:  # handed to the test thread below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,), name=f"client-{n}") for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    if failures:
        raise failures[0]


def test_threaded_server_touches_each_clients_conversation(app: Flask, served: str) -> None:
    clients, requests = 16, 20
    results: dict[int, list[tuple[int, bool]]] = {}

    def client(n: int) -> None:
        got = []
        for _ in range(requests):
            status, body = fetch(served, f"client-{n}")
            got.append((status, body["new"]))
        results[n] = got

    run_clients(clients, client)
    for n in range(clients):
        assert results[n] == [(200, True)] + [(200, False)] * (requests - 1)
    assert len(manager_of(app)) == clients


def test_threaded_server_refuses_bad_ids_under_load(app: Flask, served: str) -> None:
    statuses: list[int] = []

    def client(n: int) -> None:
        for i in range(10):
            statuses.append(fetch(served, f"ok-{n}" if i % 2 else f"bad id {n}")[0])

    run_clients(8, client)
    assert sorted(statuses) == [200] * 40 + [400] * 40
    assert len(manager_of(app)) == 8


def test_threaded_server_shares_one_conversation_between_threads(app: Flask, served: str) -> None:
    bodies: list[dict[str, Any]] = []

    def client(n: int) -> None:
        for _ in range(10):
            status, body = fetch(served, "shared")
            assert status == 200
            bodies.append(body)

    run_clients(12, client)
    assert len(manager_of(app)) == 1
    assert len({body["created_at"] for body in bodies}) == 1
    # At least one request started it. Not "exactly one": two requests that both find no
    # conversation both call register, and ensure_conversation reports both as fresh.
    assert sum(body["new"] for body in bodies) >= 1


# -- the example -----------------------------------------------------------------------------


@pytest.fixture
def example() -> Iterator[Any]:
    """The example module, loaded; its module-level app stopped and its logging undone after."""
    loggers = [logging.getLogger(name) for name in ("chat", "conversation_expiry")]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    path = Path(__file__).resolve().parents[2] / "examples" / "flask_app.py"
    spec = importlib.util.spec_from_file_location("flask_example_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        if hasattr(module, "app"):
            module.app.extensions["conversation_expiry"].close(timeout=5)
        for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


def test_example_app_frees_history_and_starts_afresh_after_expiry(
    example: Any, clock: ManualClock, apps: list[Flask]
) -> None:
    app = example.create_app(
        CONVERSATION_EXPIRY_CLOCK=clock,
        CONVERSATION_EXPIRY_CLEANUP_INTERVAL=3600,
        CONVERSATION_EXPIRY_THREAD_NAME=THREAD,
    )
    apps.append(app)
    client = app.test_client()
    assert client.post("/chat", headers={HEADER: "alice"}, data="hi").get_json()["turn"] == 1
    assert client.post("/chat", headers={HEADER: "alice"}, data="hi").get_json()["turn"] == 2
    clock.advance(31)
    manager_of(app).cleanup_expired()
    assert client.get("/stats").get_json() == {"live_conversations": 0, "histories": 0}
    body = client.post("/chat", headers={HEADER: "alice"}, data="back").get_json()
    assert (body["new"], body["turn"]) == (True, 1)


def test_example_has_a_module_level_app_for_gunicorn(example: Any) -> None:
    assert isinstance(example.app, Flask)
    assert manager_of(example.app).running


def test_example_reads_its_settings_from_the_environment(example: Any) -> None:
    env = {"CHAT_TTL": "2.5", "CHAT_CLEANUP_INTERVAL": "0.5", "CHAT_MAX_CONVERSATIONS": "7"}
    assert example.settings_from_env(env) == {
        "CONVERSATION_EXPIRY_TTL": 2.5,
        "CONVERSATION_EXPIRY_CLEANUP_INTERVAL": 0.5,
        "CONVERSATION_EXPIRY_MAX_CONVERSATIONS": 7,
    }


def test_example_store_comes_from_the_environment(example: Any) -> None:
    settings = example.settings_from_env({"CHAT_STORE": "redis://cache:6379/0"})
    assert settings["CONVERSATION_EXPIRY_STORE"] == "redis://cache:6379/0"


# -- a fork after the app was built (gunicorn --preload) ----------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Forking a process that runs threads is what this test is about (3.12+ warns of it).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_app_built_before_fork_expires_conversations_in_the_child(
    clock: ManualClock, apps: list[Flask]
) -> None:
    expired = threading.Event()
    app = Flask("preloaded")
    app.config.update(
        CONVERSATION_EXPIRY_CLOCK=clock,
        CONVERSATION_EXPIRY_TTL=60,
        CONVERSATION_EXPIRY_CLEANUP_INTERVAL=0.05,
        CONVERSATION_EXPIRY_THREAD_NAME=THREAD,
    )
    ConversationExpiry(app, on_expire=lambda state, reason: expired.set())
    apps.append(app)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        status = 1
        try:
            running = manager_of(app).running
            manager_of(app).register_conversation("c1")
            served = app.test_client().get("/", headers={HEADER: "c1"}).status_code
            clock.advance(61)
            os.write(write_end, f"{running} {served} {expired.wait(timeout=10)}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert (report, os.waitstatus_to_exitcode(status)) == ("True 404 True", 0)
    assert not expired.is_set()  # the parent's conversations are its own


@pytest.mark.redis
def test_an_app_started_while_redis_is_down_serves_once_it_is_back(
    make: Callable[..., Flask], tmp_path: Path
) -> None:
    # gunicorn stops the whole server when a worker fails to boot: an outage of Redis while a
    # worker (re)starts must not fail the app's start.
    from redis_servers import RedisServer

    server = RedisServer(tmp_path / "redis")  # not started yet: its port refuses connections
    app = make(CONVERSATION_EXPIRY_STORE=server.url, CONVERSATION_EXPIRY_NAMESPACE="boot")
    assert post(app, "c1").status_code == 500  # StoreUnavailableError, as any call in an outage
    server.start()
    try:
        response = post(app, "c1")
        assert response.status_code == 200 and response.get_json()["new"] is True
    finally:
        server.stop()


def test_the_extension_s_manager_outside_an_app_context_is_its_app_s(clock: ManualClock) -> None:
    app = Flask(__name__)
    app.config.update(CONVERSATION_EXPIRY_CLOCK=clock, CONVERSATION_EXPIRY_AUTOSTART=False)
    expiry = ConversationExpiry(app)
    try:
        assert expiry.manager is app.extensions["conversation_expiry"].manager
        with app.app_context():
            assert expiry.manager is current_manager()
    finally:
        app.extensions["conversation_expiry"].close(timeout=5)


def test_an_app_factory_s_extension_needs_an_app_context_for_its_manager() -> None:
    expiry = ConversationExpiry()
    with pytest.raises(RuntimeError, match="application context"):
        expiry.manager  # noqa: B018
