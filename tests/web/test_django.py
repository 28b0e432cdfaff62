"""The Django integration, on real Django: settings configured here, the test client, signals."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django  # type: ignore[import-untyped]
import pytest
from django.apps import apps  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.db import connection, connections, transaction  # type: ignore[import-untyped]
from django.http import HttpResponse, JsonResponse  # type: ignore[import-untyped]
from django.test import Client, RequestFactory, override_settings  # type: ignore[import-untyped]
from django.urls import path  # type: ignore[import-untyped]

from conversation_expiry import (
    ConversationExpiryManager,
    ConversationState,
    ExpiryReason,
    ManualClock,
    MemoryStore,
)
from conversation_expiry.django import (
    ConversationExpiryConfig,
    ConversationExpiryMiddleware,
    conversation_expired,
    conversation_expiring,
    get_manager,
    shutdown,
    touch_conversation,
)

THREAD = "django-test-cleanup"
APP = "conversation_expiry.django.ConversationExpiryConfig"
MIDDLEWARE = "conversation_expiry.django.ConversationExpiryMiddleware"

# A file, not ":memory:": Django never closes an in-memory SQLite connection.
DB_FILE = os.path.join(tempfile.gettempdir(), f"conversation-expiry-test-{os.getpid()}.sqlite3")

# Settings can be configured once per process; another test module may have done it first.
if not settings.configured:
    settings.configure(
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["testserver"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DB_FILE}},
        INSTALLED_APPS=[APP],
        MIDDLEWARE=[MIDDLEWARE],
        ROOT_URLCONF=__name__,
        USE_TZ=True,
        CONVERSATION_EXPIRY={"AUTOSTART": False, "THREAD_NAME": THREAD},
    )
if not apps.ready:
    django.setup()


def _describe(request: Any, state: ConversationState | None) -> HttpResponse:
    if state is None:
        return JsonResponse({"conversation": None})
    return JsonResponse(
        {
            "conversation": state.id,
            "new": request.conversation_started,
            "created_at": state.created_at.isoformat(),
            "expires_at": state.expires_at.isoformat(),
        }
    )


def chat(request: Any) -> HttpResponse:
    return _describe(request, request.conversation)


def chat_by_url(request: Any, cid: str) -> HttpResponse:
    return _describe(request, touch_conversation(request, cid))


urlpatterns = [path("chat", chat), path("chat/<str:cid>", chat_by_url)]

Event = tuple[str, ExpiryReason]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def configure(clock: ManualClock) -> Iterator[Callable[..., ConversationExpiryManager]]:
    """Start the manager afresh from test settings; shut it down (no thread left) after."""
    overrides: list[override_settings] = []

    def configure(**options: Any) -> ConversationExpiryManager:
        shutdown(timeout=5)
        base = {"CLOCK": clock, "TTL": 60, "CLEANUP_INTERVAL": 3600, "THREAD_NAME": THREAD}
        override = override_settings(
            CONVERSATION_EXPIRY={**base, **options},
            ROOT_URLCONF=__name__,
            MIDDLEWARE=[MIDDLEWARE],
        )
        override.enable()
        overrides.append(override)
        apps.get_app_config("conversation_expiry").ready()
        return get_manager()

    yield configure
    shutdown(timeout=5)
    for override in reversed(overrides):
        override.disable()
    assert [t for t in threading.enumerate() if t.name == THREAD] == []


@pytest.fixture
def manager(configure: Callable[..., ConversationExpiryManager]) -> ConversationExpiryManager:
    return configure()


@pytest.fixture
def events() -> Iterator[list[Event]]:
    """What conversation_expired receivers heard, as (id, reason)."""
    heard: list[Event] = []

    def receiver(sender: object, state: ConversationState, reason: ExpiryReason, **_: Any) -> None:
        assert sender is ConversationExpiryManager
        heard.append((state.id, reason))

    conversation_expired.connect(receiver, weak=False)
    yield heard
    conversation_expired.disconnect(receiver)


def post(cid: str | None, url: str = "/chat") -> Any:
    headers = {} if cid is None else {"X-Conversation-ID": cid}
    return Client().post(url, headers=headers)


# -- the middleware --------------------------------------------------------------------------


def test_request_with_header_starts_conversation(manager: ConversationExpiryManager) -> None:
    body = post("c1").json()
    assert (body["conversation"], body["new"]) == ("c1", True)
    assert "c1" in manager


def test_each_request_slides_expiry(manager: ConversationExpiryManager, clock: ManualClock) -> None:
    first = post("c1").json()
    clock.advance(30)
    second = post("c1").json()
    assert second["new"] is False
    assert second["created_at"] == first["created_at"]
    assert second["expires_at"] > first["expires_at"]


def test_returning_user_after_expiry_gets_fresh_conversation(
    manager: ConversationExpiryManager, clock: ManualClock
) -> None:
    first = post("c1").json()
    clock.advance(61)
    again = post("c1")
    assert again.status_code == 200
    assert again.json()["new"] is True
    assert again.json()["created_at"] > first["created_at"]


def test_request_without_header_has_no_conversation(manager: ConversationExpiryManager) -> None:
    assert post(None).json() == {"conversation": None}
    assert len(manager) == 0


def test_middleware_defaults_request_attributes_before_resolution(
    manager: ConversationExpiryManager,
) -> None:
    request = RequestFactory().get("/", headers={"X-Conversation-ID": "rf-1"})
    ConversationExpiryMiddleware(lambda request: HttpResponse())(request)
    assert (request.conversation, request.conversation_started) == (None, False)
    assert len(manager) == 0


def test_middleware_touches_the_conversation_in_process_view(
    manager: ConversationExpiryManager,
) -> None:
    request = RequestFactory().get("/", headers={"X-Conversation-ID": "rf-1"})
    assert ConversationExpiryMiddleware(chat).process_view(request, chat, (), {}) is None
    assert (request.conversation.id, request.conversation_started) == ("rf-1", True)


def test_header_name_is_configurable(configure: Callable[..., ConversationExpiryManager]) -> None:
    configure(HEADER="X-Chat")
    body = Client().post("/chat", headers={"X-Chat": "c9"}).json()
    assert body["conversation"] == "c9"


# -- untrusted ids ---------------------------------------------------------------------------

BAD_IDS = ["", "x" * 129, "has space", "line\nbreak", "tail\n", "semi;colon", "<script>"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_id_answers_400_and_changes_nothing(
    manager: ConversationExpiryManager, clock: ManualClock, bad: str
) -> None:
    post("c1")
    before = manager.get("c1")
    clock.advance(10)
    response = Client().post("/chat", HTTP_X_CONVERSATION_ID=bad)
    assert response.status_code == 400
    assert manager.get("c1") == before
    assert len(manager) == 1


def test_bad_id_answers_a_json_body_by_default(manager: ConversationExpiryManager) -> None:
    response = post("has space")
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": "Invalid conversation id: it has characters that are not allowed."
    }


def test_bad_id_body_is_configurable(configure: Callable[..., ConversationExpiryManager]) -> None:
    configure(INVALID_ID_BODY="text")
    response = post("has space")
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode().startswith("Invalid conversation id:")


def test_bad_id_from_the_view_helper_gets_the_same_body(
    manager: ConversationExpiryManager,
) -> None:
    assert post(None, "/chat/a%20b").json() == post("a b").json()


def test_unresolved_url_touches_no_conversation(manager: ConversationExpiryManager) -> None:
    assert post("c1", "/nowhere").status_code == 404
    assert len(manager) == 0


def test_bad_id_on_an_unresolved_url_is_a_404(manager: ConversationExpiryManager) -> None:
    assert post("a b", "/nowhere").status_code == 404


def test_store_setting_takes_a_redis_url(
    configure: Callable[..., ConversationExpiryManager],
    redis_calls: list[tuple[str, dict[str, Any]]],
) -> None:
    configure(STORE="rediss://cache:6380/0")
    expected = {"namespace": "conversation-expiry", "_defer": True}
    assert redis_calls == [("rediss://cache:6380/0", expected)]


def test_store_setting_takes_a_store_object(
    configure: Callable[..., ConversationExpiryManager], clock: ManualClock
) -> None:
    store = MemoryStore()
    configure(STORE=store)
    post("c1")
    assert store.count() == 1


def test_bad_store_setting_is_improperly_configured(
    configure: Callable[..., ConversationExpiryManager],
) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"CONVERSATION_EXPIRY\['STORE'\]"):
        configure(STORE="memcached://cache")


def test_id_limits_are_configurable(configure: Callable[..., ConversationExpiryManager]) -> None:
    configure(ID_MAX_LENGTH=4, ID_PATTERN=r"[a-z]+")
    assert post("abcd").status_code == 200
    assert post("abcde").status_code == 400
    assert post("ab1").status_code == 400


def test_refused_id_is_logged_quoted(
    manager: ConversationExpiryManager, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="conversation_expiry"):
        Client().post("/chat", HTTP_X_CONVERSATION_ID="x\nCRITICAL forged")
    (message,) = [r.getMessage() for r in caplog.records if r.name.startswith("conversation_")]
    assert "'x\\nCRITICAL forged'" in message
    assert "\n" not in message


def test_view_helper_touches_id_from_url(manager: ConversationExpiryManager) -> None:
    body = post(None, "/chat/from-url").json()
    assert (body["conversation"], body["new"]) == ("from-url", True)


def test_view_helper_answers_400_for_bad_id(manager: ConversationExpiryManager) -> None:
    assert post(None, "/chat/a%20b").status_code == 400
    assert len(manager) == 0


def test_capacity_bounds_conversations_a_client_invents(
    configure: Callable[..., ConversationExpiryManager], events: list[Event]
) -> None:
    manager = configure(MAX_CONVERSATIONS=3)
    for n in range(10):
        assert post(f"invented-{n}").status_code == 200
    assert len(manager) == 3
    assert events == [(f"invented-{n}", ExpiryReason.EVICTED) for n in range(7)]


def test_capacity_is_bounded_by_default(manager: ConversationExpiryManager) -> None:
    assert manager.max_conversations == 10_000


# -- the signal ------------------------------------------------------------------------------


def test_signal_is_sent_once_when_a_conversation_expires(
    manager: ConversationExpiryManager, clock: ManualClock, events: list[Event]
) -> None:
    post("c1")
    clock.advance(61)
    manager.cleanup_expired()
    manager.cleanup_expired()
    post("c1")  # the returning user starts afresh; the old one does not leave twice
    shutdown(timeout=5, cleanup_remaining=True)
    assert events == [("c1", ExpiryReason.EXPIRED), ("c1", ExpiryReason.SHUTDOWN)]


def test_signal_is_sent_once_under_concurrent_sweeps(
    manager: ConversationExpiryManager, clock: ManualClock, events: list[Event]
) -> None:
    for n in range(50):
        post(f"c{n}")
    clock.advance(61)
    start = threading.Barrier(8)

    def sweep() -> None:
        start.wait(timeout=10)
        manager.cleanup_expired()

    threads = [threading.Thread(target=sweep) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(events) == sorted((f"c{n}", ExpiryReason.EXPIRED) for n in range(50))


def test_signal_is_sent_from_the_background_sweep(
    configure: Callable[..., ConversationExpiryManager], clock: ManualClock
) -> None:
    heard = threading.Event()
    threads: list[str] = []

    def receiver(sender: object, state: ConversationState, **_: Any) -> None:
        threads.append(threading.current_thread().name)
        heard.set()

    conversation_expired.connect(receiver, weak=False)
    try:
        configure(CLEANUP_INTERVAL=0.05)
        post("c1")
        clock.advance(61)
        assert heard.wait(timeout=10)
    finally:
        conversation_expired.disconnect(receiver)
    assert threads == [THREAD]


def test_signal_tells_why_a_conversation_left(
    configure: Callable[..., ConversationExpiryManager], events: list[Event]
) -> None:
    manager = configure(MAX_CONVERSATIONS=2)
    post("ended")
    manager.end_conversation("ended")
    post("evicted")
    post("kept")
    post("newcomer")
    shutdown(timeout=5, cleanup_remaining=True)
    assert events[:2] == [("ended", ExpiryReason.ENDED), ("evicted", ExpiryReason.EVICTED)]
    assert sorted(events[2:]) == [
        ("kept", ExpiryReason.SHUTDOWN),
        ("newcomer", ExpiryReason.SHUTDOWN),
    ]


def test_failing_receiver_does_not_silence_the_others(
    manager: ConversationExpiryManager,
    events: list[Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(**_: Any) -> None:
        raise RuntimeError("receiver bug")

    conversation_expired.connect(broken, weak=False)
    try:
        post("c1")
        with caplog.at_level(logging.ERROR, logger="conversation_expiry"):
            manager.end_conversation("c1")
    finally:
        conversation_expired.disconnect(broken)
    assert events == [("c1", ExpiryReason.ENDED)]
    assert any(
        "failed for conversation 'c1'" in r.getMessage()
        for r in caplog.records
        if r.name.startswith("conversation_expiry")
    )


def test_expiring_signal_is_sent_before_expiry(
    configure: Callable[..., ConversationExpiryManager], clock: ManualClock
) -> None:
    warned: list[str] = []

    def receiver(state: ConversationState, **_: Any) -> None:
        warned.append(state.id)

    conversation_expiring.connect(receiver, weak=False)
    try:
        manager = configure(WARNING_BEFORE=10)
        post("c1")
        clock.advance(55)
        manager.cleanup_expired()
    finally:
        conversation_expiring.disconnect(receiver)
    assert warned == ["c1"]


@pytest.fixture
def database() -> Iterator[None]:
    if settings.DATABASES.get("default", {}).get("NAME") != DB_FILE:
        pytest.skip("another module configured the settings, without this test's database")
    yield
    connection.close()
    if os.path.exists(DB_FILE):
        os.remove(DB_FILE)


def test_cleanup_thread_closes_the_connections_its_receivers_opened(
    database: None, configure: Callable[..., ConversationExpiryManager], clock: ManualClock
) -> None:
    used: list[Any] = []
    heard = threading.Event()

    def receiver(**_: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        used.append(connections["default"])  # this thread's own wrapper
        heard.set()

    conversation_expired.connect(receiver, weak=False)
    try:
        configure(CLEANUP_INTERVAL=0.05)
        post("c1")
        clock.advance(61)
        assert heard.wait(timeout=10)
        shutdown(timeout=5)  # joined: the thread finished what follows the receivers
    finally:
        conversation_expired.disconnect(receiver)
    assert used[0].connection is None


def test_request_thread_keeps_its_connection_and_transaction(
    database: None, manager: ConversationExpiryManager
) -> None:
    def receiver(**_: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    conversation_expired.connect(receiver, weak=False)
    try:
        post("c1")
        with transaction.atomic():
            manager.end_conversation("c1")
            with connection.cursor() as cursor:  # the transaction is still usable
                cursor.execute("SELECT 1")
            assert not connection.closed_in_transaction
    finally:
        conversation_expired.disconnect(receiver)


# -- the app config --------------------------------------------------------------------------


def test_ready_twice_keeps_one_manager_and_one_thread(manager: ConversationExpiryManager) -> None:
    config = apps.get_app_config("conversation_expiry")
    config.ready()
    config.ready()
    assert get_manager() is manager
    assert len([t for t in threading.enumerate() if t.name == THREAD]) == 1


def test_ready_on_a_new_app_config_keeps_the_manager(manager: ConversationExpiryManager) -> None:
    # What a test runner that populates the app registry again does: a new instance, ready().
    ConversationExpiryConfig.create(APP).ready()
    assert get_manager() is manager
    assert len([t for t in threading.enumerate() if t.name == THREAD]) == 1


def test_shutdown_then_ready_builds_from_current_settings(
    configure: Callable[..., ConversationExpiryManager],
) -> None:
    first = configure(TTL=5)
    second = configure(TTL=7)
    assert second is not first
    assert (first.running, second.ttl) == (False, 7.0)


def test_get_manager_before_ready_is_improperly_configured(
    manager: ConversationExpiryManager,
) -> None:
    shutdown(timeout=5)
    with pytest.raises(ImproperlyConfigured, match="INSTALLED_APPS"):
        get_manager()


@pytest.mark.parametrize(
    "options, match",
    [({"TTl": 5}, "'TTl'"), ({"TTL": 0}, "ttl"), ({"ID_MAX_LENGTH": "big"}, "ID_MAX_LENGTH")],
)
def test_bad_settings_are_improperly_configured(
    configure: Callable[..., ConversationExpiryManager], options: dict[str, Any], match: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=match):
        configure(**options)


def test_settings_that_are_not_a_dict_are_improperly_configured(
    configure: Callable[..., ConversationExpiryManager],
) -> None:
    configure()
    shutdown(timeout=5)
    with (
        override_settings(CONVERSATION_EXPIRY=[("TTL", 5)]),
        pytest.raises(ImproperlyConfigured, match="must be a dict"),
    ):
        apps.get_app_config("conversation_expiry").ready()


# -- the example project ---------------------------------------------------------------------


def test_example_project_serves_the_chat_endpoint() -> None:
    # Its own process: settings are configured once per process, and these are the example's.
    project = Path(__file__).resolve().parents[2] / "examples" / "django_project"
    script = (
        "from django.test import Client\n"
        "c = Client()\n"
        "h = {'X-Conversation-ID': 'alice'}\n"
        "post = lambda **kw: c.post('/chat', 'hi', content_type='text/plain', **kw)\n"
        "print('result', post(headers=h).json()['turn'])\n"
        "print('result', post(headers=h).json()['turn'])\n"
        "print('result', post(HTTP_X_CONVERSATION_ID='a b').status_code)\n"
    )
    done = subprocess.run(
        [sys.executable, str(project / "manage.py"), "shell", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=project,
    )
    results = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("result ")]
    assert results == ["1", "2", "400"]


def test_installed_apps_may_name_the_package_instead_of_the_class() -> None:
    from django.apps import AppConfig

    from conversation_expiry.django import ConversationExpiryConfig

    config = AppConfig.create("conversation_expiry.django")
    assert isinstance(config, ConversationExpiryConfig)
    assert config.label == "conversation_expiry"
