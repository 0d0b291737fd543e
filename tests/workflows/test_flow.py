"""The approval flow end to end through the native API (Celery runs eagerly here)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError
from rest_framework.test import APIClient

from accounts.actors import Actor
from registry import services as registry_services
from registry.models import Event, ModelVersion
from registry.permissions import Level
from workflows.models import Review, TransitionRequest
from workflows.policies import policy_create

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


@pytest.fixture
def people(django_user_model):
    make = django_user_model.objects.create_user
    return {
        name: make(username=name, password=f"{name}-password-1")
        for name in ("pipeline", "alice", "bob", "carol")
    }


@pytest.fixture
def model(people):
    pipeline = Actor(user=people["pipeline"])
    model = registry_services.model_create(name="fraud", actor=pipeline)
    registry_services.version_create(model=model, source="s3://m/1", actor=pipeline)
    registry_services.version_tag_set(
        version=ModelVersion.objects.get(model=model, version=1),
        key="validation",
        value="passed",
        actor=pipeline,
    )
    for reviewer in ("alice", "bob"):
        registry_services.permissions_update(
            model=model,
            actor=Actor.system(),
            users={reviewer: Level.CAN_MANAGE_PRODUCTION_VERSIONS},
            groups={},
        )
    registry_services.permissions_update(
        model=model, actor=Actor.system(), users={"carol": Level.CAN_READ}, groups={}
    )
    policy_create(
        actor=Actor.system(),
        model=None,
        target="Production",
        required_approvals=2,
        required_tags={"validation": "passed"},
        move_alias="production",
        archive_existing_versions=True,
    )
    return model


def test_quorum_of_two_applies_the_transition_and_moves_the_alias(people, model):
    requested = client_for(people["carol"]).post(
        "/api/v1/transition-requests/",
        {"model": "fraud", "version": 1, "target": "production", "comment": "ready"},
        format="json",
    )
    assert requested.status_code == 201, requested.content
    body = requested.json()
    assert body["status"] == "PENDING"
    assert body["target"] == "Production"
    assert body["approvals_missing"] == 2
    request_id = body["id"]

    first = client_for(people["alice"]).post(f"/api/v1/transition-requests/{request_id}/approve/")
    assert first.json()["status"] == "PENDING"
    assert first.json()["approvals_missing"] == 1
    second = client_for(people["bob"]).post(
        f"/api/v1/transition-requests/{request_id}/approve/", {"comment": "lgtm"}, format="json"
    )
    assert second.status_code == 200
    assert second.json()["status"] == "APPLIED"
    version = ModelVersion.objects.get(model=model, version=1)
    assert version.stage == "Production"
    assert list(version.aliases.values_list("alias", flat=True)) == ["production"]
    types = list(
        Event.objects.filter(type__startswith="transition_request").values_list("type", flat=True)
    )
    assert types == [
        "transition_request.created",
        "transition_request.approval_recorded",
        "transition_request.approval_recorded",
        "transition_request.approved",
        "transition_request.applied",
    ]
    applied = Event.objects.get(type="model_version.stage_transitioned")
    assert applied.actor_name == "system"
    assert "approved by alice, bob" in applied.comment


def test_direct_transitions_to_a_guarded_stage_are_refused_for_everyone(people, model, admin_user):
    for user in (people["alice"], admin_user):
        response = client_for(user).post(
            "/api/v1/models/fraud/versions/1/stage/", {"stage": "Production"}, format="json"
        )
        assert response.status_code == 403
        assert "transition request" in response.json()["message"]
    mlflow = client_for(admin_user).post(
        "/api/2.0/mlflow/model-versions/transition-stage",
        {
            "name": "fraud",
            "version": "1",
            "stage": "Production",
            "archive_existing_versions": False,
        },
        format="json",
    )
    assert mlflow.status_code == 403
    assert mlflow.json()["error_code"] == "PERMISSION_DENIED"
    assert ModelVersion.objects.get(model=model, version=1).stage == "None"
    # Staging has no policy: a holder of the level moves directly.
    response = client_for(people["alice"]).post(
        "/api/v1/models/fraud/versions/1/stage/", {"stage": "Staging"}, format="json"
    )
    assert response.status_code == 200


def test_self_approval_is_refused_and_the_database_backs_it(people, model):
    request = (
        client_for(people["alice"])
        .post(
            "/api/v1/transition-requests/",
            {"model": "fraud", "version": 1, "target": "Production"},
            format="json",
        )
        .json()
    )
    response = client_for(people["alice"]).post(
        f"/api/v1/transition-requests/{request['id']}/approve/"
    )
    assert response.status_code == 403
    assert "someone else" in response.json()["message"]
    assert Review.objects.count() == 0
    with pytest.raises(IntegrityError):
        Review.objects.create(
            request_id=request["id"],
            reviewer=people["alice"],
            reviewer_name="alice",
            decision="APPROVE",
            created_at=TransitionRequest.objects.get().created_at,
            requester_id_copy=people["alice"].pk,
            self_approval_allowed=False,
        )


def test_one_rejection_ends_the_request_and_missing_tags_block_approval(people, model):
    registry_services.version_create(
        model=model, source="s3://m/2", actor=Actor(user=people["pipeline"])
    )
    carol = client_for(people["carol"])
    untagged = carol.post(
        "/api/v1/transition-requests/",
        {"model": "fraud", "version": 2, "target": "Production"},
        format="json",
    ).json()
    response = client_for(people["alice"]).post(
        f"/api/v1/transition-requests/{untagged['id']}/approve/"
    )
    assert response.status_code == 409
    assert "validation=passed" in response.json()["message"]
    rejected = client_for(people["bob"]).post(
        f"/api/v1/transition-requests/{untagged['id']}/reject/"
    )
    assert rejected.json()["status"] == "REJECTED"
    again = client_for(people["alice"]).post(
        f"/api/v1/transition-requests/{untagged['id']}/approve/"
    )
    assert again.status_code == 409


def test_waiting_for_me_and_cancel(people, model):
    carol = client_for(people["carol"])
    created = carol.post(
        "/api/v1/transition-requests/",
        {"model": "fraud", "version": 1, "target": "Production"},
        format="json",
    ).json()
    waiting = (
        client_for(people["alice"]).get("/api/v1/transition-requests/?waiting_for_me=true").json()
    )
    assert [item["id"] for item in waiting["results"]] == [created["id"]]
    assert carol.get("/api/v1/transition-requests/?waiting_for_me=true").json()["results"] == []
    cancelled = carol.post(f"/api/v1/transition-requests/{created['id']}/cancel/")
    assert cancelled.json()["status"] == "CANCELLED"


def test_apply_twice_applies_once(people, model):
    from workflows.services import request_apply

    carol = client_for(people["carol"])
    created = carol.post(
        "/api/v1/transition-requests/",
        {"model": "fraud", "version": 1, "target": "Production"},
        format="json",
    ).json()
    client_for(people["alice"]).post(f"/api/v1/transition-requests/{created['id']}/approve/")
    client_for(people["bob"]).post(f"/api/v1/transition-requests/{created['id']}/approve/")
    transitions = Event.objects.filter(type="model_version.stage_transitioned").count()
    request_apply(request_id=created["id"])
    assert Event.objects.filter(type="model_version.stage_transitioned").count() == transitions
    assert TransitionRequest.objects.get().status == "APPLIED"


def test_comments(people, model):
    alice = client_for(people["alice"])
    url = "/api/v1/models/fraud/versions/1/comments/"
    created = alice.post(url, {"text": "looks good"}, format="json")
    assert created.status_code == 201
    comment_id = created.json()["id"]
    assert (
        client_for(people["bob"])
        .patch(f"/api/v1/comments/{comment_id}/", {"text": "x"}, format="json")
        .status_code
        == 403
    )
    assert (
        alice.patch(f"/api/v1/comments/{comment_id}/", {"text": "edited"}, format="json").json()[
            "text"
        ]
        == "edited"
    )
    assert alice.delete(f"/api/v1/comments/{comment_id}/").status_code == 204
    activity = alice.get("/api/v1/models/fraud/versions/1/activity/").json()["results"]
    assert [item["type"] for item in activity][-3:] == [
        "comment.created",
        "comment.updated",
        "comment.deleted",
    ]
