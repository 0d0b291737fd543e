"""A reviewer approves a promotion in the admin, in a real browser; the requester cannot.

The server is pytest-django's live server (a real HTTP server over the test database); Celery
runs eagerly, so the approval that reaches the quorum is applied before the page comes back.
"""

from __future__ import annotations

import re

import pytest

from accounts.actors import Actor
from registry import services as registry_services
from registry.choices import Stage
from registry.models import Event, ModelAlias, ModelVersion
from registry.permissions import Level
from workflows.choices import RequestStatus
from workflows.models import Review, TransitionRequest
from workflows.policies import policy_create
from workflows.services import request_create

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def promotion(django_user_model) -> TransitionRequest:
    """`fraud` v1 in Production behind alias `production`; Carol asks for v2 to replace it under
    a policy of one approval by another CAN_MANAGE_PRODUCTION_VERSIONS holder. Alice and Carol
    both hold that level and are staff."""
    make = django_user_model.objects.create_user
    pipeline = Actor(user=make(username="pipeline", password="pipeline-password-1"))
    for name in ("alice", "carol"):
        make(username=name, password=f"{name}-password-1", is_staff=True)
    model = registry_services.model_create(name="fraud", actor=pipeline)
    for number in (1, 2):
        registry_services.version_create(
            model=model,
            source=f"s3://models/fraud/{number}",
            run_id=f"run{number}",
            run_link=f"https://mlflow.example.com/#/runs/run{number}",
            description=f"gradient boosting, retrained on week {number}",
            tags={"validation": "passed"},
            actor=pipeline,
        )
    registry_services.version_transition(
        version=ModelVersion.objects.get(model=model, version=1),
        stage=Stage.PRODUCTION,
        actor=pipeline,
    )
    registry_services.alias_set(model=model, alias="production", version=1, actor=pipeline)
    registry_services.permissions_update(
        model=model,
        actor=Actor.system(),
        users={name: Level.CAN_MANAGE_PRODUCTION_VERSIONS for name in ("alice", "carol")},
        groups={},
    )
    policy_create(
        actor=Actor.system(),
        model=None,
        target="Production",
        required_approvals=1,
        required_tags={"validation": "passed"},
        archive_existing_versions=True,
        move_alias="production",
    )
    return request_create(
        version=ModelVersion.objects.get(model=model, version=2),
        target="Production",
        actor=Actor(user=django_user_model.objects.get(username="carol")),
        comment="AUC 0.91 against 0.88",
    )


def stages() -> dict[int, str]:
    return dict(ModelVersion.objects.filter(model__name="fraud").values_list("version", "stage"))


