"""Reviewers in the admin: the queue, the request page, confirmed decisions, bulk decisions,
policies and comments, each for the staff member's grants."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from accounts.actors import Actor, Source
from registry import services as registry_services
from registry.choices import Stage
from registry.models import Event, ModelAlias, ModelVersion, RegisteredModel
from registry.permissions import Level
from tests.registry import test_admin as registry_admin
from workflows.choices import RequestStatus
from workflows.models import Comment, Policy, Review, TransitionRequest
from workflows.policies import policy_create
from workflows.services import comment_create, request_approve, request_create

pytestmark = pytest.mark.django_db

QUEUE = "/admin/workflows/transitionrequest/"


def page(pk: int, action: str = "change") -> str:
    return f"{QUEUE}{pk}/{action}/"


def messages_of(response) -> list[tuple[str, str]]:
    return [(message.tags, message.message) for message in get_messages(response.wsgi_request)]


def last_seq() -> int:
    return Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def listed(response) -> list[int]:
    assert response.status_code == 200, response.status_code
    return sorted(obj.pk for obj in response.context["cl"].result_list)


def state(request: TransitionRequest) -> tuple[str, int, int]:
    """The request's status, its number of reviews and the last event: what a refusal keeps."""
    request.refresh_from_db()
    return request.status, Review.objects.filter(request=request).count(), last_seq()


def refusal_kept(before: tuple[str, int, int], request: TransitionRequest) -> tuple[str, ...]:
    """The request and its reviews as `before`, and the one event the refusal left after it:
    its type, who tried, through which door and why."""
    status, reviews, seq = before
    assert state(request) == (status, reviews, seq + 1)
    event = Event.objects.get(seq=seq + 1)
    return event.type, event.actor_name, event.source, event.after["refusal"]


@pytest.fixture
def people(django_user_model):
    """Staff members: a pipeline that registers versions (the model's creator, so CAN_MANAGE),
    two production reviewers, a staging reviewer, a reader who requests, and a stranger with no
    grant on the model; plus a superuser."""
    make = django_user_model.objects.create_user
    found = {
        name: make(username=name, password=f"{name}-password-1", is_staff=True)
        for name in ("pipeline", "alice", "bob", "stan", "carol", "olga")
    }
    found["root"] = django_user_model.objects.create_superuser(
        username="root", password="root-password-1", email="root@example.com"
    )
    return found


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def model(people):
    """`fraud`: version 1 (tagged validation=passed, Production, alias `production`), version 2
    (tagged, the one to promote) and 3; a registry-wide Production policy asking two approvals
    from CAN_MANAGE_PRODUCTION_VERSIONS holders, no self-approval, moving `production`."""
    pipeline = Actor(user=people["pipeline"])
    model = registry_services.model_create(name="fraud", actor=pipeline)
    for number in (1, 2, 3):
        registry_services.version_create(
            model=model,
            source=f"s3://models/fraud/{number}",
            run_id=f"run{number}",
            run_link=f"https://mlflow.example.com/#/runs/run{number}",
            description=f"retrained on week {number}",
            tags={"validation": "passed"} if number < 3 else {},
            actor=pipeline,
        )
    first = ModelVersion.objects.get(model=model, version=1)
    registry_services.version_transition(version=first, stage=Stage.PRODUCTION, actor=pipeline)
    registry_services.alias_set(model=model, alias="production", version=1, actor=pipeline)
    registry_services.permissions_update(
        model=model,
        actor=Actor.system(),
        users={
            "alice": Level.CAN_MANAGE_PRODUCTION_VERSIONS,
            "bob": Level.CAN_MANAGE_PRODUCTION_VERSIONS,
            "stan": Level.CAN_MANAGE_STAGING_VERSIONS,
            "carol": Level.CAN_READ,
        },
        groups={},
    )
    policy_create(
        actor=Actor.system(),
        model=None,
        target="Production",
        required_approvals=2,
        required_tags={"validation": "passed"},
        archive_existing_versions=True,
        move_alias="production",
    )
    return model


