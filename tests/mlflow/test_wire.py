"""Exact wire details of the MLflow routes, checked over raw HTTP (Django test client)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.actors import Actor, Source
from registry import services
from registry.mlflow.rendering import millis
from registry.models import Event, ModelVersion, RegisteredModel

pytestmark = pytest.mark.django_db

API = "/api/2.0/mlflow/"
PREFIXES = ["/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/", "/api/2.0/preview/mlflow/"]


def post(http: Client, route: str, body: Any, prefix: str = API, **extra: Any) -> Any:
    return http.post(prefix + route, json.dumps(body), content_type="application/json", **extra)


def patch(http: Client, route: str, body: Any) -> Any:
    return http.patch(API + route, json.dumps(body), content_type="application/json")


def delete(http: Client, route: str, body: Any) -> Any:
    return http.delete(API + route, json.dumps(body), content_type="application/json")


def error(response: Any) -> tuple[int, str]:
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error_code", "message"}
    return response.status_code, body["error_code"]


@pytest.fixture
def actor(pipeline_user) -> Actor:
    return Actor(user=pipeline_user, source=Source.SHELL)


# --- routes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_prefix_serves_the_routes(http, prefix):
    created = post(http, "registered-models/create", {"name": "m"}, prefix=prefix)
    assert created.status_code == 200
    got = http.get(prefix + "registered-models/get", {"name": "m"})
    assert got.status_code == 200
    assert got.json()["registered_model"]["name"] == "m"
    listed = http.get(prefix + "registered-models/list")
    assert [m["name"] for m in listed.json()["registered_models"]] == ["m"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/2.0/mlflow/registered-models/nope"),
        ("post", "/api/2.0/mlflow/experiments/create"),
        ("get", "/ajax-api/2.0/mlflow/"),
        ("get", "/api/2.0/preview/mlflow/model-versions/get/"),
        ("get", "/ajax-api/2.0/preview/mlflow/registered-models/get"),
        ("get", "/api/2.0/mlflow/registered-models/create"),
        ("post", "/api/2.0/mlflow/registered-models/get"),
        ("put", "/api/2.0/mlflow/registered-models/alias"),
        ("post", "/api/2.0/mlflow/model-versions/search"),
        ("delete", "/api/2.0/mlflow/model-versions/update"),
        ("patch", "/api/2.0/mlflow/registered-models/rename"),
    ],
)
def test_unknown_routes_and_wrong_methods_are_endpoint_not_found(http, method, path):
    response = getattr(http, method)(path)
    assert error(response) == (404, "ENDPOINT_NOT_FOUND")
    # Also without credentials: the route is checked before authentication.
    assert error(getattr(Client(), method)(path)) == (404, "ENDPOINT_NOT_FOUND")


# --- wire format ----------------------------------------------------------------------------


def test_registered_model_wire_format(http, actor):
    created = post(http, "registered-models/create", {"name": "m"}).json()
    model = RegisteredModel.objects.get(name="m")
    # Unset fields are omitted: no description, tags, aliases, latest_versions, user_id.
    assert created == {
        "registered_model": {
            "name": "m",
            "creation_timestamp": millis(model.created_at),
            "last_updated_timestamp": millis(model.updated_at),
        }
    }
    assert isinstance(created["registered_model"]["creation_timestamp"], int)

    services.model_tag_set(model=model, key="team", value="risk", actor=actor)
    version = services.version_create(model=model, source="s3://b/1", actor=actor)
    services.alias_set(model=model, alias="prod", version=1, actor=actor)
    services.model_update(model=model, description="text", actor=actor)
    model.refresh_from_db()
    version.refresh_from_db()
    got = http.get(API + "registered-models/get", {"name": "m"}).json()
    assert got == {
        "registered_model": {
            "name": "m",
            "creation_timestamp": millis(model.created_at),
            "last_updated_timestamp": millis(model.updated_at),
            "description": "text",
            "latest_versions": [
                {
                    "name": "m",
                    "version": "1",
                    "creation_timestamp": millis(version.created_at),
                    "last_updated_timestamp": millis(version.updated_at),
                    "user_id": "pipeline",
                    "current_stage": "None",
                    "source": "s3://b/1",
                    "status": "READY",
                }
            ],
            "tags": [{"key": "team", "value": "risk"}],
            "aliases": [{"alias": "prod", "version": "1"}],
        }
    }


def test_model_version_wire_format_with_mlflow3_fields(http):
    post(http, "registered-models/create", {"name": "m"})
    body = {
        "name": "m",
        "source": "s3://b/1",
        "run_id": "abc",
        "run_link": "https://ci/1",
        "description": "d",
        "tags": [{"key": "b", "value": "2"}, {"key": "a", "value": ""}],
        "model_id": "m-0123456789abcdef",
        "model_params": [{"name": "alpha", "value": "0.5"}],
        "model_metrics": [{"key": "auc", "value": 0.91, "step": 3, "timestamp": 1700000000000}],
        "unknown_field": "ignored",
    }
    created = post(http, "model-versions/create", body)
    assert created.status_code == 200
    version = ModelVersion.objects.get()
    expected = {
        "name": "m",
        "version": "1",
        "creation_timestamp": millis(version.created_at),
        "last_updated_timestamp": millis(version.updated_at),
        "user_id": "pipeline",
        "current_stage": "None",
        "description": "d",
        "source": "s3://b/1",
        "run_id": "abc",
        "status": "READY",
        "tags": [{"key": "a", "value": ""}, {"key": "b", "value": "2"}],
        "run_link": "https://ci/1",
        "model_id": "m-0123456789abcdef",
        "model_params": [{"name": "alpha", "value": "0.5"}],
        "model_metrics": [{"key": "auc", "value": 0.91, "timestamp": 1700000000000, "step": 3}],
    }
    assert created.json() == {"model_version": expected}

    ModelVersion.objects.filter(pk=version.pk).update(
        deployment_job_state={"job_id": "j1", "run_state": "RUNNING", "junk": "x"}
    )
    got = http.get(API + "model-versions/get", {"name": "m", "version": "1"}).json()
    assert got["model_version"]["deployment_job_state"] == {"job_id": "j1", "run_state": "RUNNING"}


def test_deployment_job_fields_on_models(http):
    created = post(
        http, "registered-models/create", {"name": "m", "deployment_job_id": "job-1"}
    ).json()
    assert created["registered_model"]["deployment_job_id"] == "job-1"
    updated = patch(
        http,
        "registered-models/update",
        {"name": "m", "deployment_job_id": "job-2", "deployment_job_state": "CONNECTED"},
    ).json()["registered_model"]
    assert (updated["deployment_job_id"], updated["deployment_job_state"]) == ("job-2", "CONNECTED")
    bad = patch(http, "registered-models/update", {"name": "m", "deployment_job_state": "nope"})
    assert error(bad) == (400, "INVALID_PARAMETER_VALUE")


def test_update_without_description_clears_it_as_mlflow_does(http):
    post(http, "registered-models/create", {"name": "m", "description": "old"})
    post(http, "model-versions/create", {"name": "m", "source": "s3://b/1", "description": "x"})
    model = patch(http, "registered-models/update", {"name": "m"}).json()["registered_model"]
    assert "description" not in model
    version = patch(http, "model-versions/update", {"name": "m", "version": "1"}).json()
    assert "description" not in version["model_version"]


# --- errors ---------------------------------------------------------------------------------


def test_missing_required_fields(http):
    post(http, "registered-models/create", {"name": "m"})
    cases = [
        ("registered-models/create", {}, "name"),
        ("registered-models/create", {"name": ""}, "name"),
        ("registered-models/rename", {"name": "m"}, "new_name"),
        ("model-versions/create", {"name": "m"}, "source"),
        ("model-versions/create", {"name": "m", "source": ""}, "source"),
        ("model-versions/transition-stage", {"name": "m", "version": "1"}, "version"),
        ("registered-models/alias", {"name": "m", "version": "1"}, "alias"),
        ("registered-models/set-tag", {"name": "m"}, "key"),
    ]
    post(http, "model-versions/create", {"name": "m", "source": "s3://b/1"})
    cases[5] = ("model-versions/transition-stage", {"name": "m", "version": "1"}, "stage")
    for route, body, field in cases:
        response = post(http, route, body)
        assert error(response) == (400, "INVALID_PARAMETER_VALUE"), route
        assert response.json()["message"] == f"Missing value for required parameter '{field}'."
    response = http.get(API + "model-versions/get", {"name": "m"})
    assert response.json()["message"] == "Missing value for required parameter 'version'."


def test_error_codes_and_statuses(http):
    post(http, "registered-models/create", {"name": "m"})
    post(http, "model-versions/create", {"name": "m", "source": "s3://b/1"})
    assert error(post(http, "registered-models/create", {"name": "m"})) == (
        400,
        "RESOURCE_ALREADY_EXISTS",
    )
    assert error(http.get(API + "registered-models/get", {"name": "x"})) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert error(http.get(API + "model-versions/get", {"name": "m", "version": "2"})) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert error(http.get(API + "model-versions/get", {"name": "m", "version": "one"})) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert error(http.get(API + "registered-models/alias", {"name": "m", "alias": "a"})) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert error(post(http, "registered-models/create", {"name": 5})) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert error(post(http, "registered-models/create", {"name": "n", "tags": "x"})) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert error(post(http, "model-versions/create", {"name": "m", "source": "a\x00b"})) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )
    transition = {"name": "m", "version": "1", "stage": "Staging"}
    for value in ("maybe", 3):
        body = {**transition, "archive_existing_versions": value}
        assert error(post(http, "model-versions/transition-stage", body)) == (
            400,
            "INVALID_PARAMETER_VALUE",
        )
    assert RegisteredModel.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        ('"just a string"', "application/json"),
        ('{"name": "m"}', "application/x-www-form-urlencoded"),
        ('{"name": "m"}', "text/plain"),
    ],
)
def test_malformed_bodies_are_invalid_parameter_value(http, body, content_type):
    response = http.post(API + "registered-models/create", body, content_type=content_type)
    assert error(response) == (400, "INVALID_PARAMETER_VALUE")
    assert not RegisteredModel.objects.exists()


def test_double_encoded_json_from_old_clients_is_accepted(http):
    body = json.dumps(json.dumps({"name": "m"}))
    response = http.post(API + "registered-models/create", body, content_type="application/json")
    assert response.status_code == 200


def test_unauthenticated_is_401_with_www_authenticate(pipeline_user):
    anonymous = Client().get(API + "registered-models/search")
    assert error(anonymous) == (401, "UNAUTHENTICATED")
    assert anonymous["WWW-Authenticate"].startswith("Basic")
    wrong = base64.b64encode(b"pipeline:wrong").decode()
    response = Client(HTTP_AUTHORIZATION=f"Basic {wrong}").post(
        API + "registered-models/create", "{}", content_type="application/json"
    )
    assert error(response) == (401, "UNAUTHENTICATED")
    assert response["WWW-Authenticate"].startswith("Basic")


def test_session_authentication_with_csrf(pipeline_user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(pipeline_user)
    assert browser.get(API + "registered-models/search").status_code == 200
    refused = browser.post(
        API + "registered-models/create", json.dumps({"name": "m"}), content_type="application/json"
    )
    assert error(refused) == (403, "PERMISSION_DENIED")
    assert not RegisteredModel.objects.exists()


# --- DELETE and GET argument conventions ------------------------------------------------------


def test_delete_arguments_in_the_query_string(http, actor):
    post(http, "registered-models/create", {"name": "m"})
    post(http, "model-versions/create", {"name": "m", "source": "s3://b/1"})
    post(http, "model-versions/create", {"name": "m", "source": "s3://b/2"})
    post(http, "registered-models/set-tag", {"name": "m", "key": "k", "value": "v"})
    post(http, "model-versions/set-tag", {"name": "m", "version": "1", "key": "k", "value": "v"})
    post(http, "registered-models/alias", {"name": "m", "alias": "prod", "version": "1"})

    # The Databricks SDK style: no body, arguments in the query string.
    assert http.delete(API + "registered-models/delete-tag?name=m&key=k").json() == {}
    assert http.delete(API + "model-versions/delete-tag?name=m&version=1&key=k").json() == {}
    assert http.delete(API + "registered-models/alias?name=m&alias=prod").json() == {}
    assert http.delete(API + "model-versions/delete?name=m&version=2").json() == {}
    model = RegisteredModel.objects.get(name="m")
    assert not model.tags.exists()
    assert not model.aliases.exists()
    assert list(model.versions.live().values_list("version", flat=True)) == [1]
    assert not ModelVersion.objects.get(version=1).tags.exists()
    assert http.delete(API + "registered-models/delete?name=m").json() == {}
    assert not RegisteredModel.objects.exists()
    missing = http.delete(API + "registered-models/delete")
    assert error(missing) == (400, "INVALID_PARAMETER_VALUE")


def test_deleting_missing_tags_and_aliases_succeeds(http):
    post(http, "registered-models/create", {"name": "m"})
    post(http, "model-versions/create", {"name": "m", "source": "s3://b/1"})
    before = Event.objects.count()
    assert delete(http, "registered-models/delete-tag", {"name": "m", "key": "x"}).json() == {}
    body = {"name": "m", "version": "1", "key": "x"}
    assert delete(http, "model-versions/delete-tag", body).json() == {}
    assert delete(http, "registered-models/alias", {"name": "m", "alias": "x"}).json() == {}
    assert Event.objects.count() == before
    gone = delete(http, "registered-models/alias", {"name": "nope", "alias": "x"})
    assert error(gone) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_get_latest_versions_by_post_and_get(http):
    post(http, "registered-models/create", {"name": "m"})
    for n in (1, 2, 3):
        post(http, "model-versions/create", {"name": "m", "source": f"s3://b/{n}"})
    stage = {"name": "m", "version": "1", "stage": "PRODUCTION"}
    moved = post(http, "model-versions/transition-stage", stage).json()
    assert moved["model_version"]["current_stage"] == "Production"  # canonicalised
    post(http, "model-versions/transition-stage", {**stage, "version": "2", "stage": "staging"})

    def versions(response: Any) -> list[tuple[str, str]]:
        assert response.status_code == 200
        return [(v["current_stage"], v["version"]) for v in response.json()["model_versions"]]

    everything = [("None", "3"), ("Staging", "2"), ("Production", "1")]
    assert versions(post(http, "registered-models/get-latest-versions", {"name": "m"})) == (
        everything
    )
    assert versions(http.get(API + "registered-models/get-latest-versions", {"name": "m"})) == (
        everything
    )
    query = {"name": "m", "stages": ["Production", "staging"]}
    assert versions(http.get(API + "registered-models/get-latest-versions", query)) == [
        ("Staging", "2"),
        ("Production", "1"),
    ]
    single = {"name": "m", "stages": "Production"}  # a single value for a repeated field
    assert versions(post(http, "registered-models/get-latest-versions", single)) == [
        ("Production", "1")
    ]
    archived = {"name": "m", "stages": ["Archived"]}
    assert post(http, "registered-models/get-latest-versions", archived).json() == {}
    # Deleted versions are never anybody's latest.
    delete(http, "model-versions/delete", {"name": "m", "version": "3"})
    assert versions(post(http, "registered-models/get-latest-versions", {"name": "m"})) == [
        ("Staging", "2"),
        ("Production", "1"),
    ]
    latest = http.get(API + "registered-models/get", {"name": "m"}).json()["registered_model"]
    assert [v["version"] for v in latest["latest_versions"]] == ["2", "1"]
    bad = {"name": "m", "stages": ["Gold"]}
    assert error(post(http, "registered-models/get-latest-versions", bad)) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )


def test_archive_existing_versions_as_string(http):
    post(http, "registered-models/create", {"name": "m"})
    for n in (1, 2):
        post(http, "model-versions/create", {"name": "m", "source": f"s3://b/{n}"})
        body = {"name": "m", "version": str(n), "stage": "Staging"}
        post(http, "model-versions/transition-stage", {**body, "archive_existing_versions": "true"})
    assert dict(ModelVersion.objects.values_list("version", "stage")) == {
        1: "Archived",
        2: "Staging",
    }


# --- search paging and query counts -----------------------------------------------------------


def test_max_results_limits(http):
    for name in ("a", "b"):
        post(http, "registered-models/create", {"name": name})
    search = API + "registered-models/search"
    assert http.get(search, {"max_results": "0"}).json() == {}
    assert len(http.get(search, {"max_results": "1000"}).json()["registered_models"]) == 2
    for bad in ("1001", "-1", "many", "1.5"):
        assert error(http.get(search, {"max_results": bad})) == (400, "INVALID_PARAMETER_VALUE")
    versions = API + "model-versions/search"
    assert http.get(versions, {"max_results": "200000"}).status_code == 200
    for bad in ("0", "200001", "x"):
        assert error(http.get(versions, {"max_results": bad})) == (400, "INVALID_PARAMETER_VALUE")


def test_page_tokens_are_opaque_and_checked(http):
    for name in ("a", "b", "c"):
        post(http, "registered-models/create", {"name": name})
    search = API + "registered-models/search"
    first = http.get(search, {"max_results": "2"}).json()
    token = first["next_page_token"]
    assert isinstance(token, str)
    second = http.get(search, {"max_results": "2", "page_token": token}).json()
    assert [m["name"] for m in second["registered_models"]] == ["c"]
    assert "next_page_token" not in second

    # A token only makes sense with the order it was made for.
    other_order = {"max_results": "2", "page_token": token, "order_by": "name DESC"}
    assert error(http.get(search, other_order)) == (400, "INVALID_PARAMETER_VALUE")
    garbage = [
        "!!!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b'{"offset": 2}').decode(),
        base64.b64encode(b"[1, 2]").decode(),
        token[:-4],
    ]
    for bad in garbage:
        response = http.get(search, {"page_token": bad})
        assert error(response) == (400, "INVALID_PARAMETER_VALUE"), bad


def test_exactly_full_last_page_has_no_token(http):
    for name in ("a", "b"):
        post(http, "registered-models/create", {"name": name})
    body = http.get(API + "registered-models/search", {"max_results": "2"}).json()
    assert len(body["registered_models"]) == 2
    assert "next_page_token" not in body


def test_repeated_order_by_keys_in_the_query_string(http):
    for name in ("a", "b"):
        post(http, "registered-models/create", {"name": name})
        for n in (1, 2):
            post(http, "model-versions/create", {"name": name, "source": f"s3://{name}/{n}"})
    query = {"order_by": ["version_number DESC", "name DESC"]}
    found = http.get(API + "model-versions/search", query).json()["model_versions"]
    assert [(v["name"], v["version"]) for v in found] == [
        ("b", "2"),
        ("a", "2"),
        ("b", "1"),
        ("a", "1"),
    ]


def _seed(actor: Actor, models: int) -> None:
    for n in range(models):
        model = services.model_create(
            name=f"model-{n:03d}", tags={"team": "t", "n": str(n)}, actor=actor
        )
        for m in (1, 2):
            services.version_create(
                model=model, source=f"s3://b/{n}/{m}", tags={"k": "v"}, actor=actor
            )
        services.version_transition(
            version=model.versions.get(version=1), stage="Production", actor=actor
        )
        services.alias_set(model=model, alias="prod", version=1, actor=actor)


def _count_queries(http: Client, url: str, params: dict[str, str]) -> tuple[int, Any]:
    with CaptureQueriesContext(connection) as queries:
        response = http.get(url, params)
    assert response.status_code == 200
    return len(queries), response.json()


def test_search_query_count_does_not_grow_with_the_page(http, actor):
    _seed(actor, 24)
    http.get(API + "registered-models/search")  # warms the Basic-credential cache
    search = API + "registered-models/search"
    filter_string = "tags.team = 't' AND tag.`mlflow.prompt.is_prompt` != 'true'"
    small, body = _count_queries(http, search, {"filter": filter_string, "max_results": "2"})
    assert len(body["registered_models"]) == 2
    large, body = _count_queries(http, search, {"filter": filter_string, "max_results": "24"})
    assert len(body["registered_models"]) == 24
    assert all(len(m["latest_versions"]) == 2 for m in body["registered_models"])
    assert small == large

    versions = API + "model-versions/search"
    small, body = _count_queries(http, versions, {"filter": "tags.k = 'v'", "max_results": "2"})
    large, body = _count_queries(http, versions, {"filter": "tags.k = 'v'", "max_results": "48"})
    assert len(body["model_versions"]) == 48
    assert small == large


def test_prompt_clause_treats_a_missing_tag_as_not_a_prompt(http, actor):
    services.model_create(name="plain", actor=actor)
    services.model_create(name="other-tags", tags={"team": "x"}, actor=actor)
    services.model_create(name="prompt", tags={"mlflow.prompt.is_prompt": "true"}, actor=actor)
    services.model_create(name="not-prompt", tags={"mlflow.prompt.is_prompt": "false"}, actor=actor)

    def search(filter_string: str) -> list[str]:
        response = http.get(API + "registered-models/search", {"filter": filter_string})
        assert response.status_code == 200, response.json()
        return [m["name"] for m in response.json().get("registered_models", [])]

    assert search("tag.`mlflow.prompt.is_prompt` != 'true'") == [
        "not-prompt",
        "other-tags",
        "plain",
    ]
    assert search("tags.`mlflow.prompt.is_prompt` = 'false'") == [
        "not-prompt",
        "other-tags",
        "plain",
    ]
    assert search("tags.`mlflow.prompt.is_prompt` = 'true'") == ["prompt"]
    assert search("tags.'mlflow.prompt.is_prompt' != 'false'") == ["prompt"]
    # Other tags: a missing tag makes every comparison false.
    assert search("tags.team != 'y'") == ["other-tags"]
    assert search("tags.team LIKE '%'") == ["other-tags"]


# --- alias GET: ETag ------------------------------------------------------------------------


def test_alias_get_carries_the_native_etag_and_honours_if_none_match(http, actor):
    model = services.model_create(name="m", actor=actor)
    for n in (1, 2):
        services.version_create(model=model, source=f"s3://b/{n}", actor=actor)
    services.alias_set(model=model, alias="prod", version=1, actor=actor)
    query = {"name": "m", "alias": "prod"}

    first = http.get(API + "registered-models/alias", query)
    assert first.status_code == 200
    assert first.json()["model_version"]["version"] == "1"
    assert first.json()["model_version"]["aliases"] == ["prod"]
    etag = first["ETag"]
    native = http.get("/api/v1/models/m/aliases/prod/")
    assert native.status_code == 200
    assert native["ETag"] == etag

    cached = http.get(API + "registered-models/alias", query, HTTP_IF_NONE_MATCH=etag)
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached["ETag"] == etag

    services.alias_set(model=model, alias="prod", version=2, actor=actor)
    moved = http.get(API + "registered-models/alias", query, HTTP_IF_NONE_MATCH=etag)
    assert moved.status_code == 200
    assert moved.json()["model_version"]["version"] == "2"
    assert moved["ETag"] != etag


# --- one model underneath -------------------------------------------------------------------


def test_mlflow_writes_are_native_reads_and_back(http, pipeline_user):
    post(http, "registered-models/create", {"name": "m", "tags": [{"key": "a", "value": "b"}]})
    post(http, "model-versions/create", {"name": "m", "source": "s3://b/1"})
    native = http.get("/api/v1/models/m/")
    assert native.status_code == 200
    assert native.json()["tags"] == {"a": "b"}
    assert native.json()["last_version"] == 1

    response = http.post(
        "/api/v1/models/m/versions/", {"source": "s3://b/2"}, content_type="application/json"
    )
    assert response.status_code == 201
    got = http.get(API + "model-versions/get", {"name": "m", "version": "2"}).json()
    assert got["model_version"]["source"] == "s3://b/2"

    created = Event.objects.filter(type="model_version.created").order_by("seq")
    assert [(e.source, e.actor_id) for e in created] == [
        (Source.MLFLOW, pipeline_user.pk),
        (Source.API, pipeline_user.pk),
    ]
    request_id = created[0].request_id
    assert request_id
    # The request id of the MLflow call is the one echoed in its response.
    response = post(
        http,
        "registered-models/set-tag",
        {"name": "m", "key": "x", "value": "y"},
        HTTP_X_REQUEST_ID="trace-123",
    )
    assert response["X-Request-ID"] == "trace-123"
    assert Event.objects.latest("seq").request_id == "trace-123"


def test_repeated_failed_authentication_is_throttled_not_an_error(pipeline_user, settings):
    settings.MODELGATE_AUTH_FAILURES_PER_MINUTE = 2
    wrong = base64.b64encode(b"pipeline:wrong").decode()
    stranger = Client(HTTP_AUTHORIZATION=f"Basic {wrong}")
    for _ in range(2):
        assert error(stranger.get(API + "registered-models/search")) == (401, "UNAUTHENTICATED")
    throttled = stranger.get(API + "registered-models/search")
    assert error(throttled) == (429, "REQUEST_LIMIT_EXCEEDED")
    assert int(throttled["Retry-After"]) > 0


def test_awkward_inputs_are_answered_without_a_server_error(http):
    post(http, "registered-models/create", {"name": "m"})
    post(http, "model-versions/create", {"name": "m", "source": "s3://b/1"})
    models = API + "registered-models/search"
    versions = API + "model-versions/search"
    # A backslash escapes the quote after it, as in MLflow's parser: the string never ends.
    assert error(http.get(models, {"filter": "name LIKE 'm\\'"})) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )
    for query in (
        {"filter": "name LIKE 'm\\\\'"},
        {"filter": "name ILIKE '%\\\\'"},
        {"filter": "name LIKE '100\\%'"},
    ):
        assert http.get(models, query).status_code == 200, query
    found = http.get(versions, {"filter": "version_number < 99999999999999999999999"})
    assert [v["version"] for v in found.json()["model_versions"]] == ["1"]
    assert http.get(versions, {"filter": "version_number > -99999999999999999999"}).json()

    nul = [
        http.get(API + "registered-models/get", {"name": "m\x00"}),
        http.get(models, {"filter": "name = 'a\x00'"}),
        post(http, "registered-models/set-tag", {"name": "m", "key": "k", "value": "a\x00"}),
        post(
            http,
            "model-versions/create",
            {"name": "m", "source": "s3://b", "tags": [{"key": "k", "value": "\x00"}]},
        ),
    ]
    for response in nul:
        assert error(response) == (400, "INVALID_PARAMETER_VALUE")

    def token(body: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()

    signature = "updated_at:d,model__name:a,version:d,pk:a"
    for values in (
        ["2024-13-45T00:00:00+00:00", "m", 1, 1],
        ["2024-01-01T00:00:00", "m", 1, 1],
        ["2024-01-01T00:00:00+00:00", "m\x00", 1, 1],
        ["2024-01-01T00:00:00+00:00", "m", 2**70, 1],
        ["2024-01-01T00:00:00+00:00", 5, 1, 1],
        ["2024-01-01T00:00:00+00:00", "m", 1],
    ):
        bad = token({"o": signature, "k": values})
        assert error(http.get(versions, {"page_token": bad})) == (400, "INVALID_PARAMETER_VALUE")
    good = token({"o": signature, "k": ["2000-01-01T00:00:00+00:00", "m", 1, 1]})
    assert http.get(versions, {"page_token": good}).json() == {}


def test_oversized_and_deeply_nested_bodies_are_client_errors(http, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = {"name": "m", "description": "x" * 2000}
    assert error(post(http, "registered-models/create", big)) == (400, "INVALID_PARAMETER_VALUE")
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000_000
    deep = "[" * 100_000 + "]" * 100_000
    response = http.post(API + "registered-models/create", deep, content_type="application/json")
    assert error(response) == (400, "INVALID_PARAMETER_VALUE")
    assert not RegisteredModel.objects.exists()


def test_values_longer_than_their_columns_are_invalid(http):
    post(http, "registered-models/create", {"name": "m"})
    cases = [
        ("registered-models/create", {"name": "n", "deployment_job_id": "j" * 256}),
        ("registered-models/create", {"name": "n" * 257}),
        ("model-versions/create", {"name": "m", "source": "s3://b", "model_id": "m" * 65}),
        ("model-versions/create", {"name": "m", "source": "s3://b", "run_id": "r" * 65}),
        ("registered-models/alias", {"name": "m", "alias": "a" * 256, "version": "1"}),
        ("registered-models/set-tag", {"name": "m", "key": "k", "value": "v" * 5001}),
    ]
    for route, body in cases:
        assert error(post(http, route, body)) == (400, "INVALID_PARAMETER_VALUE"), route
    assert RegisteredModel.objects.count() == 1
    assert not ModelVersion.objects.exists()
