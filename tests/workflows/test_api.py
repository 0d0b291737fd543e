"""The workflow's native API: transition requests and policies, bodies and error shapes.

Most tests are non-transactional, so the apply task queued on commit does not run and the
approve view's bounded wait is set to zero; the tests that follow an approval to APPLIED are
transactional, where the eager task runs at commit as it would under a worker.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.fields import DateTimeField
from rest_framework.test import APIClient

from accounts.actors import Actor
from accounts.tokens import token_create
from registry import services as registry_services
from registry.choices import Stage
from registry.models import Event, ModelVersion
from tests.workflows.scenario import World, build_world, last_seq, state, types_since
from workflows.choices import RequestStatus
from workflows.models import Comment, Policy, TransitionRequest
from workflows.policies import policy_create
from workflows.services import request_approve, request_create, request_reject

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system()
REQUESTS = "/api/v1/transition-requests/"
POLICIES = "/api/v1/policies/"


@pytest.fixture(autouse=True)
def _no_wait(settings):
    settings.MODELGATE_APPROVE_WAIT_SECONDS = 0


@pytest.fixture
def world(django_user_model) -> World:
    return build_world(django_user_model)


def client(world: World, name: str) -> APIClient:
    api = APIClient()
    api.force_authenticate(user=world.users[name])
    return api


def token_client(world: World, name: str, *, read_only: bool = False) -> APIClient:
    api = APIClient()
    secret = token_create(user=world.users[name], read_only=read_only).secret
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api


def iso(value) -> str | None:
    return DateTimeField().to_representation(value) if value is not None else None


def request_body(pk: int) -> dict:
    """The API's representation of a request, built from the row."""
    request = TransitionRequest.objects.select_related("model", "version").get(pk=pk)
    reviews = list(request.reviews.order_by("created_at"))
    approvals = sum(1 for review in reviews if review.decision == "APPROVE")
    return {
        "id": request.pk,
        "model": request.model.name,
        "version": request.version.version,
        "target": request.target,
        "from_stage": request.from_stage,
        "status": request.status,
        "status_reason": request.status_reason,
        "requester": request.requester_name,
        "comment": request.comment,
        "required_approvals": request.required_approvals,
        "approvals_missing": max(0, request.required_approvals - approvals),
        "approver_level": request.approver_level,
        "allow_self_approval": request.allow_self_approval,
        "required_tags": request.required_tags,
        "archive_existing_versions": request.archive_existing_versions,
        "move_alias": request.move_alias,
        "reviews": [
            {
                "reviewer": review.reviewer_name,
                "decision": review.decision,
                "comment": review.comment,
                "created_at": iso(review.created_at),
            }
            for review in reviews
        ],
        "created_at": iso(request.created_at),
        "updated_at": iso(request.updated_at),
        "expires_at": iso(request.expires_at),
        "decided_at": iso(request.decided_at),
        "applied_at": iso(request.applied_at),
    }


def policy_body(pk: int) -> dict:
    policy = Policy.objects.select_related("model").get(pk=pk)
    return {
        "id": policy.pk,
        "model": policy.model.name if policy.model else None,
        "target": policy.target,
        "required_approvals": policy.required_approvals,
        "approver_level": policy.approver_level,
        "allow_self_approval": policy.allow_self_approval,
        "required_tags": policy.required_tags,
        "expires_after_hours": policy.expires_after_hours,
        "archive_existing_versions": policy.archive_existing_versions,
        "move_alias": policy.move_alias,
        "created_at": iso(policy.created_at),
        "updated_at": iso(policy.updated_at),
    }


def production_policy(**values: object) -> Policy:
    values = {"required_approvals": 2, "required_tags": {"validation": "passed"}, **values}
    return policy_create(actor=SYSTEM, model=None, target="Production", **values)


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def assert_error(response, status: int, code: str, message: str, fields=None) -> None:
    body = {"code": code, "message": message}
    if fields is not None:
        body["fields"] = fields
    assert (response.status_code, response.json()) == (status, body)


@pytest.fixture
def requests(world) -> dict[str, TransitionRequest]:
    """Four requests: two pending on fraud, one rejected on fraud, one pending on churn."""
    production_policy()
    carol, ed = world.actor("carol"), world.actor("ed")
    made = {
        "prod": request_create(version=world.version(1), target="Production", actor=carol),
        "staging": request_create(version=world.version(2), target="Staging", actor=ed),
        "rejected": request_create(version=world.version(2), target="Production", actor=carol),
        "hidden": request_create(
            version=world.version(1, world.hidden), target="Staging", actor=world.actor("root")
        ),
    }
    request_reject(request=made["rejected"], actor=world.actor("alice"), comment="no")
    return made


