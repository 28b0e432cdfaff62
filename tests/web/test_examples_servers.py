"""Both examples under real servers (gunicorn, waitress) on free loopback ports, over real HTTP.

What the docstrings and the README promise: the commands start them, ``CHAT_*`` environment
variables configure them, the log shows each expiry and the freeing of its history, and a
SIGTERM runs the live conversations' cleanups (reason ``shutdown``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gunicorn needs a POSIX system")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
START_WITHIN = 60.0  # seconds for a server to answer its first request
LOG_WITHIN = 15.0  # seconds for a line the server must log
FAST = {"CHAT_TTL": "0.5", "CHAT_CLEANUP_INTERVAL": "0.1", "CHAT_MAX_CONVERSATIONS": "3"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gunicorn(app_dir: Path, target: str, port: int, workers: int = 1) -> list[str]:
    import gunicorn.config

    command = [sys.executable, "-m", "gunicorn", "--chdir", str(app_dir), "--workers", str(workers),
               "--threads", "4", "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "10"]
    if "control_socket_disable" in gunicorn.config.Config().settings:
        command.append("--no-control-socket")  # gunicorn 25+: no socket in $HOME per test run
    return [*command, target]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    log: Path
    url: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, line: str, timeout: float = LOG_WITHIN) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.text():
            assert self.process.poll() is None, f"server exited:\n{self.text()}"
            late = time.monotonic() > deadline
            assert not late, f"{line!r} not logged in {timeout}s:\n{self.text()}"
            time.sleep(0.05)

    def post(self, path: str, cid: str | None, body: bytes = b"hi") -> tuple[int, Any]:
        headers = {} if cid is None else {"X-Conversation-ID": cid}
        request = urllib.request.Request(self.url + path, body, headers=headers, method="POST")
        return _call(request)

    def get(self, path: str) -> tuple[int, Any]:
        return _call(urllib.request.Request(self.url + path))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Send ``sig``; the exit status, or None if it had to be killed."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            _kill_group(self.process)


def _call(request: urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, _decode(response.read(), response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, _decode(error.read(), error.headers)


def _decode(raw: bytes, headers: Any) -> Any:
    is_json = headers.get_content_type() == "application/json"
    return json.loads(raw) if is_json else raw.decode("utf-8", "replace")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the workers too, whatever state they are in
    process.wait(10)


def start(command: list[str], tmp_path: Path, port: int, env: dict[str, str]) -> Server:
    log = tmp_path / f"server-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=EXAMPLES, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = Server(process, log, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + START_WITHIN
    while True:
        try:
            server.get("/stats")
            return server
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                _kill_group(process)
                pytest.fail(f"server did not start within {START_WITHIN}s:\n{server.text()}")
            time.sleep(0.1)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Starts servers; every one is stopped (and its process group killed) after the test."""
    started: list[Server] = []

    def run(command: list[str], port: int, **env: str) -> Server:
        server = start(command, tmp_path, port, env)
        started.append(server)
        return server

    try:
        yield run
    finally:
        for server in started:
            server.stop()


def flask_gunicorn(serve: Any, workers: int = 1, **env: str) -> Server:
    port = free_port()
    return serve(gunicorn(EXAMPLES, "flask_app:app", port, workers), port, **{**FAST, **env})


def django_gunicorn(serve: Any, workers: int = 1, **env: str) -> Server:
    port = free_port()
    return serve(gunicorn(EXAMPLES / "django_project", "chatsite.wsgi", port, workers), port,
                 **{**FAST, **env})


EXAMPLE_SERVERS = [
    pytest.param(flask_gunicorn, id="flask"),
    pytest.param(django_gunicorn, id="django"),
]


@pytest.mark.parametrize("start_example", EXAMPLE_SERVERS)
def test_gunicorn_serves_the_chat(serve: Any, start_example: Any) -> None:
    server = start_example(serve, CHAT_TTL="60")
    first = server.post("/chat", "alice")
    second = server.post("/chat", "alice")
    assert (first[0], first[1]["new"], first[1]["turn"]) == (200, True, 1)
    assert (second[0], second[1]["new"], second[1]["turn"]) == (200, False, 2)


