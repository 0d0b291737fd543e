"""Shared fixtures: users, API clients, an actor, and markers for PostgreSQL / Redis tests."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
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


@pytest.fixture(autouse=True)
def _celery_eager():
    """Tasks run in-process during tests; tests of real workers start their own."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    return


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Production hashers cost ~0.3 s a password by design; tests need not pay that."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Failed-login counters and other cached state never leak from one test into another."""
    from django.core.cache import cache

    from accounts.authentication import verified_credentials

    cache.clear()
    verified_credentials.clear()
    return


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
