"""The ASGI path production runs (uvicorn workers), through Django's AsyncClient.

Most tests use the WSGI test client; these check the async middleware and views behave the
same: authentication, reads, writes, the alias poll path, and the admin's session and CSRF.
"""

from __future__ import annotations

import base64

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from registry.models import Event, RegisteredModel

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.anyio]

PASSWORD = "asgi-password-1"


def basic(username: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def pipeline(django_user_model):
    return django_user_model.objects.create_user(username="pipeline", password=PASSWORD)


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser(username="boss", password=PASSWORD)


async def test_health_and_anonymous_refusal():
    client = AsyncClient()
    assert (await client.get("/healthz")).status_code == 200
    refused = await client.get("/api/v1/models/")
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthenticated"
    assert refused["X-Request-ID"]


async def test_reads_writes_and_the_poll_path(pipeline):
    client = AsyncClient()
    auth = basic("pipeline")
    created = await client.post(
        "/api/v1/models/", {"name": "fraud"}, content_type="application/json", headers=auth
    )
    assert created.status_code == 201
    assert (await sync_to_async(RegisteredModel.objects.count)()) == 1
    version = await client.post(
        "/api/v1/models/fraud/versions/",
        {"source": "s3://m/1"},
        content_type="application/json",
        headers=auth,
    )
    assert version.status_code == 201
    alias = await client.put(
        "/api/v1/models/fraud/aliases/production/",
        {"version": 1},
        content_type="application/json",
        headers=auth,
    )
    assert alias.status_code == 201
    first = await client.get("/api/v1/models/fraud/aliases/production/", headers=auth)
    assert first.status_code == 200
    assert first.json()["version"] == 1
    again = await client.get(
        "/api/v1/models/fraud/aliases/production/",
        headers={**auth, "If-None-Match": first["ETag"]},
    )
    assert again.status_code == 304
    mlflow = await client.get("/api/2.0/mlflow/registered-models/get?name=fraud", headers=auth)
    assert mlflow.status_code == 200
    assert mlflow.json()["registered_model"]["name"] == "fraud"
    types = await sync_to_async(list)(Event.objects.values_list("type", flat=True))
    assert types == [
        "registered_model.created",
        "model_version.created",
        "model_version_alias.set",
    ]


async def test_admin_login_uses_the_session_and_csrf(admin):
    client = AsyncClient(enforce_csrf_checks=True)
    page = await client.get("/admin/login/")
    assert page.status_code == 200
    token = page.cookies["csrftoken"].value
    refused = await client.post("/admin/login/", {"username": "boss", "password": PASSWORD})
    assert refused.status_code == 403  # no CSRF token
    logged_in = await client.post(
        "/admin/login/",
        {"username": "boss", "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    assert logged_in.status_code == 302
    assert "sessionid" in logged_in.cookies
    index = await client.get("/admin/")
    assert index.status_code == 200
    assert b"Registry administration" in index.content