def version(number: int) -> ModelVersion:
    return ModelVersion.objects.get(model__name="fraud", version=number)


@pytest.fixture
def carols(people, model) -> TransitionRequest:
    """Carol (CAN_READ) asks for version 2 to reach Production."""
    return request_create(
        version=version(2),
        target="Production",
        actor=Actor(user=people["carol"]),
        comment="beats v1 on every slice",
    )


@pytest.fixture
def alices(people, model) -> TransitionRequest:
    """Alice, a production reviewer herself, asks for version 2 to reach Production."""
    return request_create(
        version=version(2), target="Production", actor=Actor(user=people["alice"])
    )


# --- the queue --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "waiting"),
    [
        ("alice", ["carols"]),  # not her own
        ("bob", ["carols", "alices"]),
        ("root", ["carols", "alices"]),
        ("stan", []),  # staging level: Production needs more
        ("carol", []),  # a reader
        ("pipeline", []),  # registered the version: may not approve it
        ("olga", []),  # cannot see the model
    ],
)
def test_the_queue_shows_what_the_reviewer_may_decide(people, carols, alices, who, waiting):
    requests = {"carols": carols.pk, "alices": alices.pk}

    response = login(people[who]).get(QUEUE)

    assert listed(response) == sorted(requests[name] for name in waiting)
    assert "Waiting for my review" in response.content.decode()


def test_a_decided_request_leaves_the_reviewers_queue(people, carols):
    request_approve(request=carols, actor=Actor(user=people["alice"]))

    assert listed(login(people["alice"]).get(QUEUE)) == []
    assert listed(login(people["bob"]).get(QUEUE)) == [carols.pk]


def test_my_requests_shows_the_requesters_own_with_their_state(people, carols, alices):
    request_approve(request=carols, actor=Actor(user=people["bob"]))

    response = login(people["carol"]).get(QUEUE + "?queue=mine")
    everything = login(people["carol"]).get(QUEUE + "?queue=all")

    assert listed(response) == [carols.pk]
    content = response.content.decode()
    assert "1 of 2" in content
    assert "PENDING" in content
    assert listed(everything) == [carols.pk, alices.pk]


def test_staff_see_only_requests_of_models_they_may_read(people, carols):
    assert listed(login(people["olga"]).get(QUEUE + "?queue=all")) == []
    for action in ("change", "approve", "reject"):
        response = login(people["olga"]).get(page(carols.pk, action))
        assert response.status_code == 302
        assert response.url == "/admin/"
        assert messages_of(response) == [
            (
                "warning",
                f"transition request with ID “{carols.pk}” doesn’t exist. Perhaps it was deleted?",  # noqa: RUF001
            )
        ]


def test_a_stranger_cannot_decide_by_posting(people, carols):
    before = state(carols)

    approve = login(people["olga"]).post(page(carols.pk, "approve"), {"comment": "sneaky"})
    bulk = login(people["olga"]).post(
        QUEUE + "?queue=all",
        {"action": "approve_selected", "_selected_action": [carols.pk]},
    )

    assert approve.status_code == 302
    assert approve.url == "/admin/"
    assert bulk.status_code == 302
    assert state(carols) == before


def test_the_admin_needs_a_staff_login(client, people, carols):
    people["carol"].is_staff = False
    people["carol"].save()

    anonymous = client.get(page(carols.pk, "approve"))
    not_staff = login(people["carol"]).get(page(carols.pk, "approve"))

    assert anonymous.status_code == 302
    assert anonymous.url.startswith("/admin/login/")
    assert not_staff.status_code == 302
    assert not_staff.url.startswith("/admin/login/")


# --- the request page ---------------------------------------------------------------------------


