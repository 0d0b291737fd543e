"""The Databricks workflow routes over raw HTTP: transition requests, comments, and
`databricks/model-versions/transition-stage` (reference §3.1, §3.2), plus one run of the real
Databricks SDK against a live server.

Celery runs eagerly and these tests commit (transaction=True), so the apply task runs when the
approval that reaches the quorum commits, as a worker would.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.actors import Actor
from accounts.tokens import token_create
from registry import services as registry_services
from registry.mlflow.rendering import millis
from registry.models import Event, ModelVersion
from registry.permissions import Level
from workflows.mlflow.activities import comment_actions, version_activities
from workflows.models import Comment, Review, TransitionRequest
from workflows.policies import policy_create

pytestmark = pytest.mark.django_db(transaction=True)

API = "/api/2.0/mlflow/"
PEOPLE = {
    "alice": Level.CAN_MANAGE_PRODUCTION_VERSIONS,
    "bob": Level.CAN_MANAGE_PRODUCTION_VERSIONS,
    "stan": Level.CAN_MANAGE_STAGING_VERSIONS,
    "carol": Level.CAN_READ,
    "dave": Level.CAN_READ,
}


def password(name: str) -> str:
    return f"{name}-password-1"


class Http:
    """One caller on the MLflow routes with HTTP Basic, sending what the Databricks SDK sends:
    JSON bodies for POST and PATCH, the query string for GET and DELETE."""

    def __init__(self, username: str) -> None:
        raw = base64.b64encode(f"{username}:{password(username)}".encode()).decode()
        self.client = Client(HTTP_AUTHORIZATION=f"Basic {raw}")

    def __call__(self, method: str, route: str, args: dict[str, Any] | None = None) -> Any:
        args = args or {}
        if method in ("GET", "DELETE"):
            query = f"?{urlencode(args)}" if args else ""
            return getattr(self.client, method.lower())(API + route + query)
        return getattr(self.client, method.lower())(
            API + route, json.dumps(args), content_type="application/json"
        )


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    return response.json()


def refused(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == code
    return body["message"]


def state() -> dict[str, Any]:
    """What a refused call must leave as it was (refused attempts that matter are kept as
    `…_refused` events: see `kept`)."""
    return {
        "events": list(
            Event.objects.exclude(type__endswith="_refused").values_list("seq", flat=True)
        ),
        "requests": list(
            TransitionRequest.objects.order_by("pk").values_list(
                "pk", "status", "archive_existing_versions"
            )
        ),
        "reviews": list(Review.objects.values_list("pk", flat=True)),
        "comments": list(Comment.objects.order_by("pk").values_list("pk", "text")),
        "versions": list(ModelVersion.objects.order_by("pk").values_list("version", "stage")),
    }


def kept() -> list[tuple[str, str, str, str]]:
    """The refused attempts in the history: type, who tried, through which door, why."""
    return [
        (event.type, event.actor_name, event.source, event.after["refusal"])
        for event in Event.objects.filter(type__endswith="_refused").order_by("seq")
    ]


def seq_of(type: str, **after: Any) -> str:
    """The id of the activity an event is: its sequence number, as a string."""
    events = Event.objects.filter(type=type)
    for key, value in after.items():
        events = events.filter(**{f"after__{key}": value})
    return str(events.latest("seq").seq)


@pytest.fixture
def people(django_user_model):
    make = django_user_model.objects.create_user
    return {
        name: make(username=name, password=password(name))
        for name in ("pipeline", *PEOPLE, "mallory")
    }


@pytest.fixture
def model(people):
    """`fraud` by pipeline (CAN_MANAGE as its creator): v1 tagged validation=passed, v2; the
    registry-wide Production policy asks for two approvals and moves the `production` alias."""
    pipeline = Actor(user=people["pipeline"])
    model = registry_services.model_create(name="fraud", actor=pipeline)
    for n in (1, 2):
        registry_services.version_create(model=model, source=f"s3://m/{n}", actor=pipeline)
    registry_services.version_tag_set(
        version=ModelVersion.objects.get(model=model, version=1),
        key="validation",
        value="passed",
        actor=pipeline,
    )
    registry_services.permissions_update(
        model=model, actor=Actor.system(), users=dict(PEOPLE), groups={}
    )
    registry_services.model_create(name="hidden", actor=pipeline)
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


@pytest.fixture
def http(people):
    return {name: Http(name) for name in people}


def create(http: dict[str, Http], who: str, stage: str, version: str = "1", **extra: Any) -> Any:
    return http[who](
        "POST",
        "transition-requests/create",
        {"name": "fraud", "version": version, "stage": stage, **extra},
    )


def approve(http: dict[str, Http], who: str, stage: str, archive: bool = False, **extra: Any):
    return http[who](
        "POST",
        "transition-requests/approve",
        {
            "name": "fraud",
            "version": "1",
            "stage": stage,
            "archive_existing_versions": archive,
            **extra,
        },
    )


# --- the flow -------------------------------------------------------------------------------


def test_quorum_of_two_through_the_databricks_routes(http, model):
    created = ok(create(http, "carol", "production", comment="ready"))
    request = TransitionRequest.objects.get()
    assert created == {
        "request": {
            "available_actions": ["CANCEL_TRANSITION_REQUEST"],
            "comment": "ready",
            "creation_timestamp": millis(request.created_at),
            "to_stage": "Production",
            "user_id": "carol",
        }
    }
    requested_id = seq_of("transition_request.created", id=request.pk)
    listed = ok(http["alice"]("GET", "transition-requests/list", {"name": "fraud", "version": 1}))
    assert listed == {
        "requests": [
            {
                "activity_type": "REQUESTED_TRANSITION",
                "comment": "ready",
                "creation_timestamp": millis(request.created_at),
                "from_stage": "None",
                "id": requested_id,
                "last_updated_timestamp": millis(request.updated_at),
                "system_comment": "0 of 2 approvals; approvers need "
                "CAN_MANAGE_PRODUCTION_VERSIONS.",
                "to_stage": "Production",
                "user_id": "carol",
                "available_actions": ["APPROVE_TRANSITION_REQUEST", "REJECT_TRANSITION_REQUEST"],
            }
        ]
    }
    # The requester may only cancel; the model's manager may also cancel; stan lacks the level.
    actions = {
        who: ok(http[who]("GET", "transition-requests/list", {"name": "fraud", "version": "1"}))[
            "requests"
        ][0].get("available_actions")
        for who in ("carol", "stan", "pipeline")
    }
    assert actions == {
        "carol": ["CANCEL_TRANSITION_REQUEST"],
        "stan": None,
        # pipeline registered the version: the policy forbids it to approve, not to reject.
        "pipeline": ["REJECT_TRANSITION_REQUEST", "CANCEL_TRANSITION_REQUEST"],
    }

    first = ok(approve(http, "alice", "Production"))
    assert first == {
        "activity": {
            "activity_type": "APPROVED_REQUEST",
            "creation_timestamp": first["activity"]["creation_timestamp"],
            "from_stage": "None",
            "id": seq_of("transition_request.approval_recorded", id=request.pk),
            "last_updated_timestamp": first["activity"]["creation_timestamp"],
            "system_comment": "1 of 2 approvals; approvers need CAN_MANAGE_PRODUCTION_VERSIONS.",
            "to_stage": "Production",
            "user_id": "alice",
        }
    }
    assert ModelVersion.objects.get(model=model, version=1).stage == "None"
    before = state()
    again = approve(http, "alice", "Production")
    assert "already decided" in refused(again, 409, "RESOURCE_CONFLICT")
    assert state() == before

    second = ok(approve(http, "bob", "Production", comment="lgtm"))["activity"]
    assert second["activity_type"] == "APPROVED_REQUEST"
    assert second["comment"] == "lgtm"
    assert second["user_id"] == "bob"
    assert second["system_comment"] == (
        "Applied: version 1 is in Production and alias 'production' points at it."
    )

    # A client that approves and then reads sees the transition applied, alias included.
    version = ok(http["carol"]("GET", "model-versions/get", {"name": "fraud", "version": "1"}))
    assert version["model_version"]["current_stage"] == "Production"
    assert version["model_version"]["aliases"] == ["production"]
    by_alias = ok(
        http["carol"]("GET", "registered-models/alias", {"name": "fraud", "alias": "production"})
    )
    assert by_alias["model_version"]["version"] == "1"
    assert (
        ok(http["alice"]("GET", "transition-requests/list", {"name": "fraud", "version": "1"}))
        == {}
    )
    assert TransitionRequest.objects.get().status == "APPLIED"
    assert list(
        Event.objects.filter(type__startswith="transition_request").values_list(
            "type", "actor_name", "source"
        )
    ) == [
        ("transition_request.created", "carol", "mlflow"),
        ("transition_request.approval_recorded", "alice", "mlflow"),
        ("transition_request.approval_recorded", "bob", "mlflow"),
        ("transition_request.approved", "bob", "mlflow"),
        ("transition_request.applied", "system", "task"),
    ]


def test_self_approval_is_refused_and_changes_nothing(http, model):
    ok(create(http, "alice", "Production"))
    before = state()
    message = refused(approve(http, "alice", "Production"), 403, "PERMISSION_DENIED")
    assert message == (
        "You requested this transition; the policy needs someone else to approve it."
    )
    assert state() == before
    # The version's creator may not approve either (pipeline is also CAN_MANAGE).
    message = refused(approve(http, "pipeline", "Production"), 403, "PERMISSION_DENIED")
    assert "You registered this version" in message
    assert state() == before
    # A reviewer without the level is refused too; a reader is refused for the level first.
    assert "needs CAN_MANAGE_PRODUCTION_VERSIONS" in refused(
        approve(http, "stan", "Production"), 403, "PERMISSION_DENIED"
    )
    assert state() == before
    # Each denied approval is kept in the history.
    assert [(type, who, source) for type, who, source, _ in kept()] == [
        ("transition_request.approval_refused", "alice", "mlflow"),
        ("transition_request.approval_refused", "pipeline", "mlflow"),
        ("transition_request.approval_refused", "stan", "mlflow"),
    ]
    assert kept()[0][3] == (
        "You requested this transition; the policy needs someone else to approve it."
    )


def test_approve_decides_the_oldest_request_the_caller_may_decide(http, model):
    ok(create(http, "alice", "Production"))
    ok(create(http, "carol", "Production"))
    alices, carols = TransitionRequest.objects.order_by("created_at", "pk")
    # alice may not approve her own (the oldest): hers is skipped, carol's gets the approval.
    activity = ok(approve(http, "alice", "Production"))["activity"]
    assert activity["id"] == seq_of("transition_request.approval_recorded", id=carols.pk)
    assert list(Review.objects.values_list("request_id", "reviewer_name")) == [(carols.pk, "alice")]
    # bob may decide both: the oldest, alice's, is his.
    ok(approve(http, "bob", "Production"))
    assert list(Review.objects.order_by("pk").values_list("request_id", "reviewer_name")) == [
        (carols.pk, "alice"),
        (alices.pk, "bob"),
    ]


def test_reject_ends_the_request(http, model):
    ok(create(http, "carol", "Production", comment="please"))
    request = TransitionRequest.objects.get()
    before = state()
    refused(
        http["carol"](
            "POST",
            "transition-requests/reject",
            {"name": "fraud", "version": "1", "stage": "Production"},
        ),
        403,
        "PERMISSION_DENIED",
    )
    assert state() == before
    assert [(type, who) for type, who, _, _ in kept()] == [
        ("transition_request.rejection_refused", "carol")
    ]
    rejected = ok(
        http["bob"](
            "POST",
            "transition-requests/reject",
            {"name": "fraud", "version": "1", "stage": "Production", "comment": "not yet"},
        )
    )["activity"]
    assert rejected == {
        "activity_type": "REJECTED_REQUEST",
        "comment": "not yet",
        "creation_timestamp": rejected["creation_timestamp"],
        "from_stage": "None",
        "id": seq_of("transition_request.rejected", id=request.pk),
        "last_updated_timestamp": rejected["creation_timestamp"],
        "to_stage": "Production",
        "user_id": "bob",
    }
    assert TransitionRequest.objects.get().status == "REJECTED"
    before = state()
    message = refused(approve(http, "alice", "Production"), 409, "RESOURCE_CONFLICT")
    assert message == (
        f"No pending transition request for version 1 of 'fraud' to Production: request "
        f"#{request.pk} by carol is REJECTED, not PENDING."
    )
    assert state() == before
    assert (
        ok(http["bob"]("GET", "transition-requests/list", {"name": "fraud", "version": "1"})) == {}
    )


def test_delete_cancels_the_creators_request(http, model):
    ok(create(http, "carol", "Production"))
    ok(create(http, "dave", "Production"))
    carols = TransitionRequest.objects.get(requester_name="carol")
    args = {"name": "fraud", "version": "1", "stage": "Production", "creator": "carol"}
    before = state()
    # alice may approve it, but only its requester or a CAN_MANAGE holder may cancel it.
    assert "requester or a CAN_MANAGE holder" in refused(
        http["alice"]("DELETE", "transition-requests/delete", args), 403, "PERMISSION_DENIED"
    )
    assert "by nobody" in refused(
        http["carol"]("DELETE", "transition-requests/delete", {**args, "creator": "nobody"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert state() == before
    cancelled = ok(
        http["carol"]("DELETE", "transition-requests/delete", {**args, "comment": "withdrawn"})
    )["activity"]
    assert cancelled == {
        "activity_type": "CANCELLED_REQUEST",
        "comment": "withdrawn",
        "creation_timestamp": cancelled["creation_timestamp"],
        "from_stage": "None",
        "id": seq_of("transition_request.cancelled", id=carols.pk),
        "last_updated_timestamp": cancelled["creation_timestamp"],
        "to_stage": "Production",
        "user_id": "carol",
    }
    before = state()
    assert "is CANCELLED, not PENDING" in refused(
        http["carol"]("DELETE", "transition-requests/delete", args), 409, "RESOURCE_CONFLICT"
    )
    assert state() == before
    # The model's manager cancels someone else's, with the arguments in a JSON body this time.
    response = http["pipeline"].client.delete(
        API + "transition-requests/delete",
        json.dumps({**args, "creator": "dave"}),
        content_type="application/json",
    )
    assert ok(response)["activity"]["user_id"] == "pipeline"
    assert dict(TransitionRequest.objects.values_list("requester_name", "status")) == {
        "carol": "CANCELLED",
        "dave": "CANCELLED",
    }


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "method", "route", "args", "status", "code", "message"),
    [
        pytest.param(
            "mallory",
            "POST",
            "transition-requests/create",
            {"name": "fraud", "version": "1", "stage": "Staging"},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "Registered Model with name=fraud not found",
            id="create on a model the caller cannot see",
        ),
        pytest.param(
            "carol",
            "POST",
            "transition-requests/create",
            {"name": "hidden", "version": "1", "stage": "Staging"},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "Registered Model with name=hidden not found",
            id="create on another invisible model",
        ),
        pytest.param(
            "carol",
            "POST",
            "transition-requests/create",
            {"name": "fraud", "version": "9", "stage": "Staging"},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "Model Version (name=fraud, version=9) not found",
            id="create for an unknown version",
        ),
        pytest.param(
            "carol",
            "POST",
            "transition-requests/create",
            {"name": "fraud", "version": "1"},
            400,
            "INVALID_PARAMETER_VALUE",
            "Missing value for required parameter 'stage'.",
            id="create without a stage",
        ),
        pytest.param(
            "carol",
            "POST",
            "transition-requests/create",
            {"name": "fraud", "version": "1", "stage": "None"},
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid value 'None' for parameter 'stage' supplied: a request targets Staging, "
            "Production or Archived.",
            id="create for None",
        ),
        pytest.param(
            "carol",
            "POST",
            "transition-requests/create",
            {"name": "fraud", "version": "1", "stage": "alias:production"},
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid stage 'alias:production': expected one of None, Staging, Production, "
            "Archived.",
            id="create for an alias",
        ),
        pytest.param(
            "alice",
            "POST",
            "transition-requests/approve",
            {"name": "fraud", "version": "1", "stage": "Staging"},
            400,
            "INVALID_PARAMETER_VALUE",
            "Missing value for required parameter 'archive_existing_versions'.",
            id="approve without archive_existing_versions",
        ),
        pytest.param(
            "alice",
            "POST",
            "transition-requests/approve",
            {
                "name": "fraud",
                "version": "1",
                "stage": "Archived",
                "archive_existing_versions": True,
            },
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid value True for parameter 'archive_existing_versions' supplied: only for "
            "Staging or Production targets.",
            id="approve archiving for Archived",
        ),
        pytest.param(
            "alice",
            "POST",
            "transition-requests/approve",
            {
                "name": "fraud",
                "version": "2",
                "stage": "Staging",
                "archive_existing_versions": False,
            },
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "No transition request for version 2 of 'fraud' to Staging.",
            id="approve with no request",
        ),
        pytest.param(
            "mallory",
            "GET",
            "transition-requests/list",
            {"name": "fraud", "version": "1"},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "Registered Model with name=fraud not found",
            id="list on a model the caller cannot see",
        ),
        pytest.param(
            "carol",
            "DELETE",
            "transition-requests/delete",
            {"name": "fraud", "version": "1", "stage": "Staging"},
            400,
            "INVALID_PARAMETER_VALUE",
            "Missing value for required parameter 'creator'.",
            id="delete without a creator",
        ),
        pytest.param(
            "carol",
            "GET",
            "transition-requests/create",
            {"name": "fraud", "version": "1", "stage": "Staging"},
            404,
            "ENDPOINT_NOT_FOUND",
            "No API endpoint GET /api/2.0/mlflow/transition-requests/create.",
            id="wrong method",
        ),
        pytest.param(
            "carol",
            "POST",
            "comments/create",
            {"name": "fraud", "version": "1"},
            400,
            "INVALID_PARAMETER_VALUE",
            "Missing value for required parameter 'comment'.",
            id="comment without text",
        ),
        pytest.param(
            "carol",
            "PATCH",
            "comments/update",
            {"id": "abc", "comment": "x"},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "Comment abc not found",
            id="comment id that cannot exist",
        ),
        pytest.param(
            "carol",
            "DELETE",
            "comments/delete",
            {},
            400,
            "INVALID_PARAMETER_VALUE",
            "Missing value for required parameter 'id'.",
            id="comment delete without an id",
        ),
        pytest.param(
            "carol",
            "POST",
            "databricks/model-versions/transition-stage",
            {
                "name": "fraud",
                "version": "1",
                "stage": "Staging",
                "archive_existing_versions": False,
            },
            403,
            "PERMISSION_DENIED",
            "CAN_MANAGE_STAGING_VERSIONS on registered model 'fraud' is needed for this; you "
            "have CAN_READ.",
            id="transition-stage below the level",
        ),
        pytest.param(
            "alice",
            "POST",
            "databricks/model-versions/transition-stage",
            {"name": "fraud", "version": "1", "stage": "Staging"},
            400,
            "INVALID_PARAMETER_VALUE",
            "Missing value for required parameter 'archive_existing_versions'.",
            id="transition-stage without archive_existing_versions",
        ),
        pytest.param(
            "alice",
            "POST",
            "databricks/model-versions/transition-stage",
            {
                "name": "fraud",
                "version": "1",
                "stage": "Archived",
                "archive_existing_versions": True,
            },
            400,
            "INVALID_PARAMETER_VALUE",
            "archive_existing_versions is only allowed when moving to Staging or Production, "
            "not to Archived.",
            id="transition-stage archiving for Archived",
        ),
    ],
)
def test_refusals_have_the_mlflow_code_and_change_nothing(
    http, model, who, method, route, args, status, code, message
):
    ok(create(http, "dave", "Staging"))
    before = state()
    assert refused(http[who](method, route, args), status, code) == message
    assert state() == before


def test_a_read_only_token_writes_nothing(http, model, people, client):
    registry_services.permissions_update(
        model=model, actor=Actor.system(), users={"carol": Level.CAN_MANAGE}, groups={}
    )
    ok(create(http, "dave", "Staging"))
    comment = Comment.objects.create(
        version=ModelVersion.objects.get(model=model, version=1),
        author=people["carol"],
        author_name="carol",
        text="mine",
        created_at=TransitionRequest.objects.get().created_at,
        updated_at=TransitionRequest.objects.get().created_at,
    )
    secret = token_create(user=people["carol"], read_only=True).secret
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    before = state()
    calls = [
        (
            "post",
            "transition-requests/create",
            {"name": "fraud", "version": "2", "stage": "Staging"},
        ),
        (
            "post",
            "transition-requests/approve",
            {
                "name": "fraud",
                "version": "1",
                "stage": "Staging",
                "archive_existing_versions": False,
            },
        ),
        (
            "post",
            "transition-requests/reject",
            {"name": "fraud", "version": "1", "stage": "Staging"},
        ),
        (
            "delete",
            "transition-requests/delete",
            {"name": "fraud", "version": "1", "stage": "Staging", "creator": "dave"},
        ),
        ("post", "comments/create", {"name": "fraud", "version": "1", "comment": "x"}),
        ("patch", "comments/update", {"id": str(comment.pk), "comment": "x"}),
        ("delete", "comments/delete", {"id": str(comment.pk)}),
    ]
    for method, route, body in calls:
        response = getattr(client, method)(
            API + route, json.dumps(body), content_type="application/json", **auth
        )
        refused(response, 403, "PERMISSION_DENIED")
    assert state() == before
    # Its attempts to decide are kept; the others are plain permission errors.
    assert [(type, why) for type, _, _, why in kept()] == [
        ("transition_request.approval_refused", "This API token is read-only."),
        ("transition_request.rejection_refused", "This API token is read-only."),
    ]
    # It still reads, and is offered no action.
    listed = client.get(API + "transition-requests/list?name=fraud&version=1", **auth)
    assert "available_actions" not in ok(listed)["requests"][0]


def test_every_mlflow_prefix_serves_the_routes(http, model):
    for prefix in ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/", "/api/2.0/preview/mlflow/"):
        response = http["carol"].client.get(
            prefix + "transition-requests/list?name=fraud&version=1"
        )
        assert ok(response) == {}


# --- Databricks transition-stage ------------------------------------------------------------


def test_databricks_transition_stage_refuses_a_guarded_stage_for_everyone(http, model, people):
    people["pipeline"].is_superuser = True
    people["pipeline"].save()
    before = state()
    for who in ("alice", "pipeline"):
        message = refused(
            http[who](
                "POST",
                "databricks/model-versions/transition-stage",
                {
                    "name": "fraud",
                    "version": "1",
                    "stage": "Production",
                    "archive_existing_versions": True,
                    "comment": "ship it",
                },
            ),
            403,
            "PERMISSION_DENIED",
        )
        assert message == (
            "Stage Production of model 'fraud' is protected by an approval policy: ask for it "
            "with a transition request (POST /api/v1/transition-requests/, or "
            "transition-requests/create on the MLflow routes)."
        )
    assert state() == before
    assert kept() == [
        ("model_version.stage_transition_refused", who, "mlflow", message)
        for who in ("alice", "pipeline")
    ]
    refusal = Event.objects.get(type="model_version.stage_transition_refused", actor_name="alice")
    assert (refusal.before["stage"], refusal.after["stage"], refusal.comment) == (
        "None",
        "Production",
        "ship it",
    )


def test_databricks_transition_stage_answers_the_databricks_version(http, model):
    ok(create(http, "carol", "Production", comment="when staged"))
    request = TransitionRequest.objects.get()
    body = ok(
        http["alice"](
            "POST",
            "databricks/model-versions/transition-stage",
            {
                "name": "fraud",
                "version": 1,
                "stage": "staging",
                "archive_existing_versions": False,
                "comment": "smoke tests next",
            },
        )
    )
    version = ModelVersion.objects.get(model=model, version=1)
    assert body == {
        "model_version_databricks": {
            "name": "fraud",
            "version": "1",
            "creation_timestamp": millis(version.created_at),
            "last_updated_timestamp": millis(version.updated_at),
            "user_id": "pipeline",
            "current_stage": "Staging",
            "source": "s3://m/1",
            "status": "READY",
            "tags": [{"key": "validation", "value": "passed"}],
            "open_requests": [
                {
                    "activity_type": "REQUESTED_TRANSITION",
                    "comment": "when staged",
                    "creation_timestamp": millis(request.created_at),
                    "from_stage": "None",
                    "id": seq_of("transition_request.created", id=request.pk),
                    "last_updated_timestamp": millis(request.updated_at),
                    "system_comment": "0 of 2 approvals; approvers need "
                    "CAN_MANAGE_PRODUCTION_VERSIONS.",
                    "to_stage": "Production",
                    "user_id": "carol",
                    "available_actions": [
                        "APPROVE_TRANSITION_REQUEST",
                        "REJECT_TRANSITION_REQUEST",
                    ],
                }
            ],
            "permission_level": "CAN_MANAGE_PRODUCTION_VERSIONS",
            "email_subscription_status": "DEFAULT",
        }
    }
    transition = Event.objects.filter(type="model_version.stage_transitioned").latest("seq")
    assert (transition.actor_name, transition.comment, transition.source) == (
        "alice",
        "smoke tests next",
        "mlflow",
    )
    # The request was made from None; now that the version moved, approving it fails to apply
    # (the request no longer makes sense) rather than skipping Staging's history.
    ok(approve(http, "alice", "Production"))
    second = ok(approve(http, "bob", "Production"))["activity"]
    assert second["system_comment"] == (
        "Approved, but it could not be applied: Version 1 moved from None to Staging after the "
        "request; it no longer makes sense."
    )
    assert ModelVersion.objects.get(model=model, version=1).stage == "Staging"


# --- archiving on approve -------------------------------------------------------------------


@pytest.mark.parametrize("archive", [True, False])
def test_approve_archives_as_the_approver_says_where_no_policy_governs(http, model, archive):
    """Staging has no policy (Databricks' rules): the approver's archive choice counts."""
    ok(
        http["stan"](
            "POST",
            "databricks/model-versions/transition-stage",
            {
                "name": "fraud",
                "version": "2",
                "stage": "Staging",
                "archive_existing_versions": False,
            },
        )
    )
    ok(create(http, "carol", "Staging"))
    activity = ok(approve(http, "stan", "Staging", archive=archive))["activity"]
    assert activity["system_comment"] == "Applied: version 1 is in Staging."
    assert dict(ModelVersion.objects.filter(model=model).values_list("version", "stage")) == {
        1: "Staging",
        2: "Archived" if archive else "Staging",
    }


def test_a_policys_archive_choice_stands_whatever_the_approver_sends(http, model):
    ok(
        http["stan"](
            "POST",
            "databricks/model-versions/transition-stage",
            {
                "name": "fraud",
                "version": "2",
                "stage": "Staging",
                "archive_existing_versions": False,
            },
        )
    )
    policy_create(actor=Actor.system(), model=model, target="Staging", allow_self_approval=True)
    ok(create(http, "carol", "Staging"))
    ok(approve(http, "stan", "Staging", archive=True))
    assert TransitionRequest.objects.get().archive_existing_versions is False
    assert dict(ModelVersion.objects.filter(model=model).values_list("version", "stage")) == {
        1: "Staging",
        2: "Staging",
    }


# --- comments -------------------------------------------------------------------------------


def test_comments_create_update_delete(http, model, people):
    created = ok(
        http["carol"](
            "POST", "comments/create", {"name": "fraud", "version": "1", "comment": "lgtm"}
        )
    )
    comment = Comment.objects.get()
    assert created == {
        "comment": {
            "available_actions": ["EDIT_COMMENT", "DELETE_COMMENT"],
            "comment": "lgtm",
            "creation_timestamp": millis(comment.created_at),
            "id": str(comment.pk),
            "last_updated_timestamp": millis(comment.updated_at),
            "user_id": "carol",
        }
    }
    # Others see what they may do with it: the manager may delete it, a reviewer nothing.
    as_manager = Actor(user=people["pipeline"])
    assert comment_actions(comment, as_manager) == ["DELETE_COMMENT"]
    assert comment_actions(comment, Actor(user=people["alice"])) == []

    before = state()
    assert (
        refused(
            http["alice"]("PATCH", "comments/update", {"id": str(comment.pk), "comment": "no"}),
            403,
            "PERMISSION_DENIED",
        )
        == "Only the author can change this comment."
    )
    refused(
        http["alice"]("DELETE", "comments/delete", {"id": str(comment.pk)}),
        403,
        "PERMISSION_DENIED",
    )
    refused(
        http["mallory"]("PATCH", "comments/update", {"id": str(comment.pk), "comment": "no"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert state() == before

    updated = ok(
        http["carol"]("PATCH", "comments/update", {"id": comment.pk, "comment": "lgtm, ship it"})
    )["comment"]
    comment.refresh_from_db()
    assert updated == {
        "available_actions": ["EDIT_COMMENT", "DELETE_COMMENT"],
        "comment": "lgtm, ship it",
        "creation_timestamp": created["comment"]["creation_timestamp"],
        "id": str(comment.pk),
        "last_updated_timestamp": millis(comment.updated_at),
        "user_id": "carol",
    }
    assert ok(http["carol"]("DELETE", "comments/delete", {"id": str(comment.pk)})) == {}
    assert Comment.objects.count() == 0
    refused(
        http["carol"]("DELETE", "comments/delete", {"id": str(comment.pk)}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert list(
        Event.objects.filter(type__startswith="comment.").values_list("type", "actor_name")
    ) == [("comment.created", "carol"), ("comment.updated", "carol"), ("comment.deleted", "carol")]


# --- the activity feed ----------------------------------------------------------------------


def test_version_activities_cover_every_activity_type(http, model, people):
    ok(
        http["stan"](
            "POST",
            "databricks/model-versions/transition-stage",
            {
                "name": "fraud",
                "version": "2",
                "stage": "Staging",
                "archive_existing_versions": False,
                "comment": "first",
            },
        )
    )
    ok(create(http, "carol", "Staging", comment="me next"))
    ok(create(http, "dave", "Archived"))
    ok(
        http["dave"](
            "DELETE",
            "transition-requests/delete",
            {"name": "fraud", "version": "1", "stage": "Archived", "creator": "dave"},
        )
    )
    ok(approve(http, "stan", "Staging", archive=True, comment="ok"))
    ok(http["carol"]("POST", "comments/create", {"name": "fraud", "version": "1", "comment": "a"}))
    gone = ok(
        http["carol"]("POST", "comments/create", {"name": "fraud", "version": "1", "comment": "b"})
    )
    ok(http["carol"]("DELETE", "comments/delete", {"id": gone["comment"]["id"]}))

    viewer = Actor(user=people["carol"])
    v1 = version_activities(viewer=viewer, version=ModelVersion.objects.get(model=model, version=1))
    assert [
        (a["activity_type"], a["user_id"], a.get("from_stage"), a.get("to_stage"), a.get("comment"))
        for a in v1
    ] == [
        ("REQUESTED_TRANSITION", "carol", "None", "Staging", "me next"),
        ("REQUESTED_TRANSITION", "dave", "None", "Archived", None),
        ("CANCELLED_REQUEST", "dave", "None", "Archived", None),
        ("APPROVED_REQUEST", "stan", "None", "Staging", "ok"),
        ("APPLIED_TRANSITION", "system", "None", "Staging", None),
        ("NEW_COMMENT", "carol", None, None, "a"),
    ]
    applied = v1[4]
    assert applied["system_comment"].startswith("Applying request #")
    assert v1[5]["available_actions"] == ["EDIT_COMMENT", "DELETE_COMMENT"]
    assert len({a["id"] for a in v1}) == len(v1)
    v2 = version_activities(viewer=viewer, version=ModelVersion.objects.get(model=model, version=2))
    assert [
        (a["activity_type"], a["user_id"], a["from_stage"], a["to_stage"], a.get("comment"))
        for a in v2
    ] == [
        ("APPLIED_TRANSITION", "stan", "None", "Staging", "first"),
        ("SYSTEM_TRANSITION", "system", "Staging", "Archived", None),
    ]
    assert v2[1]["system_comment"] == (
        "Archived because version 1 moved to Staging. " + applied["system_comment"]
    )


# --- the Databricks SDK ---------------------------------------------------------------------


def test_the_databricks_sdk_drives_the_flow(live_server, model, people):
    """databricks-sdk's ModelRegistryAPI, unmodified, with personal access tokens."""
    sdk = pytest.importorskip("databricks.sdk")
    from databricks.sdk.errors import PermissionDenied as SdkPermissionDenied

    def workspace(name: str) -> Any:
        secret = token_create(user=people[name]).secret
        return sdk.WorkspaceClient(host=live_server.url, token=secret, auth_type="pat")

    carol, alice, bob = workspace("carol"), workspace("alice"), workspace("bob")
    created = carol.model_registry.create_transition_request(
        "fraud", "1", "Production", comment="ready"
    )
    assert created.request.to_stage == "Production"
    assert [a.value for a in created.request.available_actions] == ["CANCEL_TRANSITION_REQUEST"]
    with pytest.raises(SdkPermissionDenied):
        carol.model_registry.approve_transition_request("fraud", "1", "Production", False)
    listed = alice.model_registry.list_transition_requests("fraud", "1")
    assert [(a.activity_type.value, a.user_id, a.to_stage) for a in listed] == [
        ("REQUESTED_TRANSITION", "carol", "Production")
    ]
    alice.model_registry.approve_transition_request("fraud", "1", "Production", True)
    approved = bob.model_registry.approve_transition_request(
        "fraud", "1", "Production", True, comment="lgtm"
    )
    assert approved.activity.activity_type.value == "APPROVED_REQUEST"
    version = carol.model_registry.get_model_version("fraud", "1").model_version
    assert version.current_stage == "Production"
    assert list(alice.model_registry.list_transition_requests("fraud", "1")) == []

    comment = bob.model_registry.create_comment("fraud", "1", "shipped").comment
    assert [a.value for a in comment.available_actions] == ["EDIT_COMMENT", "DELETE_COMMENT"]
    edited = bob.model_registry.update_comment(comment.id, "shipped on Monday").comment
    assert edited.comment == "shipped on Monday"
    bob.model_registry.delete_comment(comment.id)
    assert Comment.objects.count() == 0

    moved = bob.model_registry.transition_stage("fraud", "2", "Staging", False, comment="next")
    assert moved.model_version_databricks.current_stage == "Staging"
    assert moved.model_version_databricks.permission_level.value == "CAN_MANAGE_PRODUCTION_VERSIONS"
    with pytest.raises(SdkPermissionDenied):
        bob.model_registry.transition_stage("fraud", "2", "Production", False)


def test_registry_wide_grant_sees_the_routes(http, model, people):
    """A registry-wide CAN_MANAGE holder (not a superuser) approves any model's request."""
    wide = people["mallory"]
    wide.user_permissions.add(
        Permission.objects.get(codename="can_manage", content_type__app_label="registry")
    )
    ok(create(http, "carol", "Staging"))
    assert ok(approve(http, "mallory", "Staging"))["activity"]["user_id"] == "mallory"
    assert ModelVersion.objects.get(model=model, version=1).stage == "Staging"
