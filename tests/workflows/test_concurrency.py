"""The approval workflow under real concurrency on PostgreSQL: threads, each on its own connection.

Every decision and every application locks the model row first, then the request row, so
deciders queue one behind the other. What the code does when a reviewer arrives after the quorum:
the request is no longer PENDING, so that reviewer gets a clean Conflict and no review row is
written. Celery runs eagerly here, so the apply task runs in the approving thread right after its
commit, as a worker would.
"""

from __future__ import annotations

import re

import pytest

from accounts.actors import Actor
from config.errors import Conflict
from registry import services as registry_services
from registry.choices import Stage
from registry.models import Event, ModelAlias, ModelVersion
from tests.registry.test_concurrency import assert_chain_valid, errors_of, run_together
from tests.workflows.scenario import World, build_world
from workflows import services
from workflows.choices import RequestStatus
from workflows.models import Review, TransitionRequest
from workflows.policies import policy_create

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SYSTEM = Actor.system()
ROUNDS = 5


@pytest.fixture
def world(django_user_model) -> World:
    return build_world(django_user_model)


def tagged_version(world: World) -> ModelVersion:
    version = registry_services.version_create(
        model=world.model, source="s3://fraud/next", actor=Actor(user=world.users["pipeline"])
    )
    registry_services.version_tag_set(
        version=version, key="validation", value="passed", actor=SYSTEM
    )
    return version


def count(type: str, version: ModelVersion) -> int:
    return Event.objects.filter(
        model_id=version.model_id, version=version.version, type=type
    ).count()


def not_pending(request: TransitionRequest, statuses: str) -> re.Pattern[str]:
    return re.compile(rf"Request #{request.pk} is ({statuses}), not PENDING\.")


def test_three_reviewers_approving_a_quorum_of_two_at_once_apply_it_once(world):
    policy_create(
        actor=SYSTEM,
        model=None,
        target="Production",
        required_approvals=2,
        required_tags={"validation": "passed"},
        move_alias="production",
    )
    for _ in range(ROUNDS):
        version = tagged_version(world)
        request = services.request_create(
            version=version, target="Production", actor=world.actor("carol")
        )

        def approve(name: str, request: TransitionRequest = request) -> str:
            return services.request_approve(request=request, actor=world.actor(name)).status

        writers, _ = run_together(
            [lambda name=name: approve(name) for name in ("alice", "bob", "dave")]
        )

        # Two approvals count (the second reaches the quorum); the third reviewer comes too late.
        assert sorted(thread.result for thread in writers if thread.error is None) == [
            RequestStatus.APPROVED,
            RequestStatus.PENDING,
        ]
        late = errors_of(writers)
        assert len(late) == 1
        assert isinstance(late[0], Conflict), late
        assert not_pending(request, "APPROVED|APPLIED").fullmatch(late[0].message), late[0].message
        assert Review.objects.filter(request=request).count() == 2
        request.refresh_from_db()
        assert (request.status, request.status_reason) == (RequestStatus.APPLIED, "")
        version.refresh_from_db()
        assert version.stage == Stage.PRODUCTION
        assert ModelAlias.objects.get(model=world.model, alias="production").version == version
        assert count("model_version.stage_transitioned", version) == 1
        assert count("model_version_alias.set", version) == 1
        assert count("transition_request.approval_recorded", version) == 2
        assert count("transition_request.approved", version) == 1
        assert count("transition_request.applied", version) == 1
    assert_chain_valid()