def test_the_request_page_shows_version_target_policy_reviews_comments_history(people, carols):
    comment_create(version=version(2), actor=Actor(user=people["bob"]), text="latency looks fine")
    request_approve(request=carols, actor=Actor(user=people["bob"]), comment="ship it")

    response = login(people["alice"]).get(page(carols.pk))

    assert response.status_code == 200
    content = response.content.decode()
    for expected in [
        "s3://models/fraud/2",  # source
        '<a href="https://mlflow.example.com/#/runs/run2" rel="noopener noreferrer">',  # run
        "retrained on week 2",  # description
        "<code>validation=passed</code>",  # tags
        "pipeline, ",  # registered by
        "beats v1 on every slice",  # the request's comment
        "is in Production: s3://models/fraud/1 (registered by pipeline)",  # the target now
        'Alias <code>production</code> points at <a href="',
        "Approvals needed: 2",
        "Approver level: CAN_MANAGE_PRODUCTION_VERSIONS",
        "<code>validation=passed</code> (present)",
        "1 of 2; 1 still missing",
        "<td>bob</td><td>APPROVE</td><td>ship it</td>",  # the review
        "latency looks fine",  # the version's comment
        "transition_request.approval_recorded",  # the history
        "model_version.created",
        f'href="{page(carols.pk, "approve")}"',
        f'href="{page(carols.pk, "reject")}"',
    ]:
        assert expected in content, expected
    assert response.context["history"][-1].type == "transition_request.approval_recorded"
    everything = login(people["alice"]).get(response.context["history_url"])
    assert everything.status_code == 200
    assert everything.context["cl"].result_count == len(response.context["history"])
    assert {event.version for event in everything.context["cl"].result_list} == {2}
    assert 'name="_save"' not in content  # read-only


def test_the_request_page_tells_the_requester_why_they_cannot_approve(people, alices):
    response = login(people["alice"]).get(page(alices.pk))

    assert response.context["approve_refusal"] == (
        "You requested this transition; the policy needs someone else to approve it."
    )
    assert response.context["reject_refusal"] is None


def test_a_run_link_that_is_not_http_is_shown_as_text(people, model):
    pipeline = Actor(user=people["pipeline"])
    bad = registry_services.version_create(
        model=model, source="s3://x", run_link="javascript:alert(1)", actor=pipeline
    )
    request = request_create(version=bad, target="Staging", actor=Actor(user=people["carol"]))

    content = login(people["alice"]).get(page(request.pk)).content.decode()

    assert "javascript:alert(1)" in content
    assert 'href="javascript:' not in content


def test_the_page_of_an_alias_request_shows_where_the_alias_points(people, model):
    request = request_create(
        version=version(2), target="alias:champion", actor=Actor(user=people["carol"])
    )

    content = login(people["alice"]).get(page(request.pk)).content.decode()

    assert "Alias <code>champion</code> points at no version yet." in content
    assert "No policy: one holder of the level decides" in content


# --- confirmation and decision --------------------------------------------------------------


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_the_confirmation_page_changes_nothing(people, carols, action):
    before = state(carols)

    response = login(people["alice"]).get(page(carols.pk, action))

    assert response.status_code == 200
    content = response.content.decode()
    assert '<form method="post" id="decision-form">' in content
    assert 'name="csrfmiddlewaretoken"' in content
    assert '<textarea name="comment"' in content
    assert f'value="Yes, {action}"' in content
    assert state(carols) == before


def test_posting_an_approval_records_it_with_the_admin_as_source(people, carols):
    since = last_seq()

    response = login(people["alice"]).post(page(carols.pk, "approve"), {"comment": "looks good"})

    assert response.status_code == 302
    assert response.url == page(carols.pk)
    assert messages_of(response) == [
        (
            "success",
            f"Approval recorded on request #{carols.pk} (fraud v2 → Production); "
            "1 more approval(s) needed.",
        )
    ]
    review = Review.objects.get(request=carols)
    assert (review.reviewer_name, review.decision, review.comment) == (
        "alice",
        "APPROVE",
        "looks good",
    )
    assert list(
        Event.objects.filter(seq__gt=since).values_list("type", "source", "actor_name", "comment")
    ) == [("transition_request.approval_recorded", Source.ADMIN, "alice", "looks good")]
    carols.refresh_from_db()
    assert carols.status == RequestStatus.PENDING


