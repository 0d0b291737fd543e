"""The workflow services: every state change and every refusal, with the rows and events.

Non-transactional tests: the apply task queued on commit runs only inside
`django_capture_on_commit_callbacks(execute=True)`, so a test can also stop at APPROVED and
change the world before applying.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.db import IntegrityError, transaction
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.actors import Actor, Source
from config.errors import AlreadyExists, Conflict, InvalidParameter, NotFound, PermissionDenied
from registry import services as registry_services
from registry.choices import Stage
from registry.models import Event, ModelAlias, ModelVersion, RegisteredModel
from registry.permissions import Level
from tests.workflows.scenario import World, build_world, events_since, last_seq, state
from workflows import tasks
from workflows.choices import RequestStatus
from workflows.guards import REQUEST_FLOW
from workflows.models import Comment, Policy, Review, TransitionRequest
from workflows.policies import Rules, policy_create, policy_delete, policy_update, rules_for
from workflows.services import (
    comment_create,
    comment_delete,
    comment_update,
    request_apply,
    request_approve,
    request_cancel,
    request_create,
    request_reject,
    requests_apply_waiting,
    requests_expire,
)

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system()


@pytest.fixture
def world(django_user_model) -> World:
    return build_world(django_user_model)


def production_policy(model: RegisteredModel | None = None, **values: object) -> Policy:
    """Production needs two approvals and validation=passed unless a test says otherwise."""
    values = {"required_approvals": 2, "required_tags": {"validation": "passed"}, **values}
    return policy_create(actor=SYSTEM, model=model, target="Production", **values)


def fresh(request: TransitionRequest) -> TransitionRequest:
    return TransitionRequest.objects.get(pk=request.pk)


def stage_of(world: World, number: int) -> str:
    return world.version(number).stage


def aliases(world: World) -> dict[str, int]:
    return dict(
        ModelAlias.objects.filter(model=world.model).values_list("alias", "version__version")
    )


def snapshot(request: TransitionRequest, **changes: object) -> dict[str, object]:
    """What a request event records in `after`."""
    request = fresh(request)
    body = {
        "id": request.pk,
        "model": request.model.name,
        "version": request.version.version,
        "target": request.target,
        "from_stage": request.from_stage,
        "status": request.status,
        "requester": request.requester_name,
        "required_approvals": request.required_approvals,
        "approver_level": request.approver_level,
        "approvals": sorted(
            request.reviews.filter(decision="APPROVE").values_list("reviewer_name", flat=True)
        ),
        "reason": request.status_reason,
    }
    body.update(changes)
    return body


APPROVAL_REFUSED = "transition_request.approval_refused"


def refused(call, error: type[Exception], message: str, kept: str | None = None) -> None:
    """`call` raises `error` with exactly `message`, and nothing at all changes; a refusal the
    history keeps leaves its one event (of type `kept`, the message as the reason) and no other.
    """
    seq = last_seq()
    before = state()
    with pytest.raises(error) as caught:
        call()
    assert caught.value.message == message
    assert state() == before
    refusals = Event.objects.filter(seq__gt=seq, type__endswith="_refused")
    assert [(e.type, e.after["refusal"]) for e in refusals] == ([(kept, message)] if kept else [])


# --- policies ---------------------------------------------------------------------------------


def test_policy_create_registry_wide_by_a_superuser_stores_every_field_and_records_it(world):
    seq = last_seq()
    policy = policy_create(
        actor=world.actor("root"),
        model=None,
        target="production",
        required_approvals=2,
        required_tags={"validation": "passed"},
        expires_after_hours=24,
        archive_existing_versions=True,
        move_alias="production",
    )
    expected = {
        "id": policy.pk,
        "model": None,
        "target": "Production",
        "required_approvals": 2,
        "approver_level": "CAN_MANAGE_PRODUCTION_VERSIONS",
        "allow_self_approval": False,
        "required_tags": {"validation": "passed"},
        "expires_after_hours": 24,
        "archive_existing_versions": True,
        "move_alias": "production",
    }
    stored = Policy.objects.get()
    assert stored.model_id is None
    assert stored.created_at == stored.updated_at
    assert events_since(seq) == [("policy.created", "root", None)]
    event = Event.objects.get(seq=seq + 1)
    assert (event.before, event.after, event.model_id) == (None, expected, None)


@pytest.mark.parametrize(
    ("target", "canonical", "level"),
    [
        ("Staging", "Staging", "CAN_MANAGE_STAGING_VERSIONS"),
        ("ARCHIVED", "Archived", "CAN_MANAGE_STAGING_VERSIONS"),
        (" production ", "Production", "CAN_MANAGE_PRODUCTION_VERSIONS"),
        ("alias:production", "alias:production", "CAN_MANAGE_PRODUCTION_VERSIONS"),
    ],
)
def test_policy_defaults_per_target(world, target, canonical, level):
    seq = last_seq()
    policy = policy_create(actor=world.actor("manager"), model=world.model, target=target)
    policy.refresh_from_db()
    assert (policy.model_id, policy.target, policy.approver_level) == (
        world.model.pk,
        canonical,
        level,
    )
    assert (policy.required_approvals, policy.allow_self_approval, policy.required_tags) == (
        1,
        False,
        {},
    )
    assert (
        policy.expires_after_hours,
        policy.archive_existing_versions,
        policy.move_alias,
    ) == (168, False, "")
    assert events_since(seq) == [("policy.created", "manager", None)]
    assert Event.objects.get(seq=seq + 1).model_id == world.model.pk


INVALID_POLICIES = [
    ("Prod", {}, "Invalid target 'Prod': expected Staging, Production, Archived or alias:<name>."),
    ("None", {}, "Invalid target 'None': expected Staging, Production, Archived or alias:<name>."),
    ("alias:latest", {}, "'latest' is a reserved alias name."),
    (
        "alias:bad name",
        {},
        "Invalid alias name 'bad name': use letters, digits, underscores and hyphens only.",
    ),
    ("Production", {"required_approvals": 0}, "required_approvals must be between 1 and 100."),
    ("Production", {"required_approvals": 101}, "required_approvals must be between 1 and 100."),
    (
        "Production",
        {"approver_level": "CAN_EVERYTHING"},
        "Invalid approver_level 'CAN_EVERYTHING'.",
    ),
    ("Production", {"approver_level": "NONE"}, "Invalid approver_level 'NONE'."),
    (
        "Production",
        {"required_tags": ["validation"]},
        "required_tags must be an object of tag key to value.",
    ),
    ("Production", {"required_tags": {"": "x"}}, "Tag key must be a non-empty string."),
    ("Production", {"required_tags": {"ok": 1}}, "Tag value must be a string."),
    (
        "Production",
        {"expires_after_hours": 0},
        "expires_after_hours must be between 1 and 8760, or null for never.",
    ),
    (
        "Production",
        {"expires_after_hours": 8761},
        "expires_after_hours must be between 1 and 8760, or null for never.",
    ),
    (
        "Archived",
        {"archive_existing_versions": True},
        "archive_existing_versions applies to Staging and Production targets only.",
    ),
    (
        "alias:production",
        {"archive_existing_versions": True},
        "archive_existing_versions applies to Staging and Production targets only.",
    ),
    ("alias:production", {"move_alias": "production"}, "move_alias applies to stage targets only."),
    ("Production", {"move_alias": "latest"}, "'latest' is a reserved alias name."),
    (
        "Production",
        {"move_alias": "v2"},
        "Invalid alias name 'v2': 'v' followed by digits is reserved for versions.",
    ),
]


@pytest.mark.parametrize(("target", "values", "message"), INVALID_POLICIES)
def test_policy_create_validates_every_field(world, target, values, message):
    refused(
        lambda: policy_create(actor=world.actor("root"), model=None, target=target, **values),
        InvalidParameter,
        message,
    )
    assert Policy.objects.count() == 0


@pytest.mark.parametrize(
    ("target", "values", "message"), [case for case in INVALID_POLICIES if case[1]]
)
def test_policy_update_validates_every_field(world, target, values, message):
    policy = policy_create(actor=SYSTEM, model=None, target=target)
    refused(
        lambda: policy_update(actor=world.actor("root"), policy=policy, **values),
        InvalidParameter,
        message,
    )


def test_policy_update_changes_the_fields_and_records_before_and_after(world):
    policy = production_policy(model=world.model)
    before = Event.objects.get(type="policy.created").after
    seq = last_seq()
    updated = policy_update(
        actor=world.actor("manager"),
        policy=policy,
        required_approvals=3,
        approver_level="can_manage",
        allow_self_approval=True,
        required_tags={},
        expires_after_hours=None,
        archive_existing_versions=True,
        move_alias="prod",
    )
    after = {
        **before,
        "required_approvals": 3,
        "approver_level": "CAN_MANAGE",
        "allow_self_approval": True,
        "required_tags": {},
        "expires_after_hours": None,
        "archive_existing_versions": True,
        "move_alias": "prod",
    }
    assert updated.updated_at >= updated.created_at
    assert events_since(seq) == [("policy.updated", "manager", None)]
    event = Event.objects.get(seq=seq + 1)
    assert (event.before, event.after, event.model_id) == (before, after, world.model.pk)
    rules = rules_for(world.model, "Production")
    assert rules == Rules(3, Level.CAN_MANAGE, True, {}, None, True, "prod", policy.pk)


def test_policy_delete_records_the_last_state(world):
    policy = production_policy(model=world.model)
    snapshot_before = Event.objects.get(type="policy.created").after
    seq = last_seq()
    policy_delete(actor=world.actor("pipeline"), policy=policy)
    assert Policy.objects.count() == 0
    assert events_since(seq) == [("policy.deleted", "pipeline", None)]
    event = Event.objects.get(seq=seq + 1)
    assert (event.before, event.after) == (snapshot_before, None)


def test_a_second_policy_for_the_same_scope_and_target_is_refused(world):
    production_policy()
    production_policy(model=world.model)
    refused(
        lambda: production_policy(),
        AlreadyExists,
        "A policy for Production of the registry already exists.",
    )
    refused(
        lambda: production_policy(model=world.model),
        AlreadyExists,
        "A policy for Production of model 'fraud' already exists.",
    )


def test_the_models_policy_overrides_the_registry_wide_one(world):
    assert rules_for(world.model, "Production") == Rules(
        1, Level.CAN_MANAGE_PRODUCTION_VERSIONS, allow_self_approval=True
    )
    assert rules_for(world.model, "Staging") == Rules(
        1, Level.CAN_MANAGE_STAGING_VERSIONS, allow_self_approval=True
    )
    wide = production_policy(required_approvals=3)
    assert rules_for(world.model, "Production").policy_id == wide.pk
    own = production_policy(model=world.model, required_approvals=1)
    assert rules_for(world.model, "Production").policy_id == own.pk
    assert rules_for(world.model, "Production").required_approvals == 1
    assert rules_for(world.hidden, "Production").policy_id == wide.pk


REGISTRY_WIDE_REFUSED = "Only superusers change registry-wide policies."


@pytest.mark.parametrize(
    ("who", "error", "message"),
    [
        ("root", None, ""),
        ("system", None, ""),
        ("wide", PermissionDenied, REGISTRY_WIDE_REFUSED),
        ("manager", PermissionDenied, REGISTRY_WIDE_REFUSED),
        ("alice", PermissionDenied, REGISTRY_WIDE_REFUSED),
        ("eve", PermissionDenied, REGISTRY_WIDE_REFUSED),
        ("root-token", PermissionDenied, REGISTRY_WIDE_REFUSED),
    ],
)
def test_only_superusers_change_registry_wide_policies(world, who, error, message):
    if who == "system":
        actor = SYSTEM
    elif who == "root-token":
        actor = world.token_actor("root")
    else:
        actor = world.actor(who)
    existing = policy_create(actor=SYSTEM, model=None, target="Staging")
    calls = [
        lambda: policy_create(actor=actor, model=None, target="Production"),
        lambda: policy_update(actor=actor, policy=existing, required_approvals=2),
        lambda: policy_delete(actor=actor, policy=existing),
    ]
    if error is None:
        for call in calls:
            call()
        assert list(Policy.objects.values_list("target", flat=True)) == ["Production"]
        return
    for call in calls:
        refused(call, error, message)


def _denied(level: str) -> str:
    return f"CAN_MANAGE on registered model 'fraud' is needed for this; you have {level}."


@pytest.mark.parametrize(
    ("who", "error", "message"),
    [
        ("manager", None, ""),
        ("pipeline", None, ""),
        ("root", None, ""),
        ("wide", None, ""),
        ("alice", PermissionDenied, _denied("CAN_MANAGE_PRODUCTION_VERSIONS")),
        ("stan", PermissionDenied, _denied("CAN_MANAGE_STAGING_VERSIONS")),
        ("ed", PermissionDenied, _denied("CAN_EDIT")),
        ("carol", PermissionDenied, _denied("CAN_READ")),
        ("eve", NotFound, "Registered Model with name=fraud not found"),
        ("manager-read-only-token", PermissionDenied, "This API token is read-only."),
    ],
)
def test_model_policies_need_can_manage_on_the_model(world, who, error, message):
    if who == "manager-read-only-token":
        actor = world.token_actor("manager", read_only=True)
    else:
        actor = world.actor(who)
    existing = policy_create(actor=SYSTEM, model=world.model, target="Staging")
    calls = [
        lambda: policy_create(actor=actor, model=world.model, target="Production"),
        lambda: policy_update(actor=actor, policy=existing, required_approvals=2),
        lambda: policy_delete(actor=actor, policy=existing),
    ]
    if error is None:
        for call in calls:
            call()
        assert list(Policy.objects.values_list("target", flat=True)) == ["Production"]
        assert list(
            Event.objects.filter(type__startswith="policy.").values_list("type", "actor_name")
        ) == [
            ("policy.created", "system"),
            ("policy.created", who),
            ("policy.updated", who),
            ("policy.deleted", who),
        ]
        return
    for call in calls:
        refused(call, error, message)


def test_a_policy_change_does_not_alter_open_requests(world, django_capture_on_commit_callbacks):
    policy = production_policy(expires_after_hours=10)
    request = request_create(
        version=world.version(1), target="Production", actor=world.actor("carol")
    )
    frozen = TransitionRequest.objects.filter(pk=request.pk).values().get()
    policy_update(
        actor=SYSTEM,
        policy=policy,
        required_approvals=1,
        required_tags={"owner": "risk"},
        allow_self_approval=True,
        expires_after_hours=1,
        approver_level="CAN_MANAGE",
        move_alias="production",
    )
    assert TransitionRequest.objects.filter(pk=request.pk).values().get() == frozen
    # Still the old rules: CAN_MANAGE_PRODUCTION_VERSIONS may approve, two approvals are needed.
    with django_capture_on_commit_callbacks(execute=True):
        request_approve(request=request, actor=world.actor("alice"))
    assert fresh(request).status == RequestStatus.PENDING
    with django_capture_on_commit_callbacks(execute=True):
        request_approve(request=request, actor=world.actor("bob"))
    assert fresh(request).status == RequestStatus.APPLIED
    assert aliases(world) == {}  # the later move_alias did not apply to it
    # Deleting the policy does not free the request from its rules either.
    other = request_create(
        version=world.version(2), target="Production", actor=world.actor("carol")
    )
    assert (other.required_approvals, other.required_tags, other.approver_level) == (
        1,
        {"owner": "risk"},
        "CAN_MANAGE",
    )
    policy_delete(actor=SYSTEM, policy=policy)
    refused(
        lambda: request_approve(request=other, actor=world.actor("alice")),
        PermissionDenied,
        "Reviewing this request needs CAN_MANAGE; you have CAN_MANAGE_PRODUCTION_VERSIONS.",
        kept=APPROVAL_REFUSED,
    )


# --- creating requests ------------------------------------------------------------------------


def test_request_create_for_a_stage_freezes_the_rules_and_records_an_event(world):
    policy = production_policy(
        expires_after_hours=48, archive_existing_versions=True, move_alias="production"
    )
    seq = last_seq()
    request = request_create(
        version=world.version(1), target="production", actor=world.actor("carol"), comment="ready"
    )
    request = fresh(request)
    assert (request.model_id, request.version_id, request.target, request.from_stage) == (
        world.model.pk,
        world.version(1).pk,
        "Production",
        "None",
    )
    assert (request.status, request.requester_id, request.requester_name, request.comment) == (
        RequestStatus.PENDING,
        world.users["carol"].pk,
        "carol",
        "ready",
    )
    assert (
        request.policy_id_at_creation,
        request.required_approvals,
        request.approver_level,
        request.allow_self_approval,
        request.required_tags,
        request.archive_existing_versions,
        request.move_alias,
    ) == (
        policy.pk,
        2,
        "CAN_MANAGE_PRODUCTION_VERSIONS",
        False,
        {"validation": "passed"},
        True,
        "production",
    )
    assert request.expires_at == request.created_at + timedelta(hours=48)
    assert (request.decided_at, request.applied_at, request.status_reason) == (None, None, "")
    assert events_since(seq) == [("transition_request.created", "carol", 1)]
    event = Event.objects.get(seq=seq + 1)
    assert event.after == snapshot(request)
    assert event.after["status"] == "PENDING"
    assert event.after["approvals"] == []
    assert (event.comment, event.model_name, event.before) == ("ready", "fraud", None)


def test_request_create_for_an_alias_target_without_policy_follows_databricks(world):
    seq = last_seq()
    request = fresh(
        request_create(version=world.version(2), target="alias:champion", actor=world.actor("ed"))
    )
    assert (request.target, request.from_stage, request.status) == (
        "alias:champion",
        "None",
        RequestStatus.PENDING,
    )
    assert (
        request.policy_id_at_creation,
        request.required_approvals,
        request.approver_level,
        request.allow_self_approval,
        request.required_tags,
        request.expires_at,
    ) == (None, 1, "CAN_MANAGE_PRODUCTION_VERSIONS", True, {}, None)
    assert events_since(seq) == [("transition_request.created", "ed", 2)]


def test_request_create_refusals_change_nothing(world):
    production_policy()
    carol = world.actor("carol")
    request_create(version=world.version(1), target="Production", actor=carol)
    registry_services.version_transition(
        version=world.version(2), stage=Stage.STAGING, actor=world.actor("stan")
    )
    registry_services.version_create(model=world.model, source="s3://fraud/3", actor=SYSTEM)
    registry_services.version_delete(version=world.version(3), actor=world.actor("manager"))
    cases = [
        (world.version(1), "Production", world.actor("eve"), "", NotFound,
         "Registered Model with name=fraud not found"),
        (world.version(1), "Production", world.token_actor("carol", read_only=True), "",
         PermissionDenied, "This API token is read-only."),
        (world.version(1), "Production", SYSTEM, "", PermissionDenied,
         "Only a signed-in user can request a transition."),
        (world.version(1), "Nowhere", carol, "", InvalidParameter,
         "Invalid target 'Nowhere': expected Staging, Production, Archived or alias:<name>."),
        (world.version(1), "None", carol, "", InvalidParameter,
         "Invalid target 'None': expected Staging, Production, Archived or alias:<name>."),
        (world.version(1), "Staging", carol, "x" * 10_001, InvalidParameter,
         "comment is longer than 10000 characters."),
        (world.version(1), "PRODUCTION", carol, "", AlreadyExists,
         "You already have an open request for version 1 of 'fraud' to Production."),
        (world.version(2), "staging", carol, "", InvalidParameter,
         "Version 2 is already in Staging."),
        (ModelVersion.objects.get(model=world.model, version=3), "Staging", carol, "",
         InvalidParameter, "Version 3 of 'fraud' is deleted."),
    ]  # fmt: skip
    for version, target, actor, comment, error, message in cases:
        refused(
            lambda version=version, target=target, actor=actor, comment=comment: request_create(
                version=version, target=target, actor=actor, comment=comment
            ),
            error,
            message,
        )


def test_the_one_open_request_rule_is_per_requester_and_ends_with_the_request(world):
    carol, ed = world.actor("carol"), world.actor("ed")
    first = request_create(version=world.version(1), target="Staging", actor=carol)
    second = request_create(version=world.version(1), target="Staging", actor=ed)
    assert first.pk != second.pk
    request_cancel(request=first, actor=carol)
    again = request_create(version=world.version(1), target="Staging", actor=carol)
    assert list(
        TransitionRequest.objects.order_by("pk").values_list("requester_name", "status")
    ) == [("carol", "CANCELLED"), ("ed", "PENDING"), ("carol", "PENDING")]
    assert again.pk not in (first.pk, second.pk)


# --- approving --------------------------------------------------------------------------------


@pytest.fixture
def pending(world) -> TransitionRequest:
    """carol asks for version 1 (tagged) to reach Production: two approvals needed."""
    production_policy()
    return request_create(version=world.version(1), target="Production", actor=world.actor("carol"))


def test_an_approval_below_the_quorum_is_recorded(world, pending):
    seq = last_seq()
    approved = request_approve(request=pending, actor=world.actor("alice"), comment="looks fine")
    assert approved.status == RequestStatus.PENDING
    request = fresh(pending)
    assert (request.status, request.decided_at) == (RequestStatus.PENDING, None)
    review = Review.objects.get()
    assert (review.request_id, review.reviewer_id, review.reviewer_name) == (
        pending.pk,
        world.users["alice"].pk,
        "alice",
    )
    assert (review.decision, review.comment) == ("APPROVE", "looks fine")
    assert (review.requester_id_copy, review.version_creator_id_copy) == (
        world.users["carol"].pk,
        world.users["pipeline"].pk,
    )
    assert review.self_approval_allowed is False
    assert events_since(seq) == [("transition_request.approval_recorded", "alice", 1)]
    event = Event.objects.get(seq=seq + 1)
    assert event.after == snapshot(request, approvals=["alice"])
    assert event.comment == "looks fine"
    assert stage_of(world, 1) == Stage.NONE


def test_the_quorum_approves_and_the_task_applies(
    world, pending, django_capture_on_commit_callbacks
):
    request_approve(request=pending, actor=world.actor("alice"))
    seq = last_seq()
    with django_capture_on_commit_callbacks(execute=True):
        approved = request_approve(request=pending, actor=world.actor("bob"), comment="ship it")
        assert approved.status == RequestStatus.APPROVED
        assert fresh(pending).status == RequestStatus.APPROVED
        assert stage_of(world, 1) == Stage.NONE  # applied only after the commit
    request = fresh(pending)
    assert request.status == RequestStatus.APPLIED
    assert request.decided_at is not None
    assert request.applied_at >= request.decided_at
    assert request.status_reason == ""
    assert stage_of(world, 1) == Stage.PRODUCTION
    assert events_since(seq) == [
        ("transition_request.approval_recorded", "bob", 1),
        ("transition_request.approved", "bob", 1),
        ("model_version.stage_transitioned", "system", 1),
        ("transition_request.applied", "system", 1),
    ]
    events = list(Event.objects.filter(seq__gt=seq).order_by("seq"))
    assert events[1].after["status"] == "APPROVED"
    assert events[1].after["approvals"] == ["alice", "bob"]
    assert events[2].before["stage"] == "None"
    assert events[2].after["stage"] == "Production"
    note = f"Applying request #{request.pk}, approved by alice, bob."
    assert events[2].comment == note
    assert (events[3].comment, events[3].source) == (note, Source.TASK)
    assert events[3].after == snapshot(request)


def test_the_task_itself_applies_an_approved_request(world, pending):
    request_approve(request=pending, actor=world.actor("alice"))
    request_approve(request=pending, actor=world.actor("bob"))
    assert fresh(pending).status == RequestStatus.APPROVED
    assert tasks.request_apply.delay(pending.pk).get() == "APPLIED"
    assert stage_of(world, 1) == Stage.PRODUCTION
    assert tasks.request_apply(pending.pk) == "APPLIED"
    assert tasks.request_apply(10**9) is None
    assert Event.objects.filter(type="model_version.stage_transitioned", version=1).count() == 1


def _denied_review(have: str) -> str:
    return f"Reviewing this request needs CAN_MANAGE_PRODUCTION_VERSIONS; you have {have}."


@pytest.mark.parametrize(
    ("who", "error", "message"),
    [
        ("stan", PermissionDenied, _denied_review("CAN_MANAGE_STAGING_VERSIONS")),
        ("ed", PermissionDenied, _denied_review("CAN_EDIT")),
        ("carol", PermissionDenied, _denied_review("CAN_READ")),
        ("eve", PermissionDenied, _denied_review("NONE")),
        ("bob-read-only-token", PermissionDenied, "This API token is read-only."),
        ("system", PermissionDenied, "Only a signed-in user can review a request."),
        (
            "pipeline",
            PermissionDenied,
            "You registered this version; the policy needs someone else to approve it.",
        ),
    ],
)
def test_approve_refusals_change_nothing(world, pending, who, error, message):
    if who == "system":
        actor = SYSTEM
    elif who == "bob-read-only-token":
        actor = world.token_actor("bob", read_only=True)
    else:
        actor = world.actor(who)
    # The system is not a reviewer: its attempt is refused without a record of who tried.
    kept = None if who == "system" else APPROVAL_REFUSED
    refused(lambda: request_approve(request=pending, actor=actor), error, message, kept)
    assert Review.objects.count() == 0


def test_the_requester_may_not_approve_their_own_request_whatever_the_door(world):
    production_policy()
    request = request_create(
        version=world.version(1), target="Production", actor=world.actor("alice")
    )
    message = "You requested this transition; the policy needs someone else to approve it."
    for actor in (
        world.actor("alice"),
        world.actor("alice", source=Source.ADMIN),
        world.token_actor("alice"),
    ):
        refused(
            lambda actor=actor: request_approve(request=request, actor=actor),
            PermissionDenied,
            message,
            kept=APPROVAL_REFUSED,
        )
    assert Review.objects.count() == 0


def test_the_database_refuses_a_self_approval_row_the_service_would_refuse(world, pending):
    common = {
        "request": pending,
        "decision": "APPROVE",
        "created_at": timezone.now(),
        "requester_id_copy": world.users["carol"].pk,
        "version_creator_id_copy": world.users["pipeline"].pk,
    }
    for name in ("carol", "pipeline"):
        with pytest.raises(IntegrityError), transaction.atomic():
            Review.objects.create(
                reviewer=world.users[name],
                reviewer_name=name,
                self_approval_allowed=False,
                **common,
            )
    Review.objects.create(
        reviewer=world.users["pipeline"],
        reviewer_name="pipeline",
        self_approval_allowed=True,
        **common,
    )
    Review.objects.create(
        reviewer=world.users["carol"],
        reviewer_name="carol",
        self_approval_allowed=False,
        **{**common, "decision": "REJECT"},
    )
    assert Review.objects.count() == 2


def test_allow_self_approval_lets_the_requester_and_the_creator_approve(
    world, django_capture_on_commit_callbacks
):
    production_policy(allow_self_approval=True)
    request = request_create(
        version=world.version(1), target="Production", actor=world.actor("alice")
    )
    request_approve(request=request, actor=world.actor("alice"))
    with django_capture_on_commit_callbacks(execute=True):
        request_approve(request=request, actor=world.actor("pipeline"))
    assert fresh(request).status == RequestStatus.APPLIED
    assert sorted(Review.objects.values_list("reviewer_name", "self_approval_allowed")) == [
        ("alice", True),
        ("pipeline", True),
    ]


def test_a_reviewer_decides_once(world, pending):
    request_approve(request=pending, actor=world.actor("alice"))
    message = "You have already decided on this request."
    refused(lambda: request_approve(request=pending, actor=world.actor("alice")), Conflict, message)
    refused(lambda: request_reject(request=pending, actor=world.actor("alice")), Conflict, message)
    assert Review.objects.count() == 1


def test_approval_needs_the_required_tags(world, django_capture_on_commit_callbacks):
    production_policy(required_approvals=1)
    request = request_create(
        version=world.version(2), target="Production", actor=world.actor("carol")
    )
    refused(
        lambda: request_approve(request=request, actor=world.actor("alice")),
        Conflict,
        "Version 2 must carry validation=passed before it can be approved.",
        kept=APPROVAL_REFUSED,
    )
    registry_services.version_tag_set(
        version=world.version(2), key="validation", value="failed", actor=world.actor("ed")
    )
    refused(
        lambda: request_approve(request=request, actor=world.actor("alice")),
        Conflict,
        "Version 2 must carry validation=passed before it can be approved.",
        kept=APPROVAL_REFUSED,
    )
    registry_services.version_tag_set(
        version=world.version(2), key="validation", value="passed", actor=world.actor("ed")
    )
    with django_capture_on_commit_callbacks(execute=True):
        request_approve(request=request, actor=world.actor("alice"))
    assert fresh(request).status == RequestStatus.APPLIED
    assert stage_of(world, 2) == Stage.PRODUCTION


def test_an_expired_request_cannot_be_decided(world, pending):
    TransitionRequest.objects.filter(pk=pending.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    message = f"Request #{pending.pk} has expired."
    refused(lambda: request_approve(request=pending, actor=world.actor("alice")), Conflict, message)
    refused(lambda: request_reject(request=pending, actor=world.actor("alice")), Conflict, message)
    assert fresh(pending).status == RequestStatus.PENDING  # the sweeper marks it EXPIRED


@pytest.mark.parametrize(
    "status", ["APPROVED", "APPLIED", "REJECTED", "CANCELLED", "EXPIRED", "FAILED"]
)
def test_only_pending_requests_are_decided(world, pending, status):
    TransitionRequest.objects.filter(pk=pending.pk).update(status=status)
    message = f"Request #{pending.pk} is {status}, not PENDING."
    refused(lambda: request_approve(request=pending, actor=world.actor("alice")), Conflict, message)
    refused(lambda: request_reject(request=pending, actor=world.actor("alice")), Conflict, message)
    refused(lambda: request_cancel(request=pending, actor=world.actor("carol")), Conflict, message)


# --- rejecting and cancelling -----------------------------------------------------------------


def test_one_rejection_ends_the_request(world, pending):
    request_approve(request=pending, actor=world.actor("alice"))
    seq = last_seq()
    rejected = request_reject(request=pending, actor=world.actor("bob"), comment="not yet")
    assert rejected.status == RequestStatus.REJECTED
    request = fresh(pending)
    assert request.status == RequestStatus.REJECTED
    assert request.decided_at == request.updated_at
    assert list(
        Review.objects.order_by("pk").values_list("reviewer_name", "decision", "comment")
    ) == [
        ("alice", "APPROVE", ""),
        ("bob", "REJECT", "not yet"),
    ]
    assert events_since(seq) == [("transition_request.rejected", "bob", 1)]
    event = Event.objects.get(seq=seq + 1)
    assert event.after == snapshot(request)
    assert event.after["approvals"] == ["alice"]
    assert event.comment == "not yet"
    refused(
        lambda: request_approve(request=pending, actor=world.actor("dave")),
        Conflict,
        f"Request #{pending.pk} is REJECTED, not PENDING.",
    )
    assert stage_of(world, 1) == Stage.NONE
    assert request_apply(request_id=pending.pk).status == RequestStatus.REJECTED
    assert last_seq() == seq + 1


def test_reject_needs_the_approver_level_but_not_the_tags(world):
    production_policy()
    request = request_create(
        version=world.version(2), target="Production", actor=world.actor("carol")
    )
    refused(
        lambda: request_reject(request=request, actor=world.actor("stan")),
        PermissionDenied,
        _denied_review("CAN_MANAGE_STAGING_VERSIONS"),
        kept="transition_request.rejection_refused",
    )
    assert request_reject(request=request, actor=world.actor("alice")).status == "REJECTED"


@pytest.mark.parametrize("who", ["carol", "manager", "root"])
def test_the_requester_or_a_can_manage_holder_cancels(world, pending, who):
    seq = last_seq()
    cancelled = request_cancel(request=pending, actor=world.actor(who), comment="withdrawn")
    assert cancelled.status == RequestStatus.CANCELLED
    request = fresh(pending)
    assert request.status == RequestStatus.CANCELLED
    assert request.decided_at == request.updated_at
    assert events_since(seq) == [("transition_request.cancelled", who, 1)]
    event = Event.objects.get(seq=seq + 1)
    assert (event.after, event.comment) == (snapshot(request), "withdrawn")


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ("alice", "Only the requester or a CAN_MANAGE holder can cancel a request."),
        ("ed", "Only the requester or a CAN_MANAGE holder can cancel a request."),
        ("eve", "Only the requester or a CAN_MANAGE holder can cancel a request."),
        ("carol-read-only-token", "This API token is read-only."),
        ("manager-read-only-token", "This API token is read-only."),
    ],
)
def test_cancel_is_refused_for_others(world, pending, who, message):
    if who.endswith("-read-only-token"):
        actor = world.token_actor(who.split("-")[0], read_only=True)
    else:
        actor = world.actor(who)
    refused(lambda: request_cancel(request=pending, actor=actor), PermissionDenied, message)


# --- applying ---------------------------------------------------------------------------------


def approve_without_applying(world: World, request: TransitionRequest) -> None:
    """Reach the quorum; the task queued on commit never runs in these tests."""
    request_approve(request=request, actor=world.actor("alice"))
    request_approve(request=request, actor=world.actor("bob"))
    assert fresh(request).status == RequestStatus.APPROVED


def assert_failed(world: World, request: TransitionRequest, seq: int, reason: str) -> None:
    request = fresh(request)
    assert (request.status, request.status_reason, request.applied_at) == (
        RequestStatus.FAILED,
        reason,
        None,
    )
    assert events_since(seq) == [("transition_request.failed", "system", request.version.version)]
    event = Event.objects.get(seq=seq + 1)
    assert event.after == snapshot(request)
    assert event.after["reason"] == reason
    assert event.comment == reason


def test_apply_fails_when_the_version_was_deleted(world, pending):
    approve_without_applying(world, pending)
    registry_services.version_delete(version=world.version(1), actor=world.actor("manager"))
    seq = last_seq()
    before = state()
    request_apply(request_id=pending.pk)
    assert_failed(world, pending, seq, "Version 1 was deleted after the request.")
    after = state()
    assert (after["stages"], after["aliases"]) == (before["stages"], before["aliases"])


def test_apply_fails_when_the_version_left_its_from_stage(world, pending):
    approve_without_applying(world, pending)
    registry_services.version_transition(
        version=world.version(1), stage=Stage.STAGING, actor=world.actor("stan")
    )
    seq = last_seq()
    request_apply(request_id=pending.pk)
    assert_failed(
        world,
        pending,
        seq,
        "Version 1 moved from None to Staging after the request; it no longer makes sense.",
    )
    assert stage_of(world, 1) == Stage.STAGING


def test_apply_fails_when_the_version_lost_a_required_tag(world, pending):
    approve_without_applying(world, pending)
    registry_services.version_tag_delete(
        version=world.version(1), key="validation", actor=world.actor("ed")
    )
    seq = last_seq()
    request_apply(request_id=pending.pk)
    assert_failed(world, pending, seq, "Version 1 no longer carries validation=passed.")
    assert stage_of(world, 1) == Stage.NONE


def test_a_failure_halfway_through_leaves_nothing_half_done(world, monkeypatch):
    registry_services.version_transition(
        version=world.version(2), stage=Stage.PRODUCTION, actor=world.actor("alice")
    )
    registry_services.alias_set(model=world.model, alias="production", version=2, actor=SYSTEM)
    production_policy(archive_existing_versions=True, move_alias="production")
    request = request_create(
        version=world.version(1), target="Production", actor=world.actor("carol")
    )
    approve_without_applying(world, request)

    def alias_set_fails(**kwargs: object) -> None:
        raise Conflict("The alias store is unavailable.")

    # The transition and the archiving have happened when the alias move fails.
    monkeypatch.setattr(registry_services, "alias_set", alias_set_fails)
    seq = last_seq()
    request_apply(request_id=request.pk)
    assert_failed(world, request, seq, "The alias store is unavailable.")
    assert (stage_of(world, 1), stage_of(world, 2)) == (Stage.NONE, Stage.PRODUCTION)
    assert aliases(world) == {"production": 2}


def test_apply_does_nothing_to_a_request_that_is_not_approved(world, pending):
    seq = last_seq()
    assert request_apply(request_id=pending.pk).status == RequestStatus.PENDING
    assert request_apply(request_id=10**9) is None
    assert last_seq() == seq
    assert stage_of(world, 1) == Stage.NONE


def test_apply_twice_applies_once(world, pending):
    approve_without_applying(world, pending)
    seq = last_seq()
    assert request_apply(request_id=pending.pk).status == RequestStatus.APPLIED
    applied_at = fresh(pending).applied_at
    assert request_apply(request_id=pending.pk).status == RequestStatus.APPLIED
    assert fresh(pending).applied_at == applied_at
    assert events_since(seq) == [
        ("model_version.stage_transitioned", "system", 1),
        ("transition_request.applied", "system", 1),
    ]


def test_the_promotion_archives_the_others_and_moves_the_alias(world):
    registry_services.version_transition(
        version=world.version(2), stage=Stage.PRODUCTION, actor=world.actor("alice")
    )
    registry_services.alias_set(model=world.model, alias="production", version=2, actor=SYSTEM)
    production_policy(archive_existing_versions=True, move_alias="production")
    request = request_create(
        version=world.version(1), target="Production", actor=world.actor("carol")
    )
    approve_without_applying(world, request)
    seq = last_seq()
    request_apply(request_id=request.pk)
    assert fresh(request).status == RequestStatus.APPLIED
    assert (stage_of(world, 1), stage_of(world, 2)) == (Stage.PRODUCTION, Stage.ARCHIVED)
    assert aliases(world) == {"production": 1}
    assert events_since(seq) == [
        ("model_version.stage_transitioned", "system", 2),
        ("model_version.stage_transitioned", "system", 1),
        ("model_version_alias.set", "system", 1),
        ("transition_request.applied", "system", 1),
    ]
    archived, promoted, moved, _ = Event.objects.filter(seq__gt=seq).order_by("seq")
    assert (archived.before["stage"], archived.after["stage"]) == ("Production", "Archived")
    assert archived.comment == (
        f"Archived because version 1 moved to Production. Applying request #{request.pk}, "
        "approved by alice, bob."
    )
    assert (promoted.before["stage"], promoted.after["stage"]) == ("None", "Production")
    assert (moved.before, moved.after) == (
        {"alias": "production", "version": 2},
        {"alias": "production", "version": 1},
    )


def test_without_archiving_the_others_stay_in_the_stage(world):
    registry_services.version_transition(
        version=world.version(2), stage=Stage.PRODUCTION, actor=world.actor("alice")
    )
    production_policy()
    request = request_create(
        version=world.version(1), target="Production", actor=world.actor("carol")
    )
    approve_without_applying(world, request)
    request_apply(request_id=request.pk)
    assert (stage_of(world, 1), stage_of(world, 2)) == (Stage.PRODUCTION, Stage.PRODUCTION)
    assert aliases(world) == {}


def test_a_staging_request_needs_only_the_staging_level(world, django_capture_on_commit_callbacks):
    request = request_create(version=world.version(1), target="Staging", actor=world.actor("stan"))
    # No policy: one holder of the level decides, the requester included (as on Databricks).
    with django_capture_on_commit_callbacks(execute=True):
        request_approve(request=request, actor=world.actor("stan"))
    assert fresh(request).status == RequestStatus.APPLIED
    assert stage_of(world, 1) == Stage.STAGING


# --- protected aliases ------------------------------------------------------------------------


PROTECTED = (
    "Alias 'production' of model 'fraud' is protected by an approval policy: " + REQUEST_FLOW + "."
)


@pytest.fixture
def protected(world) -> Policy:
    """`production` points at version 2; then a policy protects it."""
    registry_services.alias_set(model=world.model, alias="production", version=2, actor=SYSTEM)
    return policy_create(actor=world.actor("manager"), model=world.model, target="alias:production")


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


def test_a_protected_alias_refuses_direct_writes_through_the_services(world, protected):
    for actor in (world.actor("root"), world.actor("manager"), SYSTEM):
        refused(
            lambda actor=actor: registry_services.alias_set(
                model=world.model, alias="production", version=1, actor=actor
            ),
            PermissionDenied,
            PROTECTED,
            kept=None if actor.is_system else "model_version_alias.set_refused",
        )
        refused(
            lambda actor=actor: registry_services.alias_delete(
                model=world.model, alias="production", actor=actor
            ),
            PermissionDenied,
            PROTECTED,
            kept=None if actor.is_system else "model_version_alias.delete_refused",
        )
    refused(
        lambda: registry_services.version_delete(
            version=world.version(2), actor=world.actor("root")
        ),
        PermissionDenied,
        PROTECTED,
        kept="model_version.delete_refused",
    )
    # Other aliases are not protected.
    registry_services.alias_set(
        model=world.model, alias="champion", version=1, actor=world.actor("ed")
    )
    assert aliases(world) == {"production": 2, "champion": 1}


def test_a_protected_alias_refuses_direct_writes_through_the_native_api_and_mlflow(
    world, protected
):
    root = client_for(world.users["root"])
    before = state()
    native = root.put("/api/v1/models/fraud/aliases/production/", {"version": 1}, format="json")
    assert (native.status_code, native.json()) == (
        403,
        {"code": "permission_denied", "message": PROTECTED},
    )
    native = root.delete("/api/v1/models/fraud/aliases/production/")
    assert (native.status_code, native.json()["code"]) == (403, "permission_denied")
    mlflow = root.post(
        "/api/2.0/mlflow/registered-models/alias",
        {"name": "fraud", "alias": "production", "version": "1"},
        format="json",
    )
    assert (mlflow.status_code, mlflow.json()) == (
        403,
        {"error_code": "PERMISSION_DENIED", "message": PROTECTED},
    )
    mlflow = root.delete("/api/2.0/mlflow/registered-models/alias?name=fraud&alias=production")
    assert (mlflow.status_code, mlflow.json()["error_code"]) == (403, "PERMISSION_DENIED")
    assert state() == before
    kept = Event.objects.filter(type__endswith="_refused").order_by("seq")
    assert [(e.type, e.source, e.actor_name) for e in kept] == [
        ("model_version_alias.set_refused", "api", "root"),
        ("model_version_alias.delete_refused", "api", "root"),
        ("model_version_alias.set_refused", "mlflow", "root"),
        ("model_version_alias.delete_refused", "mlflow", "root"),
    ]


def test_a_protected_alias_refuses_direct_writes_through_the_admin_service_path(world, protected):
    """The admin calls the services through `run_service`, which shows a refusal as a message."""
    model_admin = admin.site._registry[RegisteredModel]
    request = RequestFactory().post("/admin/registry/registeredmodel/")
    request.user = world.users["root"]
    request._messages = CookieStorage(request)
    before = state()
    ok = model_admin.run_service(
        request, registry_services.alias_set, model=world.model, alias="production", version=1
    )
    assert ok is False
    ok = model_admin.run_service(
        request, registry_services.alias_delete, model=world.model, alias="production"
    )
    assert ok is False
    assert [(m.level_tag, m.message) for m in get_messages(request)] == [
        ("error", PROTECTED),
        ("error", PROTECTED),
    ]
    assert state() == before
    kept = Event.objects.filter(type__endswith="_refused").order_by("seq")
    assert [(e.type, e.source) for e in kept] == [
        ("model_version_alias.set_refused", "admin"),
        ("model_version_alias.delete_refused", "admin"),
    ]


def test_a_request_for_a_protected_alias_moves_it_when_approved(
    world, protected, django_capture_on_commit_callbacks
):
    request = request_create(
        version=world.version(1), target="alias:production", actor=world.actor("carol")
    )
    assert (request.policy_id_at_creation, request.approver_level, request.required_approvals) == (
        protected.pk,
        "CAN_MANAGE_PRODUCTION_VERSIONS",
        1,
    )
    refused(
        lambda: request_approve(request=request, actor=world.actor("stan")),
        PermissionDenied,
        _denied_review("CAN_MANAGE_STAGING_VERSIONS"),
        kept=APPROVAL_REFUSED,
    )
    seq = last_seq()
    with django_capture_on_commit_callbacks(execute=True):
        request_approve(request=request, actor=world.actor("alice"))
    assert fresh(request).status == RequestStatus.APPLIED
    assert aliases(world) == {"production": 1}
    assert (stage_of(world, 1), stage_of(world, 2)) == (Stage.NONE, Stage.NONE)
    assert events_since(seq) == [
        ("transition_request.approval_recorded", "alice", 1),
        ("transition_request.approved", "alice", 1),
        ("model_version_alias.set", "system", 1),
        ("transition_request.applied", "system", 1),
    ]
    moved = Event.objects.get(seq=seq + 3)
    assert (moved.before, moved.after) == (
        {"alias": "production", "version": 2},
        {"alias": "production", "version": 1},
    )
    assert moved.comment == f"Applying request #{request.pk}, approved by alice."
    # The approval was spent: a direct write is refused again.
    refused(
        lambda: registry_services.alias_set(
            model=world.model, alias="production", version=2, actor=world.actor("root")
        ),
        PermissionDenied,
        PROTECTED,
        kept="model_version_alias.set_refused",
    )


def test_a_stage_policy_may_move_a_protected_alias_with_the_promotion(world, protected):
    production_policy(required_approvals=2, move_alias="production")
    request = request_create(
        version=world.version(1), target="Production", actor=world.actor("carol")
    )
    approve_without_applying(world, request)
    request_apply(request_id=request.pk)
    assert fresh(request).status == RequestStatus.APPLIED
    assert aliases(world) == {"production": 1}


# --- expiry and the sweeper -------------------------------------------------------------------


def test_requests_expire_with_an_injected_now(world):
    production_policy(expires_after_hours=1)
    old = request_create(version=world.version(1), target="Production", actor=world.actor("carol"))
    forever = request_create(version=world.version(1), target="Staging", actor=world.actor("carol"))
    assert forever.expires_at is None
    expires_at = fresh(old).expires_at
    seq = last_seq()
    assert requests_expire(now=expires_at - timedelta(seconds=1)) == 0
    assert last_seq() == seq
    assert requests_expire(now=expires_at) == 1
    request = fresh(old)
    assert (request.status, request.decided_at, request.updated_at) == (
        RequestStatus.EXPIRED,
        expires_at,
        expires_at,
    )
    assert fresh(forever).status == RequestStatus.PENDING
    assert events_since(seq) == [("transition_request.expired", "system", 1)]
    assert Event.objects.get(seq=seq + 1).after == snapshot(request)
    assert requests_expire(now=expires_at + timedelta(days=365)) == 0
    assert last_seq() == seq + 1


def test_approved_requests_do_not_expire(world, pending):
    approve_without_applying(world, pending)
    assert requests_expire(now=timezone.now() + timedelta(days=30)) == 0
    assert fresh(pending).status == RequestStatus.APPROVED


def test_the_sweeper_applies_approved_requests_whose_task_never_ran(world, pending):
    approve_without_applying(world, pending)
    assert requests_apply_waiting() == 0  # just approved: its task may still be on its way
    assert fresh(pending).status == RequestStatus.APPROVED
    TransitionRequest.objects.filter(pk=pending.pk).update(
        decided_at=timezone.now() - timedelta(seconds=31)
    )
    seq = last_seq()
    assert requests_apply_waiting() == 1
    assert fresh(pending).status == RequestStatus.APPLIED
    assert stage_of(world, 1) == Stage.PRODUCTION
    assert events_since(seq) == [
        ("model_version.stage_transitioned", "system", 1),
        ("transition_request.applied", "system", 1),
    ]
    assert requests_apply_waiting() == 0


def test_the_beat_task_expires_and_applies(world, pending):
    approve_without_applying(world, pending)
    TransitionRequest.objects.filter(pk=pending.pk).update(
        decided_at=timezone.now() - timedelta(minutes=5)
    )
    stale = request_create(version=world.version(2), target="Production", actor=world.actor("ed"))
    TransitionRequest.objects.filter(pk=stale.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert tasks.requests_sweep() == {"expired": 1, "applied": 1}
    assert (fresh(pending).status, fresh(stale).status) == ("APPLIED", "EXPIRED")


# --- comments ---------------------------------------------------------------------------------


def test_comment_create_edit_delete_own(world):
    carol = world.actor("carol")
    seq = last_seq()
    comment = comment_create(version=world.version(1), actor=carol, text="  looks good  ")
    assert (comment.author_id, comment.author_name, comment.text) == (
        world.users["carol"].pk,
        "carol",
        "looks good",
    )
    edited = comment_update(comment=comment, actor=carol, text="looks great")
    assert Comment.objects.get().text == "looks great"
    assert edited.updated_at >= edited.created_at
    comment_delete(comment=comment, actor=carol)
    assert Comment.objects.count() == 0
    assert events_since(seq) == [
        ("comment.created", "carol", 1),
        ("comment.updated", "carol", 1),
        ("comment.deleted", "carol", 1),
    ]
    created, updated, deleted = Event.objects.filter(seq__gt=seq).order_by("seq")
    body = {"id": comment.pk, "author": "carol"}
    assert (created.before, created.after, created.comment) == (
        None,
        {**body, "text": "looks good"},
        "looks good",
    )
    assert (updated.before, updated.after) == (
        {**body, "text": "looks good"},
        {**body, "text": "looks great"},
    )
    assert (deleted.before, deleted.after) == ({**body, "text": "looks great"}, None)


def test_can_manage_may_delete_others_comments_but_not_edit_them(world):
    comment = comment_create(version=world.version(1), actor=world.actor("carol"), text="hm")
    refused(
        lambda: comment_update(comment=comment, actor=world.actor("manager"), text="edited"),
        PermissionDenied,
        "Only the author can change this comment.",
    )
    seq = last_seq()
    comment_delete(comment=comment, actor=world.actor("manager"))
    assert Comment.objects.count() == 0
    assert events_since(seq) == [("comment.deleted", "manager", 1)]


def test_comment_refusals_change_nothing(world):
    comment = comment_create(version=world.version(1), actor=world.actor("carol"), text="hm")
    only_author = "Only the author can change this comment."
    cases = [
        (lambda: comment_create(version=world.version(1), actor=world.actor("eve"), text="x"),
         NotFound, "Registered Model with name=fraud not found"),
        (lambda: comment_create(version=world.version(1), actor=world.actor("carol"), text="  "),
         InvalidParameter, "A comment needs text."),
        (lambda: comment_create(
            version=world.version(1), actor=world.actor("carol"), text="x" * 10_001),
         InvalidParameter, "comment is longer than 10000 characters."),
        (lambda: comment_create(version=world.version(1), actor=SYSTEM, text="x"),
         PermissionDenied, "Only a signed-in user can comment."),
        (lambda: comment_create(
            version=world.version(1), actor=world.token_actor("carol", read_only=True), text="x"),
         PermissionDenied, "This API token is read-only."),
        (lambda: comment_update(comment=comment, actor=world.actor("alice"), text="x"),
         PermissionDenied, only_author),
        (lambda: comment_update(comment=comment, actor=world.actor("carol"), text=""),
         InvalidParameter, "A comment needs text."),
        (lambda: comment_update(
            comment=comment, actor=world.token_actor("carol", read_only=True), text="x"),
         PermissionDenied, "This API token is read-only."),
        (lambda: comment_delete(comment=comment, actor=world.actor("alice")),
         PermissionDenied, only_author),
        (lambda: comment_delete(comment=comment, actor=world.actor("eve")),
         PermissionDenied, only_author),
    ]  # fmt: skip
    for call, error, message in cases:
        refused(call, error, message)
    assert Comment.objects.get().text == "hm"
