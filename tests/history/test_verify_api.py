"""GET /api/v1/events/verify/: verify_history's verdict for auditors, and who counts as one."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.actors import Actor
from accounts.tokens import token_create
from registry import services
from registry.history.checkpoints import checkpoint_create
from registry.models import Event
from registry.permissions import Level
from tests.history.conftest import tamper

pytestmark = pytest.mark.django_db

URL = "/api/v1/events/verify/"


def test_an_auditor_gets_the_verdict(auditor_api, history):
    checkpoint_create()

    response = auditor_api.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body | {"seconds": 0, "latest_checkpoint": None} == {
        "ok": True,
        "events": 12,
        "first_seq": 1,
        "last_seq": 12,
        "head": {"seq": 12, "hash": Event.objects.get(seq=12).hash},
        "checkpoints": 1,
        "latest_checkpoint": None,
        "problem": None,
        "seconds": 0,
    }
    assert body["latest_checkpoint"]["seq"] == 12


def test_the_verdict_names_the_first_bad_seq(auditor_api, history):
    tamper("UPDATE registry_event SET version = 3 WHERE seq = 6")

    body = auditor_api.get(URL).json()

    assert body["ok"] is False
    assert body["problem"] == {
        "seq": 6,
        "kind": "edited",
        "detail": "the row's content does not match its hash",
    }


def test_superusers_may_verify(admin_api, history):
    assert admin_api.get(URL).json()["ok"] is True


def test_a_model_manager_is_not_an_auditor(api, history):
    """alice has CAN_MANAGE on her model, not a registry-wide grant."""
    response = api.get(URL)

    assert response.status_code == 403
    assert response.json() == {
        "code": "permission_denied",
        "message": "Verifying the history needs a registry-wide CAN_READ grant (the auditor's "
        "permission).",
    }


def test_outsiders_and_anonymous_callers_are_refused(outsider_api, anon, history):
    assert outsider_api.get(URL).status_code == 403
    assert anon.get(URL).status_code == 401


def test_a_group_with_the_registry_wide_grant_makes_auditors(django_user_model, history):
    from django.contrib.auth.models import Group, Permission

    group = Group.objects.create(name="auditors")
    group.permissions.add(
        Permission.objects.get(content_type__app_label="registry", codename="can_read")
    )
    user = django_user_model.objects.create_user(username="gus", password="gus-pw-1")
    user.groups.add(group)
    client = APIClient()
    client.force_authenticate(user=user)

    assert client.get(URL).status_code == 200


def test_an_auditors_read_only_token_may_verify_but_a_model_limited_one_may_not(auditor, history):
    read_only = token_create(user=auditor, read_only=True)
    limited = token_create(user=auditor, models=[history])
    client = APIClient()

    client.credentials(HTTP_AUTHORIZATION=f"Bearer {read_only.secret}")
    assert client.get(URL).status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {limited.secret}")
    assert client.get(URL).status_code == 403


def test_an_auditor_reads_history_but_writes_nothing(auditor_api, history):
    """The auditor's grant is read-only: history yes, changes no."""
    assert auditor_api.get("/api/v1/events/").status_code == 200
    assert auditor_api.get("/api/v1/models/fraud/history/").status_code == 200
    assert auditor_api.get("/api/v1/events/export/").status_code == 200
    count = Event.objects.count()

    edit = auditor_api.patch("/api/v1/models/fraud/", {"description": "x"}, format="json")
    add = auditor_api.post("/api/v1/models/fraud/versions/", {"source": "s3://x"}, format="json")
    assert (edit.status_code, add.status_code) == (403, 403)
    assert Event.objects.count() == count


def test_a_per_model_reader_sees_only_its_models_history(django_user_model, history, actor):
    other = services.model_create(name="other", actor=actor)
    reader = django_user_model.objects.create_user(username="rita", password="rita-pw-1")
    services.permissions_update(
        model=other, actor=Actor.system(), users={"rita": Level.CAN_READ}, groups={}
    )
    client = APIClient()
    client.force_authenticate(user=reader)

    assert client.get(URL).status_code == 403
    assert client.get("/api/v1/models/fraud/history/").status_code == 404
    assert client.get("/api/v1/models/other/history/").status_code == 200


def test_the_schema_documents_the_history_routes(admin_api):
    paths = admin_api.get("/api/schema/", {"format": "json"}).json()["paths"]

    for route in (
        "/api/v1/events/verify/",
        "/api/v1/events/export/",
        "/api/v1/models/{name}/history/",
        "/api/v1/models/{name}/aliases/{alias}/history/",
    ):
        assert route in paths