def test_posting_a_rejection_ends_the_request(people, carols):
    response = login(people["bob"]).post(page(carols.pk, "reject"), {"comment": "not yet"})

    assert response.status_code == 302
    assert messages_of(response) == [
        ("success", f"Rejected request #{carols.pk} (fraud v2 → Production).")
    ]
    carols.refresh_from_db()
    assert carols.status == RequestStatus.REJECTED
    assert version(2).stage == Stage.NONE


def test_the_requester_cannot_approve_their_own_request(people, alices):
    alice = login(people["alice"])
    before = state(alices)

    confirmation = alice.get(page(alices.pk, "approve"))
    response = alice.post(page(alices.pk, "approve"), {"comment": "mine is great"})

    reason = "You requested this transition; the policy needs someone else to approve it."
    assert confirmation.status_code == 200
    assert f"You cannot approve this request: {reason}" in confirmation.content.decode()
    assert 'id="decision-form"' not in confirmation.content.decode()
    assert response.status_code == 302
    assert response.url == page(alices.pk)
    assert messages_of(response) == [("error", f"Approve refused: {reason}")]
    assert refusal_kept(before, alices) == (
        "transition_request.approval_refused",
        "alice",
        "admin",
        reason,
    )


def test_the_versions_creator_cannot_approve_it(people, carols):
    before = state(carols)

    response = login(people["pipeline"]).post(page(carols.pk, "approve"))

    assert messages_of(response) == [
        (
            "error",
            "Approve refused: You registered this version; the policy needs someone else to "
            "approve it.",
        )
    ]
    assert refusal_kept(before, carols) == (
        "transition_request.approval_refused",
        "pipeline",
        "admin",
        "You registered this version; the policy needs someone else to approve it.",
    )


def test_a_reviewer_below_the_level_is_refused(people, carols):
    before = state(carols)

    response = login(people["stan"]).post(page(carols.pk, "reject"))

    assert messages_of(response) == [
        (
            "error",
            "Reject refused: Reviewing this request needs CAN_MANAGE_PRODUCTION_VERSIONS; you have "
            "CAN_MANAGE_STAGING_VERSIONS.",
        )
    ]
    assert refusal_kept(before, carols) == (
        "transition_request.rejection_refused",
        "stan",
        "admin",
        "Reviewing this request needs CAN_MANAGE_PRODUCTION_VERSIONS; you have "
        "CAN_MANAGE_STAGING_VERSIONS.",
    )


def test_a_decision_needs_the_csrf_token(people, carols):
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["alice"])
    before = state(carols)

    response = client.post(page(carols.pk, "approve"), {"comment": "forged"})

    assert response.status_code == 403
    assert state(carols) == before


def test_a_decision_page_refuses_other_methods(people, carols):
    response = login(people["alice"]).put(page(carols.pk, "approve"))

    assert response.status_code == 405


def test_a_too_long_comment_is_a_form_error(people, carols):
    before = state(carols)

    response = login(people["alice"]).post(page(carols.pk, "approve"), {"comment": "x" * 10_001})

    assert response.status_code == 200
    assert response.context["form"].errors == {
        "comment": ["Ensure this value has at most 10000 characters (it has 10001)."]
    }
    assert state(carols) == before