# --- listing and reading ----------------------------------------------------------------------


def test_the_list_shows_what_the_caller_may_see_newest_first(world, requests):
    everything = [requests[key].pk for key in ("hidden", "rejected", "staging", "prod")]
    assert ids(client(world, "root").get(REQUESTS)) == everything
    assert ids(client(world, "carol").get(REQUESTS)) == everything[1:]
    assert ids(client(world, "eve").get(REQUESTS)) == []
    body = client(world, "carol").get(REQUESTS).json()
    assert body["count"] == 3
    assert body["results"][0] == request_body(requests["rejected"].pk)


def test_the_list_filters_by_model_and_status(world, requests):
    alice = client(world, "alice")
    assert ids(alice.get(REQUESTS, {"model": "fraud"})) == [
        requests[key].pk for key in ("rejected", "staging", "prod")
    ]
    assert ids(alice.get(REQUESTS, {"status": "PENDING"})) == [
        requests[key].pk for key in ("staging", "prod")
    ]
    assert ids(alice.get(REQUESTS, {"status": "REJECTED", "model": "fraud"})) == [
        requests["rejected"].pk
    ]
    assert ids(alice.get(REQUESTS, {"status": "APPLIED"})) == []
    assert ids(client(world, "root").get(REQUESTS, {"model": "churn"})) == [requests["hidden"].pk]


def test_the_list_refuses_a_bad_status_and_a_model_the_caller_cannot_see(world, requests):
    alice = client(world, "alice")
    assert_error(
        alice.get(REQUESTS, {"status": "pending"}),
        400,
        "invalid",
        "status: Expected one of PENDING, APPROVED, APPLIED, REJECTED, CANCELLED, EXPIRED, FAILED.",
        {
            "status": [
                "Expected one of PENDING, APPROVED, APPLIED, REJECTED, CANCELLED, EXPIRED, FAILED."
            ]
        },
    )
    for name in ("churn", "no-such-model"):
        assert_error(
            alice.get(REQUESTS, {"model": name}),
            404,
            "not_found",
            f"Registered Model with name={name} not found",
        )


@pytest.mark.parametrize(
    ("who", "waiting"),
    [
        ("alice", ["staging", "prod"]),
        ("bob", ["staging", "prod"]),
        ("manager", ["staging", "prod"]),
        ("stan", ["staging"]),
        ("root", ["hidden", "staging", "prod"]),
        ("pipeline", ["staging"]),  # registered version 1: may not approve prod
        ("carol", []),  # requester of prod, and CAN_READ only
        ("ed", []),
        ("eve", []),
    ],
)
def test_waiting_for_me_lists_only_what_the_caller_may_decide_now(world, requests, who, waiting):
    response = client(world, who).get(REQUESTS, {"waiting_for_me": "true"})
    assert ids(response) == [requests[key].pk for key in waiting]


def test_waiting_for_me_drops_what_the_caller_decided_and_narrows_by_model(world, requests):
    request_approve(request=requests["prod"], actor=world.actor("alice"))
    alice, bob = client(world, "alice"), client(world, "bob")
    assert ids(alice.get(REQUESTS, {"waiting_for_me": "1"})) == [requests["staging"].pk]
    assert ids(bob.get(REQUESTS, {"waiting_for_me": "yes", "model": "fraud"})) == [
        requests["staging"].pk,
        requests["prod"].pk,
    ]
    root = client(world, "root")
    assert ids(root.get(REQUESTS, {"waiting_for_me": "true", "model": "churn"})) == [
        requests["hidden"].pk
    ]
    assert ids(bob.get(REQUESTS, {"waiting_for_me": "false"})) == ids(bob.get(REQUESTS))


