"""Shared fixtures: users, API clients, an actor, and markers for PostgreSQL / Redis tests."""

from __future__ import annotations

import ipaddress
import os
import socket

import pgtrigger
import pytest
from django.conf import settings
from django.core.management.commands import flush
from rest_framework.test import APIClient

from accounts.actors import Actor, Source
from config.celery import app as celery_app


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
    skip_redis = pytest.mark.skip(reason="needs Redis: set REDIS_URL=redis://...")
    for item in items:
        if "postgres" in item.keywords and not settings.IS_POSTGRES:
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not os.environ.get("REDIS_URL"):
            item.add_marker(skip_redis)


# The history's append-only triggers (PostgreSQL only; registry.models.append_only_triggers).
HISTORY_TRIGGERS = [
    f"registry.{model}:{name}"
    for model in ("Event", "EventCheckpoint")
    for name in ("append_only", "append_only_truncate")
]


def history_writable():
    """Let the statements in the block past the history's append-only triggers (tests only).

    django-pgtrigger's ignore: each statement is prefixed with a transaction-local
    `set_config('pgtrigger.ignore', …)` that the trigger functions check. A no-op on SQLite.
    """
    return pgtrigger.ignore(*HISTORY_TRIGGERS)


@pytest.fixture(autouse=True, scope="session")
def _flush_past_history_triggers():
    """pytest-django empties the tables after each transactional test with `flush` (a TRUNCATE
    on PostgreSQL), which the append-only triggers refuse: that one command runs past them."""
    handle = flush.Command.handle

    def flush_handle(self: flush.Command, *args: object, **options: object) -> None:
        with history_writable():
            handle(self, *args, **options)

    flush.Command.handle = flush_handle  # type: ignore[method-assign]
    yield
    flush.Command.handle = handle  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _celery_eager():
    """Tasks run in-process during tests; tests of real workers start their own."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    return


@pytest.fixture(autouse=True)
def _publishing_run_per_append(settings):
    """Tests drop the on-commit callbacks of what they set up, so a publishing run marked as
    queued there never comes: every append queues its own (registry/publishing.py; the tests
    of that debounce turn it back on)."""
    settings.MODELGATE_EVENT_PUBLISH_PENDING_SECONDS = 0


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Production hashers cost ~0.3 s a password by design; tests need not pay that."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Failed-login counters and other cached state never leak from one test into another."""
    from django.core.cache import cache

    from accounts.authentication import verified_credentials
    from registry.api.polling import recent_auth, remembered_aliases
    from registry.permissions import (
        recent_levels,
        recent_registry_levels,
        recent_token_models,
        recent_user_grants,
    )

    cache.clear()
    verified_credentials.clear()
    recent_auth.clear()
    recent_levels.clear()
    recent_registry_levels.clear()
    recent_user_grants.clear()
    recent_token_models.clear()
    remembered_aliases.clear()
    return


@pytest.fixture(autouse=True)
def _offline_dns(monkeypatch):
    """Tests run offline: a host name in a webhook URL resolves to nothing, at once. Asking the
    machine's resolver stalled a lookup for 5 s now and then (its DNS server is out of reach),
    which cost the suite minutes; an address literal stands for itself, as getaddrinfo answers
    it. A test that needs a name to resolve patches webhooks.ssrf._resolve itself."""

    def offline(host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            refused = f"no name resolution in tests: {host}"
            raise socket.gaierror(socket.EAI_NONAME, refused) from None

    monkeypatch.setattr("webhooks.ssrf._resolve", offline)


@pytest.fixture(autouse=True)
def _poll_reads_in_the_test_thread(settings):
    """In-process requests read the alias on the test's own connection (its transaction holds
    the test data); the live-server polling tests turn the reused thread pool back on."""
    settings.MODELGATE_POLL_THREADS = 0


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-password-1")


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(
        username="root", password="root-password-1", email="root@example.com"
    )


@pytest.fixture
def actor(user) -> Actor:
    return Actor(user=user, source=Source.SHELL)


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=admin_user)
    return client


@pytest.fixture
def anon() -> APIClient:
    return APIClient()