def test_deciding_twice_is_refused(people, carols):
    login(people["alice"]).post(page(carols.pk, "approve"))

    response = login(people["alice"]).post(page(carols.pk, "approve"))

    assert messages_of(response) == [
        ("error", "Approve refused: You have already decided on this request.")
    ]
    assert Review.objects.filter(request=carols).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_approval_reaching_the_quorum_is_applied_and_says_so(people, carols):
    login(people["alice"]).post(page(carols.pk, "approve"))

    response = login(people["bob"]).post(page(carols.pk, "approve"), {"comment": "go"})

    assert messages_of(response) == [
        ("success", f"Approved request #{carols.pk} (fraud v2 → Production): applied.")
    ]
    carols.refresh_from_db()
    assert carols.status == RequestStatus.APPLIED
    assert (version(1).stage, version(2).stage) == (Stage.ARCHIVED, Stage.PRODUCTION)
    assert ModelAlias.objects.get(model__name="fraud", alias="production").version == version(2)
    page_after = login(people["bob"]).get(page(carols.pk)).content.decode()
    assert "Your decision" not in page_after
    assert "is in Production: s3://models/fraud/2" in page_after


def test_an_approval_whose_task_has_not_run_yet_says_it_is_being_applied(people, carols, settings):
    settings.MODELGATE_APPROVE_WAIT_SECONDS = 0.1
    request_approve(request=carols, actor=Actor(user=people["alice"]))

    response = login(people["bob"]).post(page(carols.pk, "approve"))

    assert messages_of(response) == [
        (
            "warning",
            f"Approved request #{carols.pk} (fraud v2 → Production); it is being applied "
            "(reload to see it applied).",
        )
    ]


# --- bulk decisions -------------------------------------------------------------------------


def bulk(client: Client, action: str, *requests: TransitionRequest, queue: str = "all"):
    return client.post(
        f"{QUEUE}?queue={queue}",
        {"action": action, "_selected_action": [request.pk for request in requests]},
    )


@pytest.mark.django_db(transaction=True)
def test_bulk_approval_checks_each_request_and_reports_refusals(people, model, carols, alices):
    third = request_create(version=version(3), target="Staging", actor=Actor(user=people["carol"]))
    before = state(alices)

    response = bulk(login(people["alice"]), "approve_selected", carols, alices, third)

    assert response.status_code == 302
    assert messages_of(response) == [
        (
            "success",
            f"Approval recorded on request #{carols.pk} (fraud v2 → Production); "
            "1 more approval(s) needed.",
        ),
        ("success", f"Approved request #{third.pk} (fraud v3 → Staging): applied."),
        (
            "error",
            f"Approve refused for {alices}: You requested this transition; the policy needs "
            "someone else to approve it.",
        ),
        ("warning", "Approve: 2 done, 1 refused."),
    ]
    assert Review.objects.filter(request=carols, reviewer=people["alice"]).count() == 1
    assert state(alices)[:2] == before[:2]


def test_bulk_approval_refuses_what_the_reviewer_may_not_decide(people, carols, alices):
    before = (state(carols)[:2], state(alices)[:2])

    response = bulk(login(people["stan"]), "approve_selected", carols, alices)

    reason = (
        "Reviewing this request needs CAN_MANAGE_PRODUCTION_VERSIONS; you have "
        "CAN_MANAGE_STAGING_VERSIONS."
    )
    assert messages_of(response) == [
        ("error", f"Approve refused for {carols}: {reason}"),
        ("error", f"Approve refused for {alices}: {reason}"),
        ("warning", "Approve: 0 done, 2 refused."),
    ]
    assert (state(carols)[:2], state(alices)[:2]) == before


def test_bulk_rejection_from_the_queue(people, carols, alices):
    response = bulk(login(people["bob"]), "reject_selected", carols, alices, queue="")

    assert messages_of(response) == [
        ("success", f"Rejected request #{carols.pk} (fraud v2 → Production)."),
        ("success", f"Rejected request #{alices.pk} (fraud v2 → Production)."),
        ("info", "Reject: 2 done, 0 refused."),
    ]
    assert set(TransitionRequest.objects.values_list("status", flat=True)) == {"REJECTED"}