@pytest.mark.parametrize("rival", ["reject", "cancel"])
def test_approve_racing_reject_or_cancel_ends_in_exactly_one_terminal_state(world, rival):
    policy_create(actor=SYSTEM, model=None, target="Production", required_approvals=1)
    outcomes = set()
    for _ in range(ROUNDS * 2):
        version = tagged_version(world)
        request = services.request_create(
            version=version, target="Production", actor=world.actor("carol")
        )

        def approve(request: TransitionRequest = request) -> str:
            return services.request_approve(request=request, actor=world.actor("alice")).status

        def end(request: TransitionRequest = request) -> str:
            if rival == "reject":
                return services.request_reject(request=request, actor=world.actor("bob")).status
            return services.request_cancel(request=request, actor=world.actor("carol")).status

        writers, _ = run_together([approve, end])

        winners = [thread for thread in writers if thread.error is None]
        assert len(winners) == 1, [thread.error for thread in writers]
        loser = errors_of(writers)[0]
        assert isinstance(loser, Conflict), loser
        request.refresh_from_db()
        version.refresh_from_db()
        ended = {"reject": RequestStatus.REJECTED, "cancel": RequestStatus.CANCELLED}[rival]
        if winners[0] is writers[0]:  # the approval won: applied, the rival came too late
            assert winners[0].result == RequestStatus.APPROVED
            assert not_pending(request, "APPROVED|APPLIED").fullmatch(loser.message)
            assert request.status == RequestStatus.APPLIED
            assert version.stage == Stage.PRODUCTION
            assert count("model_version.stage_transitioned", version) == 1
            assert count(f"transition_request.{ended.lower()}", version) == 0
        else:  # the rival won: nothing was applied, the approval came too late
            assert winners[0].result == ended
            assert not_pending(request, ended).fullmatch(loser.message)
            assert request.status == ended
            assert version.stage == Stage.NONE
            assert count("model_version.stage_transitioned", version) == 0
            assert count("transition_request.approved", version) == 0
        outcomes.add(request.status)
        terminal = [
            "transition_request.applied",
            "transition_request.rejected",
            "transition_request.cancelled",
            "transition_request.failed",
        ]
        assert sum(count(type, version) for type in terminal) == 1
    assert outcomes <= {RequestStatus.APPLIED, ended}
    assert_chain_valid()


def test_the_apply_task_run_several_times_at_once_applies_once(world, monkeypatch):
    registry_services.version_transition(
        version=world.version(2), stage=Stage.PRODUCTION, actor=world.actor("alice")
    )
    registry_services.alias_set(model=world.model, alias="production", version=2, actor=SYSTEM)
    policy_create(
        actor=SYSTEM,
        model=None,
        target="Production",
        required_approvals=1,
        archive_existing_versions=True,
        move_alias="production",
    )
    # Approve without queueing the task, then run it from four workers at once (a redelivery,
    # the beat sweeper and the original task all arriving together).
    monkeypatch.setattr(services, "_queue_apply", lambda task, request_id: None)
    requests = []
    for _ in range(ROUNDS):
        version = tagged_version(world)
        request = services.request_create(
            version=version, target="Production", actor=world.actor("carol")
        )
        services.request_approve(request=request, actor=world.actor("alice"))
        requests.append(request)
    assert set(TransitionRequest.objects.values_list("status", flat=True)) == {"APPROVED"}

    for request in requests:
        writers, _ = run_together(
            [lambda request=request: services.request_apply(request_id=request.pk).status] * 4
        )
        assert errors_of(writers) == []
        assert [thread.result for thread in writers] == [RequestStatus.APPLIED] * 4
        request.refresh_from_db()
        assert request.status == RequestStatus.APPLIED
        version = ModelVersion.objects.get(pk=request.version_id)
        assert version.stage == Stage.PRODUCTION
        assert count("model_version.stage_transitioned", version) == 1
        assert count("model_version_alias.set", version) == 1
        assert count("transition_request.applied", version) == 1
        assert count("transition_request.failed", version) == 0
    # Each promotion archived the one before: one version in Production, the alias on it.
    last = ModelVersion.objects.get(pk=requests[-1].version_id)
    assert list(
        ModelVersion.objects.filter(model=world.model, stage=Stage.PRODUCTION).values_list(
            "version", flat=True
        )
    ) == [last.version]
    assert ModelAlias.objects.get(model=world.model, alias="production").version == last
    assert ModelVersion.objects.filter(model=world.model, stage=Stage.ARCHIVED).count() == ROUNDS
    assert_chain_valid()