@pytest.mark.redis
@pytest.mark.parametrize("start_example", EXAMPLE_SERVERS)
def test_workers_sharing_a_redis_store_start_a_conversation_once(
    serve: Any, start_example: Any, redis_server: Any
) -> None:
    namespace = f"example-{os.getpid()}-{free_port()}"
    server = start_example(
        serve, workers=3, CHAT_TTL="60", CHAT_STORE=redis_server.url, CHAT_NAMESPACE=namespace
    )
    replies = [server.post("/chat", "alice") for _ in range(30)]  # spread over the workers
    assert all(status == 200 for status, _ in replies)
    assert [body["new"] for _, body in replies].count(True) == 1


@pytest.mark.parametrize(
    "start_example, freed",
    [
        pytest.param(flask_gunicorn, "freed the history of 'alice'", id="flask"),
        pytest.param(django_gunicorn, "the history of 'alice' is freed", id="django"),
    ],
)
def test_gunicorn_logs_the_expiry_and_the_freed_history(
    serve: Any, start_example: Any, freed: str
) -> None:
    server = start_example(serve)
    server.post("/chat", "alice")
    server.wait_for_log("conversation 'alice' left (expired)")
    server.wait_for_log(freed)
    status, body = server.post("/chat", "alice")
    assert (status, body["new"], body["turn"]) == (200, True, 1)


@pytest.mark.parametrize("start_example", EXAMPLE_SERVERS)
def test_environment_sets_ttl_interval_and_capacity(serve: Any, start_example: Any) -> None:
    server = start_example(serve, CHAT_TTL="60")
    server.wait_for_log("expire after 60 s idle (sweep every 0.1 s, at most 3 per process)")
    for cid in ("a", "b", "c", "d"):
        assert server.post("/chat", cid)[0] == 200
    assert server.get("/stats")[1]["live_conversations"] == 3


@pytest.mark.parametrize("start_example", EXAMPLE_SERVERS)
def test_request_to_no_view_starts_no_conversation(serve: Any, start_example: Any) -> None:
    server = start_example(serve, CHAT_TTL="60")
    assert server.post("/nowhere", "alice")[0] == 404
    assert server.get("/stats")[1]["live_conversations"] == 0


@pytest.mark.parametrize("start_example", EXAMPLE_SERVERS)
def test_bad_id_gets_a_json_400(serve: Any, start_example: Any) -> None:
    server = start_example(serve, CHAT_TTL="60")
    assert server.post("/chat", "a b") == (
        400,
        {"error": "Invalid conversation id: it has characters that are not allowed."},
    )


@pytest.mark.parametrize("start_example", EXAMPLE_SERVERS)
def test_a_flood_of_bad_ids_logs_a_bounded_number_of_lines(
    serve: Any, start_example: Any
) -> None:
    server = start_example(serve, CHAT_TTL="60")
    for n in range(60):
        assert server.post("/chat", f"bad id {n}")[0] == 400
    assert server.stop() == 0
    text = server.text()
    assert text.count("rejected conversation id 'bad id") == 20
    assert "40 more conversation ids were rejected" in text


@pytest.mark.parametrize("start_example", EXAMPLE_SERVERS)
def test_gunicorn_sigterm_runs_the_cleanups_of_live_conversations(
    serve: Any, start_example: Any
) -> None:
    server = start_example(serve, CHAT_TTL="600")
    server.post("/chat", "alice")
    assert server.stop(signal.SIGTERM) == 0
    assert "conversation 'alice' left (shutdown)" in server.text()


def test_waitress_launcher_runs_the_cleanups_on_sigterm(serve: Any) -> None:
    pytest.importorskip("waitress")
    port = free_port()
    server = serve([sys.executable, "serve_waitress.py"], port, PORT=str(port), CHAT_TTL="600")
    server.post("/chat", "alice")
    assert server.stop(signal.SIGTERM) == 0
    assert server.text().count("conversation 'alice' left (shutdown)") == 1


def test_plain_waitress_skips_the_cleanups_on_sigterm(serve: Any) -> None:
    """What the README warns of, and why examples/serve_waitress.py exists."""
    pytest.importorskip("waitress")
    port = free_port()
    command = [sys.executable, "-m", "waitress", f"--listen=127.0.0.1:{port}", "flask_app:app"]
    server = serve(command, port, CHAT_TTL="600")
    server.post("/chat", "alice")
    assert server.stop(signal.SIGTERM) == -signal.SIGTERM
    assert "left (shutdown)" not in server.text()
