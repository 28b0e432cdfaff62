"""What importing the package gives, and what an integration says when its extra is missing."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import conversation_expiry

API_NAMES = {  # shared/API.md's import surface
    "ConversationExpiryManager", "ConversationState", "ExpiryReason", "SystemClock",
    "ManualClock", "ConversationExpiryError", "ConversationNotFoundError",
    "ConversationExpiredError", "StoreUnavailableError",
}  # fmt: skip


def test_the_package_exports_the_documented_names() -> None:
    assert set(conversation_expiry.__all__) >= API_NAMES
    for name in conversation_expiry.__all__:
        assert getattr(conversation_expiry, name) is not None


def test_importing_the_package_imports_no_integration() -> None:
    code = (
        "import sys, conversation_expiry; "
        "print(sorted(m for m in ('flask', 'django', 'redis') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("integration", "dependency", "extra"),
    [
        ("conversation_expiry.flask", "flask", "flask"),
        ("conversation_expiry.django", "django.apps", "django"),
        ("conversation_expiry.redis", "redis", "redis"),
        ("conversation_expiry.redis", "redis.backoff", "redis"),  # (older than 5.3: no Jitter)
    ],
)
def test_an_integration_without_its_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, integration: str, dependency: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, dependency, None)  # its import fails
    for name in [m for m in sys.modules if m == integration or m.startswith(integration + ".")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=rf"pip install 'conversation-expiry\[{extra}\]'"):
        importlib.import_module(integration)
