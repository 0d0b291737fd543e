"""Point-in-time answers from the events: a model as it was, and every move of an alias."""

from __future__ import annotations

import pytest
from django.db.models import Q
from rest_framework.test import APIClient

from accounts.actors import Actor
from registry import services
from registry.choices import Stage
from registry.models import Event, ModelVersion
from registry.permissions import Level
from workflows.policies import policy_create
from workflows.services import request_apply, request_approve, request_create

pytestmark = pytest.mark.django_db

MARCH = "2026-03-{:02d}T{:02d}:00:00Z"


def at(day: int, hour: int = 12) -> str:
    return MARCH.format(day, hour)


def state(client: APIClient, name: str, when: str) -> dict:
    response = client.get(f"/api/v1/models/{name}/history/", {"at": when})
    assert response.status_code == 200, response.content
    return response.json()


def stages(answer: dict) -> dict[int, str]:
    return {version["version"]: version["stage"] for version in answer["versions"]}


def aliases(answer: dict) -> dict[str, int]:
    return {alias["alias"]: alias["version"] for alias in answer["aliases"]}


@pytest.fixture
def story(clock, actor):
    """A month of fraud-scorer, one change a day at 09:00 UTC:

    1 created as "fraud" with v1, v2  · 2 v1 → Production, production → v1
    3 renamed "fraud-scorer"          · 4 v2 → Production (v1 archived), production → v2
    5 canary → v1                     · 6 v1 deleted (canary goes with it)
    7 a new model takes the name "fraud"  · 8 production deleted
    """
    model = services.model_create(name="fraud", actor=actor, description="first")
    v1 = services.version_create(model=model, source="s3://f/1", actor=actor)
    v2 = services.version_create(model=model, source="s3://f/2", actor=actor)
    clock.advance(days=1)
    services.version_transition(version=v1, stage=Stage.PRODUCTION, actor=actor)
    services.alias_set(model=model, alias="production", version=1, actor=actor)
    clock.advance(days=1)
    model = services.model_rename(model=model, new_name="fraud-scorer", actor=actor)
    clock.advance(days=1)
    services.version_transition(
        version=v2, stage=Stage.PRODUCTION, archive_existing=True, actor=actor
    )
    services.alias_set(model=model, alias="production", version=2, actor=actor)
    clock.advance(days=1)
    services.alias_set(model=model, alias="canary", version=1, actor=actor)
    clock.advance(days=1)
    services.version_delete(version=ModelVersion.objects.get(pk=v1.pk), actor=actor)
    clock.advance(days=1)
    newcomer = services.model_create(name="fraud", actor=actor, description="second")
    services.version_create(model=newcomer, source="s3://n/1", actor=actor)
    clock.advance(days=1)
    services.alias_delete(model=model, alias="production", actor=actor)
    clock.advance(days=1)
    return model


def test_the_model_as_it_was_on_each_day(api, story):
    day1 = state(api, "fraud-scorer", at(1))
    assert day1["model"] | {"created_at": None} == {
        "id": story.pk,
        "name": "fraud",  # its name then
        "description": "first",
        "tags": {},
        "created_at": None,
    }
    assert (stages(day1), aliases(day1)) == ({1: "None", 2: "None"}, {})
    assert day1["as_of"]["seq"] == 3

    day2 = state(api, "fraud-scorer", at(2))
    assert (stages(day2), aliases(day2)) == ({1: "Production", 2: "None"}, {"production": 1})
    assert day2["versions"][0]["aliases"] == ["production"]
    assert day2["versions"][0]["stage_since"] == "2026-03-02T09:00:00.000000Z"

    day4 = state(api, "fraud-scorer", at(4))
    assert day4["model"]["name"] == "fraud-scorer"
    assert (stages(day4), aliases(day4)) == ({1: "Archived", 2: "Production"}, {"production": 2})

    day5 = state(api, "fraud-scorer", at(5))
    assert aliases(day5) == {"canary": 1, "production": 2}

    day6 = state(api, "fraud-scorer", at(6))
    assert (stages(day6), aliases(day6)) == ({2: "Production"}, {"production": 2})
    assert day6["deleted_versions"] == [1]

    day8 = state(api, "fraud-scorer", at(8))
    assert (stages(day8), aliases(day8)) == ({2: "Production"}, {})