def log_in(page, live_server, name: str) -> None:
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", name)
    page.fill("#id_password", f"{name}-password-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    assert page.title() == "Registry administration | Modelgate"


def test_a_reviewer_approves_in_the_admin_and_sees_it_applied(
    promotion, new_page, live_server, screenshots
):
    page = new_page()
    log_in(page, live_server, "alice")

    # The queue: the admin index leads to it, and it opens on "Waiting for my review".
    page.get_by_role("link", name="Transition requests").first.click()
    selected = page.locator("#changelist-filter li.selected").first
    assert selected.inner_text().strip() == "Waiting for my review"
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "fraud" in rows.first.inner_text()
    page.screenshot(path=str(screenshots / "queue.png"), full_page=True)
    page.get_by_role("link", name=f"#{promotion.pk}", exact=True).click()

    # The request page: the version, what is in Production now, the policy, the history.
    page.wait_for_selector("#decision")
    content = page.locator("#content-main").inner_text()
    for expected in (
        "s3://models/fraud/2",
        "https://mlflow.example.com/#/runs/run2",
        "gradient boosting, retrained on week 2",
        "validation=passed",
        "pipeline,",
        "AUC 0.91 against 0.88",
        "Version 1 is in Production: s3://models/fraud/1",
        "Alias production points at version 1.",
        "Approvals needed: 1",
        "0 of 1; 1 still missing",
        "transition_request.created",
    ):
        assert expected in content, expected
    page.screenshot(path=str(screenshots / "request-page.png"), full_page=True)

    # Approve… leads to a confirmation page; only its POST decides.
    page.click("#approve-button")
    page.wait_for_selector("#decision-form")
    assert re.search(r"/transitionrequest/\d+/approve/$", page.url)
    assert TransitionRequest.objects.get().status == RequestStatus.PENDING
    assert "completes the quorum" in page.locator("#content-main").inner_text()
    page.fill("textarea[name=comment]", "Checked the slices, ship it.")
    page.screenshot(path=str(screenshots / "confirmation-page.png"), full_page=True)
    page.click("#confirm-button")

    # Back on the request page: applied, and the database agrees.
    page.wait_for_selector(".messagelist")
    message = page.locator(".messagelist").inner_text()
    assert f"Approved request #{promotion.pk} (fraud v2 → Production): applied." in message
    assert "APPLIED" in page.locator(".field-status_text").inner_text()
    assert "Checked the slices, ship it." in page.locator("#reviews").inner_text()
    promotion.refresh_from_db()
    assert promotion.status == RequestStatus.APPLIED
    assert stages() == {1: Stage.ARCHIVED, 2: Stage.PRODUCTION}
    assert ModelAlias.objects.get(alias="production").version.version == 2

    # The queue is empty now.
    page.goto(f"{live_server.url}/admin/workflows/transitionrequest/")
    assert page.locator("#result_list").count() == 0
    assert "0 transition requests" in page.locator("#changelist").inner_text()


def test_the_requester_cannot_approve_their_own_request(
    promotion, new_page, live_server, screenshots
):
    events = Event.objects.count()
    page = new_page()
    log_in(page, live_server, "carol")
    reason = "You requested this transition; the policy needs someone else to approve it."

    # Not in her queue; under "My requests", with its state.
    page.goto(f"{live_server.url}/admin/workflows/transitionrequest/")
    assert page.locator("#result_list").count() == 0
    page.get_by_role("link", name="My requests").click()
    row = page.locator("#result_list tbody tr").first
    assert "PENDING" in row.inner_text()
    assert "0 of 1" in row.inner_text()

    # The request page says why; the confirmation page offers no way to confirm.
    page.get_by_role("link", name=f"#{promotion.pk}", exact=True).click()
    assert f"You cannot approve: {reason}" in page.locator("#decision").inner_text()
    page.click("#approve-button")
    page.wait_for_selector("#refusal")
    assert page.locator("#refusal").inner_text() == f"You cannot approve this request: {reason}"
    assert page.locator("#decision-form").count() == 0
    page.screenshot(path=str(screenshots / "refused-confirmation-page.png"), full_page=True)

    # Trying anyway through the bulk action: the service refuses, the page says why.
    page.goto(f"{live_server.url}/admin/workflows/transitionrequest/?queue=mine")
    page.check(f"input[name=_selected_action][value='{promotion.pk}']")
    page.select_option("select[name=action]", "approve_selected")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    messages = page.locator(".messagelist").inner_text()
    assert f"Approve refused for {promotion}: {reason}" in messages
    assert "Approve: 0 done, 1 refused." in messages

    # Nothing changed; the history keeps the attempt (docs/auditing.md, refused attempts).
    promotion.refresh_from_db()
    assert promotion.status == RequestStatus.PENDING
    assert Review.objects.count() == 0
    assert Event.objects.count() == events + 1
    kept = Event.objects.order_by("-seq").first()
    assert (kept.type, kept.actor_name, kept.source, kept.after["refusal"]) == (
        "transition_request.approval_refused",
        "carol",
        "admin",
        reason,
    )
    assert stages() == {1: Stage.PRODUCTION, 2: Stage.NONE}
