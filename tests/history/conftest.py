"""Fixtures for the history tests: an auditor, a small history, and raw tampering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.actors import Actor
from registry import services
from registry.choices import Stage
from registry.models import RegisteredModel
from tests.conftest import history_writable


@pytest.fixture
def auditor(django_user_model):
    """Registry-wide CAN_READ (a global permission), no write right anywhere."""
    user = django_user_model.objects.create_user(username="audrey", password="audrey-pw-1")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="registry", codename="can_read")
    )
    return user


@pytest.fixture
def auditor_api(auditor) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=auditor)
    return client


@pytest.fixture
def outsider_api(django_user_model) -> APIClient:
    """A signed-in user with no grant at all."""
    client = APIClient()
    client.force_authenticate(
        user=django_user_model.objects.create_user(username="olga", password="olga-pw-1")
    )
    return client


def build_history(actor: Actor) -> RegisteredModel:
    """Twelve events on one model: versions, stages, aliases, a tag, a rename."""
    model = services.model_create(name="fraud-scorer", actor=actor)  # 1
    v1 = services.version_create(model=model, source="s3://f/1", actor=actor)  # 2
    v2 = services.version_create(model=model, source="s3://f/2", actor=actor)  # 3
    services.version_transition(version=v1, stage=Stage.STAGING, actor=actor)  # 4
    services.alias_set(model=model, alias="production", version=1, actor=actor)  # 5
    services.version_tag_set(version=v2, key="validation", value="passed", actor=actor)  # 6
    services.version_transition(version=v1, stage=Stage.PRODUCTION, actor=actor)  # 7
    services.alias_set(model=model, alias="production", version=2, actor=actor)  # 8
    services.model_tag_set(model=model, key="team", value="risk", actor=actor)  # 9
    services.version_update(version=v2, description="better", actor=actor)  # 10
    model = services.model_rename(model=model, new_name="fraud", actor=actor)  # 11
    services.model_update(model=model, description="scores fraud", actor=actor)  # 12
    return model


@pytest.fixture
def history(actor) -> RegisteredModel:
    return build_history(actor)


def tamper(sql: str, params: Any = ()) -> None:
    """Raw SQL on the history, past the append-only triggers (which exist on PostgreSQL only)."""
    with history_writable(), connection.cursor() as cursor:
        cursor.execute(sql, params)


class Clock:
    """timezone.now() under the test's control: events get the times the test chooses."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock(datetime(2026, 3, 1, 9, tzinfo=UTC))
    monkeypatch.setattr(timezone, "now", clock)
    return clock
