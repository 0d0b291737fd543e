"""What the busy MLflow routes cost in queries, and that their kept answers never go stale.

The read routes keep their answers until the registry changes (registry.mlflow.answers): these
tests pin the query counts (fixed, whatever the page size), show that every change a service
makes is seen by the next read, that a kept answer is only ever given to the caller it was made
for, and that version creation makes a fixed, small number of queries.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.actors import Actor, Source
from registry import services
from registry.models import Event, ModelVersion
from registry.permissions import Level
from registry.services.permissions import permissions_update
from tests.mlflow.conftest import PASSWORD

API = "/api/2.0/mlflow/"


def _seed(actor: Actor, models: int, versions: int = 2) -> None:
    for n in range(models):
        model = services.model_create(name=f"model-{n:03d}", tags={"n": str(n)}, actor=actor)
        for m in range(1, versions + 1):
            services.version_create(
                model=model, source=f"s3://b/{n}/{m}", tags={"k": "v"}, actor=actor
            )
        services.alias_set(model=model, alias="prod", version=1, actor=actor)


def _get(http: Client, route: str, params: dict[str, Any]) -> tuple[int, Any]:
    with CaptureQueriesContext(connection) as queries:
        response = http.get(API + route, params)
    assert response.status_code == 200, response.content
    return len(queries), response.json()


def _post(http: Client, route: str, body: dict[str, Any]) -> tuple[int, Any]:
    with CaptureQueriesContext(connection) as queries:
        response = http.post(API + route, body, content_type="application/json")
    assert response.status_code == 200, response.content
    # Transaction control is not a query (and the test's own transaction makes savepoints).
    control = ("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN", "COMMIT")
    return len([q for q in queries if not q["sql"].startswith(control)]), response.json()


READS = [
    # Kept until the chain head moves: one query for the head.
    ("get", "registered-models/search", {"filter": "name LIKE 'model-%'", "max_results": "50"}),
    ("get", "model-versions/search", {"filter": "name='model-001'"}),
    # Rendered once per state of the model (its update time) or of the alias (its ETag): one
    # query for that state.
    ("post", "registered-models/get-latest-versions", {"name": "model-001"}),
    ("get", "registered-models/alias", {"name": "model-001", "alias": "prod"}),
]


@pytest.mark.parametrize(("method", "route", "params"), READS)
def test_a_repeated_read_costs_one_query(http, pipeline_user, method, route, params):
    _seed(Actor(user=pipeline_user, source=Source.SHELL), 3)
    call = _get if method == "get" else _post
    first, body = call(http, route, params)
    again, same = call(http, route, params)
    assert same == body
    assert first > 1
    assert again == 1  # nothing changed: the kept answer is given


def test_latest_versions_cost_the_same_for_one_stage_and_four(http, pipeline_user):
    actor = Actor(user=pipeline_user, source=Source.SHELL)
    _seed(actor, 2, versions=1)
    model = services.model_create(name="staged", actor=actor)
    for stage in ("None", "Staging", "Production", "Archived"):
        version = services.version_create(model=model, source="s3://b/x", actor=actor)
        if stage != "None":
            services.version_transition(version=version, stage=stage, actor=actor)
    _post(http, "registered-models/get-latest-versions", {"name": "model-001"})  # warms the caches
    one_stage, body = _post(http, "registered-models/get-latest-versions", {"name": "model-000"})
    assert [v["current_stage"] for v in body["model_versions"]] == ["None"]
    four, body = _post(http, "registered-models/get-latest-versions", {"name": "staged"})
    assert [v["current_stage"] for v in body["model_versions"]] == [
        "None",
        "Staging",
        "Production",
        "Archived",
    ]
    assert four == one_stage


def test_a_model_created_a_moment_ago_is_readable_at_once(http, pipeline_user):
    actor = Actor(user=pipeline_user, source=Source.SHELL)
    _seed(actor, 1)
    # Reads that remember the caller's credentials and levels for a few seconds ...
    _post(http, "registered-models/get-latest-versions", {"name": "model-000"})
    _get(http, "registered-models/alias", {"name": "model-000", "alias": "prod"})
    # ... still see a grant made since: the creator's, on a model created through MLflow.
    created = http.post(
        API + "registered-models/create", {"name": "fresh"}, content_type="application/json"
    )
    assert created.status_code == 200
    http.post(
        API + "model-versions/create",
        {"name": "fresh", "source": "s3://b/f"},
        content_type="application/json",
    )
    _, body = _post(http, "registered-models/get-latest-versions", {"name": "fresh"})
    assert [v["version"] for v in body["model_versions"]] == ["1"]
    _, body = _get(http, "registered-models/search", {"filter": "name = 'fresh'"})
    assert [m["name"] for m in body["registered_models"]] == ["fresh"]
    response = http.get(API + "registered-models/alias", {"name": "fresh", "alias": "nope"})
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"  # seen; no such alias


def test_every_change_is_seen_by_the_next_read(http, pipeline_user):
    actor = Actor(user=pipeline_user, source=Source.SHELL)
    _seed(actor, 2)
    search = {"filter": "name LIKE 'model-%'"}
    _, body = _get(http, "registered-models/search", search)
    assert [m["name"] for m in body["registered_models"]] == ["model-000", "model-001"]

    services.model_create(name="model-002", actor=actor)
    _, body = _get(http, "registered-models/search", search)
    assert [m["name"] for m in body["registered_models"]] == [
        "model-000",
        "model-001",
        "model-002",
    ]

    alias = {"name": "model-001", "alias": "prod"}
    _, body = _get(http, "registered-models/alias", alias)
    assert body["model_version"]["version"] == "1"
    model = ModelVersion.objects.get(model__name="model-001", version=2).model
    services.alias_set(model=model, alias="prod", version=2, actor=actor)
    _, body = _get(http, "registered-models/alias", alias)
    assert body["model_version"]["version"] == "2"

    latest = {"name": "model-001"}
    _, body = _post(http, "registered-models/get-latest-versions", latest)
    assert [v["version"] for v in body["model_versions"]] == ["2"]
    created = http.post(
        API + "model-versions/create",
        {"name": "model-001", "source": "s3://b/new", "tags": [{"key": "t", "value": "1"}]},
        content_type="application/json",
    ).json()["model_version"]
    assert created["version"] == "3"
    assert created["tags"] == [{"key": "t", "value": "1"}]
    _, body = _post(http, "registered-models/get-latest-versions", latest)
    assert [v["version"] for v in body["model_versions"]] == ["3"]
    _, body = _get(http, "model-versions/search", {"filter": "name='model-001'"})
    assert [v["version"] for v in body["model_versions"]] == ["3", "2", "1"]


def test_a_kept_answer_is_only_given_to_its_caller(http, pipeline_user, django_user_model):
    actor = Actor(user=pipeline_user, source=Source.SHELL)
    _seed(actor, 2)
    other = django_user_model.objects.create_user(username="other", password=PASSWORD)
    model = ModelVersion.objects.get(model__name="model-000", version=1).model
    permissions_update(model=model, actor=actor, users={other.username: Level.CAN_READ}, groups={})
    token = base64.b64encode(f"other:{PASSWORD}".encode()).decode()
    other_http = Client(HTTP_AUTHORIZATION=f"Basic {token}")

    search = {"filter": "name LIKE 'model-%'"}
    _, body = _get(http, "registered-models/search", search)
    assert len(body["registered_models"]) == 2
    _, body = _get(other_http, "registered-models/search", search)
    assert [m["name"] for m in body["registered_models"]] == ["model-000"]

    alias = {"name": "model-001", "alias": "prod"}
    _get(http, "registered-models/alias", alias)
    response = other_http.get(API + "registered-models/alias", alias)
    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_version_creation_makes_a_fixed_number_of_queries(http, pipeline_user):
    actor = Actor(user=pipeline_user, source=Source.SHELL)
    services.model_create(name="m", actor=actor)
    body = {"name": "m", "source": "s3://b/1"}
    http.post(API + "model-versions/create", body, content_type="application/json")
    counts = []
    for n in range(2, 5):
        events = Event.objects.count()
        queries, created = _post(http, "model-versions/create", {**body, "source": f"s3://b/{n}"})
        assert created["model_version"]["version"] == str(n)
        assert Event.objects.count() == events + 1
        counts.append(queries)
    assert counts[0] == counts[1] == counts[2]
    # Credentials, the model and the caller's level, the model lock, its update, the version,
    # the chain head and the event append (one statement on PostgreSQL, three elsewhere).
    assert counts[0] <= (9 if connection.vendor == "postgresql" else 11)


def test_a_session_user_is_never_remembered_under_an_authorization_header(pipeline_user):
    signed_in = Client(HTTP_AUTHORIZATION="Custom not-a-credential")
    signed_in.force_login(pipeline_user)
    search = API + "registered-models/search"
    assert signed_in.get(search).status_code == 200
    stranger = Client(HTTP_AUTHORIZATION="Custom not-a-credential")
    response = stranger.get(search)
    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHENTICATED"


def test_concurrent_misses_of_a_kept_answer_compute_it_once(monkeypatch):
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from registry.mlflow import answers

    answers.clear()
    monkeypatch.setattr(answers, "_head", lambda: (7, "head-hash"))
    caller = SimpleNamespace(user_id=1, token=None)
    started, release = threading.Event(), threading.Event()
    calls = []

    def compute() -> tuple[str, bytes]:
        calls.append(1)
        started.set()
        assert release.wait(5)
        return "", b'{"registered_models":[]}'

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(answers.answer, caller, ("search",), compute)
        assert started.wait(5)
        waiting = [pool.submit(answers.answer, caller, ("search",), compute) for _ in range(3)]
        release.set()
        results = [first.result(5), *(future.result(5) for future in waiting)]
    assert results == [("", b'{"registered_models":[]}')] * 4
    assert calls == [1]
    # Another caller never gets it.
    other = SimpleNamespace(user_id=2, token=None)
    assert answers.answer(other, ("search",), lambda: ("", b"{}")) == ("", b"{}")
    answers.clear()