def test_bulk_reports_a_request_that_left_the_queue_meanwhile(people, carols):
    """Ticked in the queue, then decided by someone else before the action ran."""
    login(people["bob"]).post(page(carols.pk, "reject"))

    response = bulk(login(people["bob"]), "approve_selected", carols, queue="")

    assert messages_of(response) == [
        ("error", f"Approve refused for {carols}: Request #{carols.pk} is REJECTED, not PENDING."),
        ("warning", "Approve: 0 done, 1 refused."),
    ]


# --- policies -------------------------------------------------------------------------------

POLICIES = "/admin/workflows/policy/"


def policy_form(client: Client, path: str, **changes: object) -> dict[str, object]:
    return registry_admin.form_data(client.get(path), "policy_form", **changes)


def test_a_superuser_adds_a_registry_wide_policy_through_the_service(people, model):
    root = login(people["root"])
    since = last_seq()

    response = root.post(
        POLICIES + "add/",
        policy_form(
            root,
            POLICIES + "add/",
            target="staging",
            required_approvals="1",
            required_tags='{"validation": "passed"}',
        ),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    policy = Policy.objects.get(target="Staging")
    assert (policy.model, policy.approver_level, policy.required_tags) == (
        None,
        "CAN_MANAGE_STAGING_VERSIONS",
        {"validation": "passed"},
    )
    assert list(
        Event.objects.filter(seq__gt=since).values_list("type", "source", "actor_name")
    ) == [("policy.created", Source.ADMIN, "root")]


def test_only_superusers_add_registry_wide_policies(people, model):
    pipeline = login(people["pipeline"])  # CAN_MANAGE on fraud, no registry-wide grant
    since = last_seq()

    response = pipeline.post(
        POLICIES + "add/", policy_form(pipeline, POLICIES + "add/", target="Staging")
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        "Only superusers change registry-wide policies."
    ]
    assert Policy.objects.count() == 1
    assert last_seq() == since


def test_a_model_manager_adds_a_policy_for_their_model(people, model):
    pipeline = login(people["pipeline"])

    response = pipeline.post(
        POLICIES + "add/",
        policy_form(
            pipeline,
            POLICIES + "add/",
            model=str(model.pk),
            target="alias:champion",
            required_approvals="2",
        ),
    )

    assert response.status_code == 302
    policy = Policy.objects.get(model=model)
    assert (policy.target, policy.required_approvals, policy.approver_level) == (
        "alias:champion",
        2,
        "CAN_MANAGE_PRODUCTION_VERSIONS",
    )
    assert Event.objects.filter(type="policy.created", model_id=model.pk).count() == 1


@pytest.mark.parametrize(
    ("who", "changes", "errors"),
    [
        ("alice", {}, {"__all__": ["CAN_MANAGE on registered model 'fraud' is needed for this; "
                                   "you have CAN_MANAGE_PRODUCTION_VERSIONS."]}),
        ("pipeline", {"target": "Nowhere"}, {"target": [
            "Staging, Production, Archived or alias:<name>."]}),
        ("pipeline", {"target": "alias:champion", "move_alias": "x"}, {"move_alias": [
            "Stage targets only."]}),
        ("pipeline", {"required_approvals": "101"}, {"required_approvals": [
            "Between 1 and 100."]}),
        ("pipeline", {"target": "Production"}, {}),  # the model's own overrides the registry's
    ],
)  # fmt: skip
def test_a_refused_policy_is_a_form_error(people, model, who, changes, errors):
    client = login(people[who])
    data = {"model": str(model.pk), "target": "Staging", **changes}

    response = client.post(POLICIES + "add/", policy_form(client, POLICIES + "add/", **data))

    if not errors:
        assert response.status_code == 302
        return
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == errors
    assert Policy.objects.count() == 1


def test_a_second_policy_for_the_same_target_is_a_form_error(people, model):
    root = login(people["root"])

    response = root.post(
        POLICIES + "add/", policy_form(root, POLICIES + "add/", target="Production")
    )

    assert response.context["adminform"].form.errors == {
        "target": ["A policy for Production of the registry already exists."]
    }


def test_changing_and_deleting_a_policy_records_events(people, model):
    root = login(people["root"])
    policy = Policy.objects.get()
    path = f"{POLICIES}{policy.pk}/change/"
    since = last_seq()

    unchanged = root.post(path, policy_form(root, path))
    changed = root.post(path, policy_form(root, path, required_approvals="3"))
    deleted = root.post(f"{POLICIES}{policy.pk}/delete/", {"post": "yes"})

    assert (unchanged.status_code, changed.status_code, deleted.status_code) == (302, 302, 302)
    assert list(Event.objects.filter(seq__gt=since).values_list("type", "before", "after")) == [
        ("policy.updated", {**snapshot(policy), "required_approvals": 2}, snapshot(policy, 3)),
        ("policy.deleted", snapshot(policy, 3), None),
    ]
    assert not Policy.objects.exists()


def snapshot(policy: Policy, approvals: int = 2) -> dict[str, object]:
    return {
        "id": policy.pk,
        "model": None,
        "target": "Production",
        "required_approvals": approvals,
        "approver_level": "CAN_MANAGE_PRODUCTION_VERSIONS",
        "allow_self_approval": False,
        "required_tags": {"validation": "passed"},
        "expires_after_hours": 168,
        "archive_existing_versions": True,
        "move_alias": "production",
    }


def test_staff_may_read_but_not_change_a_registry_wide_policy(people, model):
    pipeline = login(people["pipeline"])
    policy = Policy.objects.get()
    path = f"{POLICIES}{policy.pk}/change/"
    since = last_seq()

    view = pipeline.get(path)
    change = pipeline.post(path, {"required_approvals": "1"})
    delete = pipeline.post(f"{POLICIES}{policy.pk}/delete/", {"post": "yes"})

    assert view.status_code == 200
    assert 'name="_save"' not in view.content.decode()
    assert (change.status_code, delete.status_code) == (403, 403)
    assert Policy.objects.get().required_approvals == 2
    assert last_seq() == since


def test_policies_of_models_a_staff_member_cannot_see_are_not_listed(people, model):
    policy_create(actor=Actor.system(), model=model, target="Staging")

    olga = login(people["olga"]).get(POLICIES)
    carol = login(people["carol"]).get(POLICIES)

    assert [str(p) for p in olga.context["cl"].result_list] == ["Production (registry-wide)"]
    assert len(carol.context["cl"].result_list) == 2


# --- comments -------------------------------------------------------------------------------


def test_comments_are_a_read_only_list_of_what_staff_may_see(people, model):
    comment_create(version=version(2), actor=Actor(user=people["carol"]), text="nice")
    other = registry_services.model_create(name="other", actor=Actor(user=people["root"]))
    hidden = registry_services.version_create(
        model=other, source="s3://o/1", actor=Actor(user=people["root"])
    )
    comment_create(version=hidden, actor=Actor(user=people["root"]), text="secret")
    comment = Comment.objects.get(text="nice")

    carol = login(people["carol"])
    listing = carol.get("/admin/workflows/comment/")
    detail = carol.get(f"/admin/workflows/comment/{comment.pk}/change/")
    add = carol.post("/admin/workflows/comment/add/", {"text": "forged"})
    delete = carol.post(f"/admin/workflows/comment/{comment.pk}/delete/", {"post": "yes"})

    assert [c.text for c in listing.context["cl"].result_list] == ["nice"]
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert (add.status_code, delete.status_code) == (403, 403)
    assert Comment.objects.count() == 2
    assert RegisteredModel.objects.count() == 2