def test_an_alias_answer_says_who_set_it_and_when(api, story):
    production = state(api, "fraud-scorer", at(4))["aliases"][0]

    assert production == {
        "alias": "production",
        "version": 2,
        "since": "2026-03-04T09:00:00.000000Z",
        "set_by": "alice",
        "seq": Event.objects.get(type="model_version_alias.set", after__version=2).seq,
    }


def test_a_name_means_the_model_that_bore_it_then(api, story):
    """On day 2 "fraud" was today's fraud-scorer; on day 7 it is the newcomer."""
    then = state(api, "fraud", at(2))
    now = state(api, "fraud", at(7))

    assert (then["model"]["id"], then["model"]["description"]) == (story.pk, "first")
    assert aliases(then) == {"production": 1}
    assert now["model"]["id"] != story.pk
    assert (now["model"]["description"], stages(now)) == ("second", {1: "None"})


def test_the_exact_time_of_an_event_is_inclusive(api, story):
    before = state(api, "fraud-scorer", "2026-03-02T08:59:59.999999Z")
    on = state(api, "fraud-scorer", "2026-03-02T09:00:00Z")

    assert aliases(before) == {}
    assert aliases(on) == {"production": 1}


def test_before_the_model_existed_is_404(api, story):
    response = api.get("/api/v1/models/fraud-scorer/history/", {"at": "2026-02-28T00:00:00Z"})

    assert response.status_code == 404
    assert "did not exist at 2026-02-28T00:00:00.000000Z" in response.json()["message"]


def test_without_at_it_is_now(api, story):
    response = api.get("/api/v1/models/fraud-scorer/history/")

    assert response.status_code == 200
    assert (stages(response.json()), aliases(response.json())) == ({2: "Production"}, {})


def test_a_deleted_model_is_history_for_auditors_only(api, auditor_api, story, actor, clock):
    services.model_delete(model=story, actor=actor)
    clock.advance(days=1)

    assert api.get("/api/v1/models/fraud-scorer/history/", {"at": at(4)}).status_code == 404
    answer = state(auditor_api, "fraud-scorer", at(4))
    assert (stages(answer), aliases(answer)) == (
        {1: "Archived", 2: "Production"},
        {"production": 2},
    )
    after = auditor_api.get("/api/v1/models/fraud-scorer/history/")
    assert after.status_code == 404  # it no longer exists now


def test_readers_of_another_model_get_404(outsider_api, story):
    response = outsider_api.get("/api/v1/models/fraud-scorer/history/", {"at": at(4)})

    assert response.status_code == 404
    assert (
        outsider_api.get("/api/v1/models/fraud-scorer/aliases/production/history/").status_code
        == 404
    )


def test_a_per_model_reader_may_ask(django_user_model, story):
    reader = django_user_model.objects.create_user(username="rita", password="rita-pw-1")
    services.permissions_update(
        model=story, actor=Actor.system(), users={"rita": Level.CAN_READ}, groups={}
    )
    client = APIClient()
    client.force_authenticate(user=reader)

    assert aliases(state(client, "fraud-scorer", at(5))) == {"canary": 1, "production": 2}


def test_a_bad_time_is_400(api, story):
    response = api.get("/api/v1/models/fraud-scorer/history/", {"at": "last tuesday"})

    assert response.status_code == 400
    assert response.json()["fields"] == {"at": ["'last tuesday' is not an ISO 8601 date-time."]}


# --- alias history --------------------------------------------------------------------------


def test_every_move_of_an_alias(api, story):
    response = api.get("/api/v1/models/fraud-scorer/aliases/production/history/")

    assert response.status_code == 200
    moves = response.json()["results"]
    assert [(m["action"], m["from_version"], m["to_version"], m["time"]) for m in moves] == [
        ("set", None, 1, "2026-03-02T09:00:00.000000Z"),
        ("set", 1, 2, "2026-03-04T09:00:00.000000Z"),
        ("deleted", 2, None, "2026-03-08T09:00:00.000000Z"),
    ]
    assert moves[0]["actor"] == {
        "id": story.created_by_id,
        "name": "alice",
        "token": "",
        "source": "shell",
        "client_ip": "",
    }
    assert all(m["via_request"] is None for m in moves)