def test_waiting_for_me_leaves_out_a_request_past_its_time_before_the_sweeper_runs(world, requests):
    alice = client(world, "alice")
    TransitionRequest.objects.filter(pk=requests["prod"].pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert ids(alice.get(REQUESTS, {"waiting_for_me": "true"})) == [requests["staging"].pk]
    # Still PENDING in the plain list until the sweeper marks it EXPIRED.
    assert requests["prod"].pk in ids(alice.get(REQUESTS, {"status": "PENDING"}))


def test_the_detail_has_the_whole_request(world, requests):
    response = client(world, "carol").get(f"{REQUESTS}{requests['rejected'].pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body == request_body(requests["rejected"].pk)
    assert body["status"] == "REJECTED"
    assert body["reviews"][0]["reviewer"] == "alice"
    assert body["reviews"][0]["decision"] == "REJECT"
    assert body["reviews"][0]["comment"] == "no"


@pytest.mark.parametrize("who", ["eve", "alice"])
def test_requests_of_models_the_caller_cannot_see_are_404_everywhere(world, requests, who):
    hidden = requests["hidden"] if who == "alice" else requests["prod"]
    api = client(world, who)
    before = state()
    message = f"Transition request {hidden.pk} not found"
    assert_error(api.get(f"{REQUESTS}{hidden.pk}/"), 404, "not_found", message)
    for action in ("approve", "reject", "cancel"):
        assert_error(api.post(f"{REQUESTS}{hidden.pk}/{action}/"), 404, "not_found", message)
    assert_error(
        api.get(f"{REQUESTS}999999/"), 404, "not_found", "Transition request 999999 not found"
    )
    assert state() == before


def test_anonymous_callers_get_401(world, requests):
    anon = APIClient()
    before = state()
    for method, path in (
        ("get", REQUESTS),
        ("post", REQUESTS),
        ("get", f"{REQUESTS}{requests['prod'].pk}/"),
        ("post", f"{REQUESTS}{requests['prod'].pk}/approve/"),
        ("get", POLICIES),
        ("post", POLICIES),
    ):
        assert_error(
            getattr(anon, method)(path),
            401,
            "unauthenticated",
            "Authentication credentials were not provided.",
        )
    assert state() == before


# --- creating ---------------------------------------------------------------------------------


def test_create_answers_201_with_the_request(world):
    production_policy(expires_after_hours=12, move_alias="production")
    seq = last_seq()
    response = client(world, "carol").post(
        REQUESTS,
        {"model": "fraud", "version": 1, "target": "production", "comment": "ready"},
        format="json",
    )
    assert response.status_code == 201, response.content
    created = TransitionRequest.objects.get()
    assert response.json() == request_body(created.pk)
    body = response.json()
    assert (body["target"], body["status"], body["requester"], body["from_stage"]) == (
        "Production",
        "PENDING",
        "carol",
        "None",
    )
    assert (body["approvals_missing"], body["required_tags"], body["move_alias"]) == (
        2,
        {"validation": "passed"},
        "production",
    )
    assert body["reviews"] == []
    assert created.expires_at == created.created_at + timedelta(hours=12)
    assert types_since(seq) == ["transition_request.created"]


def test_create_refusals_have_their_codes_and_change_nothing(world):
    production_policy()
    carol = client(world, "carol")
    carol.post(REQUESTS, {"model": "fraud", "version": 1, "target": "Production"}, format="json")
    registry_services.version_transition(
        version=world.version(2), stage=Stage.STAGING, actor=world.actor("stan")
    )
    registry_services.version_create(model=world.model, source="s3://fraud/3", actor=SYSTEM)
    registry_services.version_delete(
        version=ModelVersion.objects.get(model=world.model, version=3), actor=SYSTEM
    )
    target_message = (
        "Invalid target 'Prod': expected Staging, Production, Archived or alias:<name>."
    )
    cases = [
        (carol, {"model": "fraud", "version": 1, "target": "Prod"}, 400, "invalid",
         target_message, {"target": ["Staging, Production, Archived or alias:<name>."]}),
        (carol, {"model": "fraud", "version": 1}, 400, "invalid",
         "target: This field is required.", {"target": ["This field is required."]}),
        (carol, {"model": "fraud", "version": 0, "target": "Staging"}, 400, "invalid",
         "version: Ensure this value is greater than or equal to 1.",
         {"version": ["Ensure this value is greater than or equal to 1."]}),
        (carol, {"model": "fraud", "version": 1, "target": "Staging", "stage": "x"}, 400,
         "invalid", "stage: Unknown field.", {"stage": ["Unknown field."]}),
        (carol, {"model": "fraud", "version": 1, "target": "Staging", "comment": "x" * 10_001},
         400, "invalid", "comment is longer than 10000 characters.",
         {"comment": ["At most 10000 characters."]}),
        (carol, {"model": "fraud", "version": 2, "target": "Staging"}, 400, "invalid",
         "Version 2 is already in Staging.", None),
        (carol, {"model": "fraud", "version": 1, "target": "Production"}, 409, "already_exists",
         "You already have an open request for version 1 of 'fraud' to Production.", None),
        (carol, {"model": "fraud", "version": 3, "target": "Staging"}, 404, "not_found",
         "Model Version (name=fraud, version=3) not found", None),
        (carol, {"model": "fraud", "version": 9, "target": "Staging"}, 404, "not_found",
         "Model Version (name=fraud, version=9) not found", None),
        (carol, {"model": "churn", "version": 1, "target": "Staging"}, 404, "not_found",
         "Registered Model with name=churn not found", None),
        (client(world, "eve"), {"model": "fraud", "version": 1, "target": "Staging"}, 404,
         "not_found", "Registered Model with name=fraud not found", None),
        (token_client(world, "carol", read_only=True),
         {"model": "fraud", "version": 1, "target": "Staging"}, 403, "permission_denied",
         "This API token is read-only.", None),
    ]  # fmt: skip
    for api, data, status, code, message, fields in cases:
        before = state()
        assert_error(api.post(REQUESTS, data, format="json"), status, code, message, fields)
        assert state() == before


def test_create_refuses_a_body_that_is_not_an_object(world):
    before = state()
    response = client(world, "carol").post(REQUESTS, ["fraud"], format="json")
    assert_error(
        response,
        400,
        "invalid",
        "Expected a JSON object.",
        {"non_field_errors": ["Expected a JSON object."]},
    )
    assert state() == before


# --- deciding ---------------------------------------------------------------------------------


def _decide(api: APIClient, request: TransitionRequest, action: str, **data):
    return api.post(f"{REQUESTS}{request.pk}/{action}/", data, format="json")


def test_approve_below_the_quorum_answers_the_pending_request(world, requests):
    response = _decide(client(world, "alice"), requests["prod"], "approve", comment="fine")
    assert response.status_code == 200
    assert response.json() == request_body(requests["prod"].pk)
    assert response.json()["status"] == "PENDING"
    assert response.json()["approvals_missing"] == 1
    assert response.json()["reviews"][0]["comment"] == "fine"


def test_the_approval_reaching_the_quorum_answers_approved_when_the_task_has_not_run(
    world, requests
):
    _decide(client(world, "alice"), requests["prod"], "approve")
    response = _decide(client(world, "bob"), requests["prod"], "approve")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["approvals_missing"]) == ("APPROVED", 0)
    assert response.json()["decided_at"] is not None


def test_decision_refusals_have_their_codes_and_change_nothing(world, requests):
    prod, rejected = requests["prod"], requests["rejected"]
    registry_services.version_create(model=world.model, source="s3://fraud/3", actor=SYSTEM)
    untagged = request_create(
        version=world.version(3), target="Production", actor=world.actor("carol")
    )
    request_approve(request=prod, actor=world.actor("dave"))
    stan_message = (
        "Reviewing this request needs CAN_MANAGE_PRODUCTION_VERSIONS; you have "
        "CAN_MANAGE_STAGING_VERSIONS."
    )
    read_only_message = "This API token is read-only."
    cases = [
        (client(world, "stan"), prod, "approve", {}, 403, "permission_denied", stan_message),
        (client(world, "stan"), prod, "reject", {}, 403, "permission_denied", stan_message),
        (token_client(world, "bob", read_only=True), prod, "approve", {}, 403,
         "permission_denied", read_only_message),
        (client(world, "pipeline"), prod, "approve", {}, 403, "permission_denied",
         "You registered this version; the policy needs someone else to approve it."),
        (client(world, "dave"), prod, "approve", {}, 409, "conflict",
         "You have already decided on this request."),
        (client(world, "alice"), untagged, "approve", {}, 409, "conflict",
         "Version 3 must carry validation=passed before it can be approved."),
        (client(world, "alice"), rejected, "approve", {}, 409, "conflict",
         f"Request #{rejected.pk} is REJECTED, not PENDING."),
        (client(world, "carol"), rejected, "cancel", {}, 409, "conflict",
         f"Request #{rejected.pk} is REJECTED, not PENDING."),
        (client(world, "alice"), prod, "cancel", {}, 403, "permission_denied",
         "Only the requester or a CAN_MANAGE holder can cancel a request."),
        (client(world, "alice"), prod, "approve", {"decision": "yes"}, 400, "invalid",
         "decision: Unknown field."),
        (client(world, "alice"), prod, "approve", {"comment": "x" * 10_001}, 400, "invalid",
         "comment is longer than 10000 characters."),
    ]  # fmt: skip
    kept = {
        stan_message,
        read_only_message,
        "You registered this version; the policy needs someone else to approve it.",
        "Version 3 must carry validation=passed before it can be approved.",
    }
    for api, request, action, data, status, code, message in cases:
        before, seq = state(), last_seq()
        response = _decide(api, request, action, **data)
        assert (response.status_code, response.json()["code"], response.json()["message"]) == (
            status,
            code,
            message,
        ), action
        assert state() == before
        # Denied reviews are kept in the history; other refusals leave nothing.
        refusal = f"transition_request.{'approval' if action == 'approve' else 'rejection'}_refused"
        assert types_since(seq) == ([refusal] if message in kept else []), message


def test_self_approval_through_the_api_and_the_requesters_token(world):
    production_policy()
    created = client(world, "alice").post(
        REQUESTS, {"model": "fraud", "version": 1, "target": "Production"}, format="json"
    )
    request = TransitionRequest.objects.get(pk=created.json()["id"])
    message = "You requested this transition; the policy needs someone else to approve it."
    before, seq = state(), last_seq()
    for api in (client(world, "alice"), token_client(world, "alice")):
        assert_error(_decide(api, request, "approve"), 403, "permission_denied", message)
    assert state() == before
    refusals = Event.objects.filter(seq__gt=seq, type="transition_request.approval_refused")
    assert [(e.actor_name, bool(e.actor_token), e.after["refusal"]) for e in refusals] == [
        ("alice", False, message),
        ("alice", True, message),
    ]


def test_an_expired_request_is_409(world, requests):
    TransitionRequest.objects.filter(pk=requests["prod"].pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    before = state()
    assert_error(
        _decide(client(world, "alice"), requests["prod"], "approve"),
        409,
        "conflict",
        f"Request #{requests['prod'].pk} has expired.",
    )
    assert state() == before


def test_reject_and_cancel_answer_the_ended_request(world, requests):
    rejected = _decide(client(world, "alice"), requests["prod"], "reject", comment="not now")
    assert rejected.status_code == 200
    assert rejected.json() == request_body(requests["prod"].pk)
    assert rejected.json()["status"] == "REJECTED"
    cancelled = _decide(client(world, "ed"), requests["staging"], "cancel", comment="oops")
    assert cancelled.status_code == 200
    assert cancelled.json() == request_body(requests["staging"].pk)
    assert cancelled.json()["status"] == "CANCELLED"


@pytest.mark.django_db(transaction=True)
def test_the_approval_reaching_the_quorum_answers_the_applied_request(world, settings):
    settings.MODELGATE_APPROVE_WAIT_SECONDS = 5
    registry_services.version_transition(
        version=world.version(2), stage=Stage.PRODUCTION, actor=world.actor("alice")
    )
    production_policy(required_approvals=1, archive_existing_versions=True, move_alias="prod")
    created = client(world, "carol").post(
        REQUESTS, {"model": "fraud", "version": 1, "target": "Production"}, format="json"
    )
    response = _decide(client(world, "alice"), TransitionRequest.objects.get(), "approve")
    assert response.status_code == 200
    body = response.json()
    assert body == request_body(created.json()["id"])
    assert (body["status"], body["approvals_missing"], body["status_reason"]) == (
        "APPLIED",
        0,
        "",
    )
    assert body["applied_at"] is not None
    version = client(world, "carol").get("/api/v1/models/fraud/versions/1/").json()
    assert (version["stage"], version["aliases"]) == ("Production", ["prod"])
    assert world.version(2).stage == Stage.ARCHIVED


@pytest.mark.django_db(transaction=True)
def test_a_failed_application_is_reported_with_its_reason(world, settings, monkeypatch):
    settings.MODELGATE_APPROVE_WAIT_SECONDS = 5
    production_policy(required_approvals=1)
    request = request_create(
        version=world.version(1), target="Production", actor=world.actor("carol")
    )
    # The version is deleted between the approval's commit and the task: the task finds it gone.
    from workflows import services

    real = services._queue_apply

    def delete_then_queue(task, request_id):
        registry_services.version_delete(version=world.version(1), actor=SYSTEM)
        real(task, request_id)

    monkeypatch.setattr(services, "_queue_apply", delete_then_queue)
    response = _decide(client(world, "alice"), request, "approve")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["status_reason"]) == (
        "FAILED",
        "Version 1 was deleted after the request.",
    )
    assert body["applied_at"] is None
    assert TransitionRequest.objects.get().status == RequestStatus.FAILED


# --- policies ---------------------------------------------------------------------------------


FULL_POLICY = {
    "required_approvals": 2,
    "approver_level": "can_manage",
    "allow_self_approval": True,
    "required_tags": {"validation": "passed"},
    "expires_after_hours": 24,
    "archive_existing_versions": True,
    "move_alias": "production",
}


def test_policy_create_answers_201_with_exactly_the_documented_fields(world):
    seq = last_seq()
    response = client(world, "root").post(
        POLICIES, {"model": None, "target": "production", **FULL_POLICY}, format="json"
    )
    assert response.status_code == 201, response.content
    policy = Policy.objects.get()
    assert response.json() == policy_body(policy.pk)
    assert response.json() == {
        "id": policy.pk,
        "model": None,
        "target": "Production",
        **FULL_POLICY,
        "approver_level": "CAN_MANAGE",
        "created_at": iso(policy.created_at),
        "updated_at": iso(policy.updated_at),
    }
    assert types_since(seq) == ["policy.created"]


def test_policy_create_for_a_model_with_the_defaults(world):
    response = client(world, "manager").post(
        POLICIES, {"model": "fraud", "target": "Staging"}, format="json"
    )
    assert response.status_code == 201
    policy = Policy.objects.get()
    assert response.json() == {
        "id": policy.pk,
        "model": "fraud",
        "target": "Staging",
        "required_approvals": 1,
        "approver_level": "CAN_MANAGE_STAGING_VERSIONS",
        "allow_self_approval": False,
        "required_tags": {},
        "expires_after_hours": 168,
        "archive_existing_versions": False,
        "move_alias": "",
        "created_at": iso(policy.created_at),
        "updated_at": iso(policy.updated_at),
    }


def test_policy_list_and_detail_show_registry_wide_and_visible_models_policies(world):
    wide = production_policy()
    own = policy_create(actor=SYSTEM, model=world.model, target="Staging")
    hidden = policy_create(actor=SYSTEM, model=world.hidden, target="Staging")
    root = client(world, "root").get(POLICIES).json()
    assert root["count"] == 3
    assert root["results"] == [policy_body(pk) for pk in (wide.pk, own.pk, hidden.pk)]
    assert ids(client(world, "carol").get(POLICIES)) == [wide.pk, own.pk]
    assert ids(client(world, "eve").get(POLICIES)) == [wide.pk]
    carol = client(world, "carol")
    assert carol.get(f"{POLICIES}{own.pk}/").json() == policy_body(own.pk)
    assert carol.get(f"{POLICIES}{wide.pk}/").json() == policy_body(wide.pk)
    assert_error(
        carol.get(f"{POLICIES}{hidden.pk}/"), 404, "not_found", f"Policy {hidden.pk} not found"
    )


def test_policy_patch_and_delete(world):
    policy = policy_create(actor=SYSTEM, model=world.model, target="Production")
    manager = client(world, "manager")
    seq = last_seq()
    response = manager.patch(
        f"{POLICIES}{policy.pk}/",
        {"required_approvals": 3, "required_tags": {"qa": "ok"}, "expires_after_hours": None},
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == policy_body(policy.pk)
    assert (
        response.json()["required_approvals"],
        response.json()["required_tags"],
        response.json()["expires_after_hours"],
        response.json()["approver_level"],
    ) == (3, {"qa": "ok"}, None, "CAN_MANAGE_PRODUCTION_VERSIONS")
    response = manager.delete(f"{POLICIES}{policy.pk}/")
    assert (response.status_code, response.content) == (204, b"")
    assert Policy.objects.count() == 0
    assert types_since(seq) == ["policy.updated", "policy.deleted"]


def test_policy_refusals_have_their_codes_and_change_nothing(world):
    wide = production_policy()
    own = policy_create(actor=SYSTEM, model=world.model, target="Staging")
    hidden = policy_create(actor=SYSTEM, model=world.hidden, target="Staging")
    only_superusers = "Only superusers change registry-wide policies."
    manage_needed = (
        "CAN_MANAGE on registered model 'fraud' is needed for this; you have "
        "CAN_MANAGE_PRODUCTION_VERSIONS."
    )
    alice, manager, root, eve = (
        client(world, name) for name in ("alice", "manager", "root", "eve")
    )
    cases = [
        (manager, "post", POLICIES, {"model": None, "target": "Staging"}, 403,
         "permission_denied", only_superusers, None),
        (client(world, "wide"), "post", POLICIES, {"model": None, "target": "Staging"}, 403,
         "permission_denied", only_superusers, None),
        (token_client(world, "root"), "post", POLICIES, {"model": None, "target": "Staging"},
         403, "permission_denied", only_superusers, None),
        (manager, "patch", f"{POLICIES}{wide.pk}/", {"required_approvals": 1}, 403,
         "permission_denied", only_superusers, None),
        (manager, "delete", f"{POLICIES}{wide.pk}/", None, 403, "permission_denied",
         only_superusers, None),
        (alice, "post", POLICIES, {"model": "fraud", "target": "Production"}, 403,
         "permission_denied", manage_needed, None),
        (alice, "patch", f"{POLICIES}{own.pk}/", {"required_approvals": 2}, 403,
         "permission_denied", manage_needed, None),
        (alice, "delete", f"{POLICIES}{own.pk}/", None, 403, "permission_denied",
         manage_needed, None),
        (eve, "post", POLICIES, {"model": "fraud", "target": "Production"}, 404, "not_found",
         "Registered Model with name=fraud not found", None),
        (manager, "post", POLICIES, {"model": "churn", "target": "Production"}, 404,
         "not_found", "Registered Model with name=churn not found", None),
        (manager, "patch", f"{POLICIES}{hidden.pk}/", {"required_approvals": 2}, 404,
         "not_found", f"Policy {hidden.pk} not found", None),
        (manager, "delete", f"{POLICIES}{hidden.pk}/", None, 404, "not_found",
         f"Policy {hidden.pk} not found", None),
        (manager, "get", f"{POLICIES}999999/", None, 404, "not_found",
         "Policy 999999 not found", None),
        (manager, "post", POLICIES, {"model": "fraud", "target": "Staging"}, 409,
         "already_exists", "A policy for Staging of model 'fraud' already exists.", None),
        (root, "post", POLICIES, {"model": None, "target": "PRODUCTION"}, 409,
         "already_exists", "A policy for Production of the registry already exists.", None),
        (manager, "post", POLICIES, {"model": "fraud", "target": "Prod"}, 400, "invalid",
         "Invalid target 'Prod': expected Staging, Production, Archived or alias:<name>.",
         {"target": ["Staging, Production, Archived or alias:<name>."]}),
        (manager, "post", POLICIES, {"target": "Production"}, 400, "invalid",
         "model: This field is required.", {"model": ["This field is required."]}),
        (manager, "post", POLICIES,
         {"model": "fraud", "target": "Production", "required_approvals": 0}, 400, "invalid",
         "required_approvals: Ensure this value is greater than or equal to 1.",
         {"required_approvals": ["Ensure this value is greater than or equal to 1."]}),
        (manager, "post", POLICIES,
         {"model": "fraud", "target": "Production", "expires_after_hours": 9000}, 400,
         "invalid", "expires_after_hours: Ensure this value is less than or equal to 8760.",
         {"expires_after_hours": ["Ensure this value is less than or equal to 8760."]}),
        (manager, "post", POLICIES,
         {"model": "fraud", "target": "Production", "approver_level": "CAN_FLY"}, 400,
         "invalid", "Invalid approver_level 'CAN_FLY'.",
         {"approver_level": ["A permission level such as CAN_MANAGE."]}),
        (manager, "post", POLICIES,
         {"model": "fraud", "target": "alias:prod", "move_alias": "prod"}, 400, "invalid",
         "move_alias applies to stage targets only.", {"move_alias": ["Stage targets only."]}),
        (manager, "post", POLICIES,
         {"model": "fraud", "target": "Archived", "archive_existing_versions": True}, 400,
         "invalid", "archive_existing_versions applies to Staging and Production targets only.",
         {"archive_existing_versions": ["Staging or Production targets only."]}),
        (manager, "post", POLICIES,
         {"model": "fraud", "target": "Production", "required_tags": ["x"]}, 400, "invalid",
         'required_tags: Expected a dictionary of items but got type "list".',
         {"required_tags": ['Expected a dictionary of items but got type "list".']}),
        (manager, "post", POLICIES, {"model": "fraud", "target": "Production", "name": "x"},
         400, "invalid", "name: Unknown field.", {"name": ["Unknown field."]}),
        (manager, "patch", f"{POLICIES}{own.pk}/", {"target": "Production"}, 400, "invalid",
         "target: Unknown field.", {"target": ["Unknown field."]}),
        (manager, "patch", f"{POLICIES}{own.pk}/", {"archive_existing_versions": "maybe"}, 400,
         "invalid", "archive_existing_versions: Must be a valid boolean.",
         {"archive_existing_versions": ["Must be a valid boolean."]}),
        (token_client(world, "manager", read_only=True), "patch", f"{POLICIES}{own.pk}/",
         {"required_approvals": 2}, 403, "permission_denied", "This API token is read-only.",
         None),
    ]  # fmt: skip
    for api, method, path, data, status, code, message, fields in cases:
        before = state()
        response = getattr(api, method)(path, data, format="json")
        assert_error(response, status, code, message, fields)
        assert state() == before, (method, path, data)


# --- comments and the activity feed -----------------------------------------------------------


COMMENTS = "/api/v1/models/fraud/versions/1/comments/"


def test_comments_api_bodies_and_refusals(world):
    carol = client(world, "carol")
    created = carol.post(COMMENTS, {"text": " ready for review "}, format="json")
    assert created.status_code == 201
    comment = Comment.objects.get()
    body = {
        "id": comment.pk,
        "model": "fraud",
        "version": 1,
        "author": "carol",
        "text": "ready for review",
        "created_at": iso(comment.created_at),
        "updated_at": iso(comment.updated_at),
    }
    assert created.json() == body
    assert carol.get(COMMENTS).json()["results"] == [body]
    detail = f"/api/v1/comments/{comment.pk}/"
    cases = [
        (client(world, "eve"), "post", COMMENTS, {"text": "x"}, 404, "not_found",
         "Registered Model with name=fraud not found", None),
        (client(world, "eve"), "get", COMMENTS, None, 404, "not_found",
         "Registered Model with name=fraud not found", None),
        (carol, "post", "/api/v1/models/fraud/versions/9/comments/", {"text": "x"}, 404,
         "not_found", "Model Version (name=fraud, version=9) not found", None),
        (carol, "post", COMMENTS, {"text": ""}, 400, "invalid",
         "text: This field may not be blank.", {"text": ["This field may not be blank."]}),
        (carol, "post", COMMENTS, {"text": "x", "author": "bob"}, 400, "invalid",
         "author: Unknown field.", {"author": ["Unknown field."]}),
        (token_client(world, "carol", read_only=True), "post", COMMENTS, {"text": "x"}, 403,
         "permission_denied", "This API token is read-only.", None),
        (client(world, "alice"), "patch", detail, {"text": "x"}, 403, "permission_denied",
         "Only the author can change this comment.", None),
        (client(world, "manager"), "patch", detail, {"text": "x"}, 403, "permission_denied",
         "Only the author can change this comment.", None),
        (client(world, "alice"), "delete", detail, None, 403, "permission_denied",
         "Only the author can change this comment.", None),
        (client(world, "eve"), "delete", detail, None, 404, "not_found",
         f"Comment {comment.pk} not found", None),
    ]  # fmt: skip
    for api, method, path, data, status, code, message, fields in cases:
        before = state()
        response = getattr(api, method)(path, data, format="json")
        assert_error(response, status, code, message, fields)
        assert state() == before, (method, path, data)
    edited = carol.patch(detail, {"text": "edited"}, format="json")
    assert (edited.status_code, edited.json()["text"]) == (200, "edited")
    removed = client(world, "manager").delete(detail)
    assert (removed.status_code, Comment.objects.count()) == (204, 0)


def test_the_activity_feed_has_requests_decisions_and_comments_in_order(world):
    production_policy()
    carol = client(world, "carol")
    carol.post(REQUESTS, {"model": "fraud", "version": 1, "target": "Production"}, format="json")
    request = TransitionRequest.objects.get()
    _decide(client(world, "alice"), request, "approve", comment="fine by me")
    carol.post(COMMENTS, {"text": "thanks"}, format="json")
    _decide(client(world, "bob"), request, "reject", comment="not this week")
    feed = carol.get("/api/v1/models/fraud/versions/1/activity/").json()["results"]
    workflow = [
        (item["type"], item["actor"]["name"], item["comment"])
        for item in feed
        if item["type"].startswith(("transition_request.", "comment."))
    ]
    assert workflow == [
        ("transition_request.created", "carol", ""),
        ("transition_request.approval_recorded", "alice", "fine by me"),
        ("comment.created", "carol", "thanks"),
        ("transition_request.rejected", "bob", "not this week"),
    ]
    assert_error(
        client(world, "eve").get("/api/v1/models/fraud/versions/1/activity/"),
        404,
        "not_found",
        "Registered Model with name=fraud not found",
    )