def test_an_alias_removed_with_its_version(api, story):
    moves = api.get("/api/v1/models/fraud-scorer/aliases/canary/history/").json()["results"]

    assert [(m["action"], m["comment"]) for m in moves] == [
        ("set", ""),
        ("deleted", "Removed with version 1."),
    ]


@pytest.fixture
def approved_moves(clock, actor, django_user_model):
    """production moves twice through approved requests: with a stage (move_alias) and as an
    alias target of its own."""
    people = {
        name: django_user_model.objects.create_user(username=name, password=f"{name}-pw-1")
        for name in ("carol", "bob")
    }
    model = services.model_create(name="scorer", actor=actor)
    v1 = services.version_create(model=model, source="s3://s/1", actor=actor)
    v2 = services.version_create(model=model, source="s3://s/2", actor=actor)
    services.permissions_update(
        model=model,
        actor=Actor.system(),
        users={"carol": Level.CAN_READ, "bob": Level.CAN_MANAGE},
        groups={},
    )
    policy_create(actor=actor, model=model, target="Production", move_alias="production")
    policy_create(actor=actor, model=model, target="alias:production")
    clock.advance(hours=1)
    first = request_create(
        version=v1, target="Production", actor=Actor(user=people["carol"]), comment="v1 please"
    )
    clock.advance(hours=1)
    request_approve(request=first, actor=Actor(user=people["bob"]), comment="lgtm")
    clock.advance(hours=1)
    request_apply(request_id=first.pk)
    clock.advance(days=1)
    second = request_create(
        version=v2, target="alias:production", actor=Actor(user=people["carol"]), comment="v2"
    )
    request_approve(request=second, actor=Actor(user=people["bob"]), comment="ok for v2")
    clock.advance(hours=1)
    request_apply(request_id=second.pk)
    return model, first, second


def test_a_move_through_a_request_names_the_request_requester_and_approvers(api, approved_moves):
    _, first, second = approved_moves

    moves = api.get("/api/v1/models/scorer/aliases/production/history/").json()["results"]

    assert [(m["from_version"], m["to_version"]) for m in moves] == [(None, 1), (1, 2)]
    assert moves[0]["actor"]["name"] == "system"
    assert moves[0]["actor"]["source"] == "task"
    via = moves[0]["via_request"]
    assert via | {"approvals": None, "applied_seq": None, "request_id": None} == {
        "id": first.pk,
        "target": "Production",
        "version": 1,
        "requested_by": "carol",
        "requested_at": "2026-03-01T10:00:00.000000Z",
        "comment": "v1 please",
        "approvals": None,
        "applied_seq": None,
        "request_id": None,
    }
    assert [(a["by"], a["comment"], a["at"]) for a in via["approvals"]] == [
        ("bob", "lgtm", "2026-03-01T11:00:00.000000Z")
    ]
    assert via["applied_seq"] == moves[0]["seq"] + 1
    assert moves[1]["via_request"]["id"] == second.pk
    assert moves[1]["via_request"]["target"] == "alias:production"
    assert [a["comment"] for a in moves[1]["via_request"]["approvals"]] == ["ok for v2"]


def test_alias_history_pages_by_seq(api, story, actor):
    for number in (2, 2, 2):
        services.alias_set(model=story, alias="production", version=number, actor=actor)

    pages = [
        api.get("/api/v1/models/fraud-scorer/aliases/production/history/", {"page_size": 2}).json()
    ]
    while pages[-1]["next"]:
        pages.append(api.get(pages[-1]["next"]).json())

    assert [len(page["results"]) for page in pages] == [2, 2, 2]
    moves = Event.objects.filter(type__startswith="model_version_alias.").filter(
        Q(after__alias="production") | Q(before__alias="production")
    )
    assert [m["seq"] for page in pages for m in page["results"]] == list(
        moves.order_by("seq").values_list("seq", flat=True)
    )
    assert moves.count() == 6


def test_an_unknown_alias_has_an_empty_history(api, story):
    response = api.get("/api/v1/models/fraud-scorer/aliases/nope/history/")

    assert (response.status_code, response.json()["results"]) == (200, [])
