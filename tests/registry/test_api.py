"""The native API under /api/v1/, end to end through the DRF test client."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from django.core.cache import cache
from rest_framework.fields import DateTimeField

from accounts.actors import Actor
from registry import services
from registry.choices import Stage
from registry.models import (
    Event,
    EventOutbox,
    ModelAlias,
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelTag,
)
from tests.conftest import history_writable
from tests.factories import make_model, make_version

pytestmark = pytest.mark.django_db


def url(*parts: object, query: str = "") -> str:
    path = "/api/v1/" + "".join(f"{quote(str(part), safe='')}/" for part in parts)
    return f"{path}?{query}" if query else path


def iso(value: datetime) -> str:
    return DateTimeField().to_representation(value)


def counts() -> dict[str, int]:
    """Row counts of everything a write may touch: unchanged after a refused request."""
    return {
        "models": RegisteredModel.objects.count(),
        "model_tags": RegisteredModelTag.objects.count(),
        "versions": ModelVersion.objects.count(),
        "live_versions": ModelVersion.objects.live().count(),
        "version_tags": ModelVersionTag.objects.count(),
        "aliases": ModelAlias.objects.count(),
        "events": Event.objects.count(),
        "outbox": EventOutbox.objects.count(),
    }


def event_types(since: int = 0) -> list[str]:
    return list(Event.objects.filter(seq__gt=since).order_by("seq").values_list("type", flat=True))


def last_seq() -> int:
    return Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


@pytest.fixture
def model(actor):
    """A model `m` with versions 1 and 2, a tag, and the alias `prod` on version 1."""
    created = make_model(actor, "m", description="desc", tags={"team": "risk"})
    make_version(actor, created, source="s3://m/1", run_id="run-1")
    make_version(actor, created, source="s3://m/2")
    services.alias_set(model=created, alias="prod", version=1, actor=actor)
    return RegisteredModel.objects.get(pk=created.pk)


def model_body(model: RegisteredModel) -> dict:
    model.refresh_from_db()
    return {
        "id": model.pk,
        "name": model.name,
        "description": model.description,
        "tags": dict(model.tags.order_by("key").values_list("key", "value")),
        "aliases": [
            {"alias": alias, "version": number}
            for alias, number in model.aliases.order_by("alias").values_list(
                "alias", "version__version"
            )
        ],
        "last_version": model.last_version,
        "created_by": model.created_by.username if model.created_by else None,
        "created_at": iso(model.created_at),
        "updated_at": iso(model.updated_at),
    }


def version_body(version: ModelVersion) -> dict:
    version.refresh_from_db()
    return {
        "model": version.model.name,
        "version": version.version,
        "stage": version.stage,
        "status": "READY",
        "source": version.source,
        "run_id": version.run_id,
        "run_link": version.run_link,
        "description": version.description,
        "tags": dict(version.tags.order_by("key").values_list("key", "value")),
        "aliases": sorted(version.aliases.values_list("alias", flat=True)),
        "created_by": version.created_by.username if version.created_by else None,
        "created_at": iso(version.created_at),
        "updated_at": iso(version.updated_at),
    }


# --- authentication, health, schema ---------------------------------------------------------

ROUTES = [
    ("get", url("models")),
    ("post", url("models")),
    ("get", url("models", "m")),
    ("patch", url("models", "m")),
    ("delete", url("models", "m")),
    ("post", url("models", "m", "rename")),
    ("put", url("models", "m", "tags", "team")),
    ("delete", url("models", "m", "tags", "team")),
    ("get", url("models", "m", "versions")),
    ("post", url("models", "m", "versions")),
    ("get", url("models", "m", "versions", 1)),
    ("patch", url("models", "m", "versions", 1)),
    ("delete", url("models", "m", "versions", 1)),
    ("post", url("models", "m", "versions", 1, "stage")),
    ("put", url("models", "m", "versions", 1, "tags", "k")),
    ("delete", url("models", "m", "versions", 1, "tags", "k")),
    ("get", url("models", "m", "aliases")),
    ("get", url("models", "m", "aliases", "prod")),
    ("put", url("models", "m", "aliases", "prod")),
    ("delete", url("models", "m", "aliases", "prod")),
    ("get", url("events")),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_anonymous_requests_get_401_and_change_nothing(anon, model, method, path):
    before = counts()

    response = getattr(anon, method)(path, {"name": "x", "version": 2, "value": "v"}, "json")

    assert response.status_code == 401
    assert response.json() == {
        "code": "unauthenticated",
        "message": "Authentication credentials were not provided.",
    }
    assert "Basic realm=" in response["WWW-Authenticate"]
    assert counts() == before


def test_basic_auth_with_the_password_is_accepted(anon, user):
    anon.credentials(
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"alice:alice-password-1").decode()
    )

    response = anon.get(url("models"))

    assert response.status_code == 200
    assert response.json()["count"] == 0


@pytest.fixture
def fresh_cache():
    """Failed logins are counted per address in the cache; start and leave it empty."""
    cache.clear()
    yield
    cache.clear()


def test_basic_auth_with_a_wrong_password_gets_401(anon, user, fresh_cache):
    anon.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"alice:wrong").decode())

    response = anon.get(url("models"))

    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_session_login_is_accepted(anon, user):
    anon.login(username="alice", password="alice-password-1")

    response = anon.get(url("models"))

    assert response.status_code == 200


def test_healthz_answers_without_auth(anon):
    response = anon.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_without_auth(anon, settings):
    response = anon.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "broker_transport": "redis" if settings.REDIS_URL else "filesystem",
    }


def test_openapi_schema_documents_every_native_route(anon):
    response = anon.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Modelgate API"
    expected = {
        "/api/v1/models/": {"get", "post"},
        "/api/v1/models/{name}/": {"get", "patch", "delete"},
        "/api/v1/models/{name}/rename/": {"post"},
        "/api/v1/models/{name}/tags/{key}/": {"put", "delete"},
        "/api/v1/models/{name}/versions/": {"get", "post"},
        "/api/v1/models/{name}/versions/{version}/": {"get", "patch", "delete"},
        "/api/v1/models/{name}/versions/{version}/stage/": {"post"},
        "/api/v1/models/{name}/versions/{version}/tags/{key}/": {"put", "delete"},
        "/api/v1/models/{name}/aliases/": {"get"},
        "/api/v1/models/{name}/aliases/{alias}/": {"get", "put", "delete"},
        "/api/v1/events/": {"get"},
    }
    for path, methods in expected.items():
        assert path in schema["paths"], path
        assert set(schema["paths"][path]) - {"parameters"} == methods, path


def test_openapi_schema_is_yaml_by_default(anon):
    response = anon.get("/api/schema/")

    assert response.status_code == 200
    assert response.content.startswith(b"openapi: 3.")


def test_api_docs_page_loads_with_local_assets(anon):
    response = anon.get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger-ui" in response.content
    assert b"/static/drf_spectacular_sidecar/swagger-ui-dist/" in response.content
    assert b"cdn.jsdelivr.net" not in response.content


# --- models -----------------------------------------------------------------------------------


def test_create_model_answers_201_with_the_model(api, user):
    response = api.post(
        url("models"),
        {"name": "fraud", "description": "Scores payments.", "tags": {"team": "risk"}},
        format="json",
        HTTP_X_REQUEST_ID="req-create-1",
    )

    assert response.status_code == 201
    model = RegisteredModel.objects.get()
    assert response.json() == model_body(model)
    assert response.json()["name"] == "fraud"
    assert response.json()["tags"] == {"team": "risk"}
    assert response.json()["created_by"] == "alice"
    assert response.json()["last_version"] == 0
    assert response["X-Request-ID"] == "req-create-1"
    event = Event.objects.get()
    assert event.type == "registered_model.created"
    assert (event.actor_id, event.actor_name, event.source) == (user.pk, "alice", "api")
    assert event.request_id == "req-create-1"
    assert event.client_ip == "127.0.0.1"


def test_create_model_with_only_a_name(api):
    response = api.post(url("models"), {"name": "m"}, format="json")

    assert response.status_code == 201
    assert response.json()["description"] == ""
    assert response.json()["tags"] == {}
    assert response.json()["aliases"] == []


def test_create_model_with_a_duplicate_name_is_409(api, model):
    before = counts()

    response = api.post(url("models"), {"name": "m"}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "code": "already_exists",
        "message": "Registered Model (name=m) already exists.",
    }
    assert counts() == before


def test_malformed_json_is_400(api):
    response = api.post(url("models"), data='{"name": "m",', content_type="application/json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "malformed_request"
    assert body["message"].startswith("JSON parse error")
    assert counts()["models"] == counts()["events"] == 0


def test_a_json_body_that_is_not_an_object_is_400(api):
    response = api.post(url("models"), data="[1, 2]", content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid",
        "message": "Expected a JSON object.",
        "fields": {"non_field_errors": ["Expected a JSON object."]},
    }
    assert counts()["events"] == 0


def test_a_form_encoded_body_is_415(api):
    response = api.post(url("models"), {"name": "m"})

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert counts()["models"] == 0


def test_an_unknown_field_is_400(api):
    response = api.post(url("models"), {"name": "m", "colour": "red"}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid",
        "message": "colour: Unknown field.",
        "fields": {"colour": ["Unknown field."]},
    }
    assert counts()["models"] == counts()["events"] == 0


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": ["m"]}, {"name": ["Not a valid string."]}),
        ({"name": True}, {"name": ["Not a valid string."]}),
        ({"name": "m", "description": {"a": 1}}, {"description": ["Not a valid string."]}),
        (
            {"name": "m", "tags": ["a"]},
            {"tags": ['Expected a dictionary of items but got type "list".']},
        ),
        ({"name": "m", "tags": {"k": ["v"]}}, {"tags": {"k": ["Not a valid string."]}}),
        ({}, {"name": ["This field is required."]}),
        ({"name": None}, {"name": ["This field may not be null."]}),
    ],
)
def test_a_field_of_the_wrong_type_is_400(api, body, fields):
    response = api.post(url("models"), body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["fields"] == fields
    assert counts()["models"] == counts()["events"] == 0


@pytest.mark.parametrize(
    "name",
    ["", "   ", "a/b", "a:b", "n" * 257, "n" * 300],
    ids=["empty", "blank", "/", ":", "257", "300"],
)
def test_an_invalid_model_name_is_400(api, name):
    response = api.post(url("models"), {"name": name}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert list(response.json()["fields"]) == ["name"]
    assert counts()["models"] == counts()["events"] == 0


def test_an_invalid_tag_on_create_is_400(api):
    response = api.post(url("models"), {"name": "m", "tags": {"k" * 251: "v"}}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["key"]
    assert counts()["models"] == counts()["events"] == 0


def test_get_model(api, model):
    response = api.get(url("models", "m"))

    assert response.status_code == 200
    assert response.json() == model_body(model)
    assert response.json()["aliases"] == [{"alias": "prod", "version": 1}]
    assert response.json()["last_version"] == 2


def test_unknown_model_is_404_on_every_model_route(api, model):
    before = counts()
    calls = [
        api.get(url("models", "nope")),
        api.patch(url("models", "nope"), {"description": "x"}, format="json"),
        api.delete(url("models", "nope")),
        api.post(url("models", "nope", "rename"), {"new_name": "x"}, format="json"),
        api.put(url("models", "nope", "tags", "k"), {"value": "v"}, format="json"),
        api.delete(url("models", "nope", "tags", "k")),
        api.get(url("models", "nope", "versions")),
        api.post(url("models", "nope", "versions"), {"source": "s3://x"}, format="json"),
        api.get(url("models", "nope", "versions", 1)),
        api.patch(url("models", "nope", "versions", 1), {"description": "x"}, format="json"),
        api.delete(url("models", "nope", "versions", 1)),
        api.post(url("models", "nope", "versions", 1, "stage"), {"stage": "Staging"}, "json"),
        api.put(url("models", "nope", "versions", 1, "tags", "k"), {"value": "v"}, "json"),
        api.delete(url("models", "nope", "versions", 1, "tags", "k")),
        api.get(url("models", "nope", "aliases")),
        api.get(url("models", "nope", "aliases", "prod")),
        api.put(url("models", "nope", "aliases", "prod"), {"version": 1}, format="json"),
        api.delete(url("models", "nope", "aliases", "prod")),
    ]

    for response in calls:
        assert response.status_code == 404, response.request["PATH_INFO"]
        assert response.json() == {
            "code": "not_found",
            "message": "Registered Model with name=nope not found",
        }
    assert counts() == before


def test_patch_model_changes_the_description(api, model):
    since = last_seq()

    response = api.patch(url("models", "m"), {"description": "new"}, format="json")

    assert response.status_code == 200
    assert response.json() == model_body(model)
    assert response.json()["description"] == "new"
    assert event_types(since) == ["registered_model.updated"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"description": ["This field is required."]}),
        ({"description": "x", "name": "y"}, {"name": ["Unknown field."]}),
        ({"description": ["x"]}, {"description": ["Not a valid string."]}),
    ],
)
def test_patch_model_refuses_bad_bodies(api, model, body, fields):
    before = counts()

    response = api.patch(url("models", "m"), body, format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == fields
    assert counts() == before
    assert RegisteredModel.objects.get().description == "desc"


def test_delete_model_answers_204_and_keeps_history(api, admin_api, model):
    events_before = Event.objects.count()

    response = api.delete(url("models", "m"))

    assert response.status_code == 204
    assert response.content == b""
    assert RegisteredModel.objects.count() == 0
    assert ModelVersion.objects.count() == 0
    assert Event.objects.count() == events_before + 1
    assert api.get(url("models", "m")).status_code == 404
    # The history stays; seeing a deleted model's events takes a registry-wide read grant.
    assert api.get(url("events"), {"model": "m"}).json()["results"] == []
    history = admin_api.get(url("events"), {"model": "m"}).json()["results"]
    assert len(history) == events_before + 1
    assert history[-1]["type"] == "registered_model.deleted"


def test_rename_keeps_the_id_and_everything_under_it(api, model):
    response = api.post(url("models", "m", "rename"), {"new_name": "m2"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body == model_body(model)
    assert (body["id"], body["name"], body["last_version"]) == (model.pk, "m2", 2)
    assert body["aliases"] == [{"alias": "prod", "version": 1}]
    assert body["tags"] == {"team": "risk"}
    assert api.get(url("models", "m")).status_code == 404
    versions = api.get(url("models", "m2", "versions")).json()
    assert [v["version"] for v in versions["results"]] == [2, 1]
    assert {v["model"] for v in versions["results"]} == {"m2"}
    assert api.get(url("models", "m2", "aliases", "prod")).json()["version"] == 1
    history = api.get(url("events"), {"model": "m2"}).json()["results"]
    assert [e["type"] for e in history] == [
        "registered_model.created",
        "model_version.created",
        "model_version.created",
        "model_version_alias.set",
        "registered_model.renamed",
    ]


def test_rename_to_a_taken_name_is_409(api, model, actor):
    make_model(actor, "other")
    before = counts()

    response = api.post(url("models", "m", "rename"), {"new_name": "other"}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "code": "already_exists",
        "message": "Registered Model (name=other) already exists.",
    }
    assert counts() == before
    assert sorted(RegisteredModel.objects.values_list("name", flat=True)) == ["m", "other"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"new_name": "a/b"}, "new_name"), ({"new_name": ""}, "new_name"), ({}, "new_name")],
)
def test_rename_refuses_invalid_names(api, model, body, field):
    before = counts()

    response = api.post(url("models", "m", "rename"), body, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]
    assert counts() == before
    assert RegisteredModel.objects.get().name == "m"


def test_model_tag_put_and_delete(api, model):
    since = last_seq()

    added = api.put(url("models", "m", "tags", "tier"), {"value": "1"}, format="json")
    changed = api.put(url("models", "m", "tags", "tier"), {"value": "2"}, format="json")
    tags_after_put = api.get(url("models", "m")).json()["tags"]
    deleted = api.delete(url("models", "m", "tags", "tier"))

    assert (added.status_code, changed.status_code, deleted.status_code) == (204, 204, 204)
    assert tags_after_put == {"team": "risk", "tier": "2"}
    assert api.get(url("models", "m")).json()["tags"] == {"team": "risk"}
    assert event_types(since) == [
        "registered_model_tag.set",
        "registered_model_tag.set",
        "registered_model_tag.deleted",
    ]


def test_deleting_a_missing_model_tag_is_404(api, model):
    before = counts()

    response = api.delete(url("models", "m", "tags", "nope"))

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "Model 'm' has no tag 'nope'."}
    assert counts() == before


@pytest.mark.parametrize(
    ("key", "body", "field"),
    [
        ("k" * 251, {"value": "v"}, "key"),
        ("bad$key", {"value": "v"}, "key"),
        ("k", {"value": "v" * 5001}, "value"),
        ("k", {}, "value"),
        ("k", {"value": "v", "extra": 1}, "extra"),
    ],
)
def test_model_tag_put_refuses_invalid_input(api, model, key, body, field):
    before = counts()

    response = api.put(url("models", "m", "tags", key), body, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]
    assert counts() == before


def test_model_tag_limits_are_inclusive(api, model):
    response = api.put(url("models", "m", "tags", "k" * 250), {"value": "v" * 5000}, "json")

    assert response.status_code == 204
    assert RegisteredModelTag.objects.get(key="k" * 250).value == "v" * 5000


def test_method_not_allowed_is_405(api, model):
    before = counts()

    response = api.post(url("models", "m"), {"description": "x"}, format="json")

    assert response.status_code == 405
    assert response.json() == {
        "code": "method_not_allowed",
        "message": 'Method "POST" not allowed.',
    }
    assert counts() == before


# --- model list -------------------------------------------------------------------------------


@pytest.fixture
def catalogue(actor):
    """Five models, created in this order, with tags to filter on."""
    names = [
        ("fraud-scorer", {"team": "risk", "tier": "1"}),
        ("churn", {"team": "growth"}),
        ("Fraud-Detector", {"team": "risk", "expr": "a=b"}),
        ("ranker", {}),
        ("antifraud", {"tier": "2"}),
    ]
    return [make_model(actor, name, tags=tags) for name, tags in names]


def names_of(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["name"] for item in response.json()["results"]]


def test_list_models_is_ordered_by_name_and_paginated(api, catalogue):
    response = api.get(url("models"))

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 5
    assert (body["next"], body["previous"]) == (None, None)
    assert [item["name"] for item in body["results"]] == [
        "Fraud-Detector",
        "antifraud",
        "churn",
        "fraud-scorer",
        "ranker",
    ]
    assert body["results"][3] == model_body(catalogue[0])


def test_list_models_filters_by_name_substring_in_any_case(api, catalogue):
    assert names_of(api.get(url("models"), {"name": "FRAUD"})) == [
        "Fraud-Detector",
        "antifraud",
        "fraud-scorer",
    ]
    assert names_of(api.get(url("models"), {"name": "rank"})) == ["ranker"]
    assert names_of(api.get(url("models"), {"name": "zzz"})) == []


def test_list_models_filters_by_tag_key_and_by_key_value(api, catalogue):
    assert names_of(api.get(url("models"), {"tag": "team"})) == [
        "Fraud-Detector",
        "churn",
        "fraud-scorer",
    ]
    assert names_of(api.get(url("models"), {"tag": "team=risk"})) == [
        "Fraud-Detector",
        "fraud-scorer",
    ]
    assert names_of(api.get(url("models"), {"tag": "tier=2"})) == ["antifraud"]
    assert names_of(api.get(url("models"), {"tag": "expr=a=b"})) == ["Fraud-Detector"]
    assert names_of(api.get(url("models"), {"tag": "team=nobody"})) == []
    assert names_of(api.get(url("models"), {"tag": "team=risk", "name": "scorer"})) == [
        "fraud-scorer"
    ]


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("name", ["Fraud-Detector", "antifraud", "churn", "fraud-scorer", "ranker"]),
        ("-name", ["ranker", "fraud-scorer", "churn", "antifraud", "Fraud-Detector"]),
        ("created_at", ["fraud-scorer", "churn", "Fraud-Detector", "ranker", "antifraud"]),
        ("-created_at", ["antifraud", "ranker", "Fraud-Detector", "churn", "fraud-scorer"]),
    ],
)
def test_list_models_ordering(api, catalogue, ordering, expected):
    assert names_of(api.get(url("models"), {"ordering": ordering})) == expected


def test_list_models_ordering_by_update_time(api, catalogue, actor):
    services.model_update(model=catalogue[1], description="touched", actor=actor)

    assert names_of(api.get(url("models"), {"ordering": "-updated_at"}))[0] == "churn"
    assert names_of(api.get(url("models"), {"ordering": "updated_at"}))[-1] == "churn"


def test_list_models_refuses_an_unknown_ordering(api, catalogue):
    response = api.get(url("models"), {"ordering": "password"})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert list(response.json()["fields"]) == ["ordering"]


def test_list_models_pages(api, catalogue):
    first = api.get(url("models"), {"page_size": 2}).json()
    second = api.get(url("models"), {"page_size": 2, "page": 2}).json()
    third = api.get(url("models"), {"page_size": 2, "page": 3}).json()

    assert [first["count"], second["count"], third["count"]] == [5, 5, 5]
    assert [m["name"] for m in first["results"]] == ["Fraud-Detector", "antifraud"]
    assert [m["name"] for m in second["results"]] == ["churn", "fraud-scorer"]
    assert [m["name"] for m in third["results"]] == ["ranker"]
    assert first["previous"] is None
    assert first["next"] == "http://testserver/api/v1/models/?page=2&page_size=2"
    assert third["next"] is None


def test_list_models_page_past_the_end_is_404(api, catalogue):
    response = api.get(url("models"), {"page_size": 2, "page": 4})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_list_models_accepts_a_page_size_of_1000(api, catalogue):
    response = api.get(url("models"), {"page_size": 1000})

    assert response.status_code == 200
    assert response.json()["count"] == 5


@pytest.mark.parametrize(
    ("page_size", "message"),
    [
        ("1001", "Must be between 1 and 1000."),
        ("100000", "Must be between 1 and 1000."),
        ("0", "Must be between 1 and 1000."),
        ("-5", "Must be between 1 and 1000."),
        ("ten", "'ten' is not a whole number."),
    ],
)
def test_list_models_refuses_a_bad_page_size(api, catalogue, page_size, message):
    response = api.get(url("models"), {"page_size": page_size})

    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid",
        "message": f"page_size: {message}",
        "fields": {"page_size": [message]},
    }


# --- versions ---------------------------------------------------------------------------------


def test_create_version_answers_201_with_the_version(api, model, user):
    since = last_seq()

    response = api.post(
        url("models", "m", "versions"),
        {
            "source": "s3://m/3",
            "run_id": "run-3",
            "run_link": "https://runs/3",
            "description": "third",
            "tags": {"validation": "passed"},
        },
        format="json",
    )

    assert response.status_code == 201
    version = ModelVersion.objects.get(model=model, version=3)
    assert response.json() == version_body(version)
    assert response.json() == {
        "model": "m",
        "version": 3,
        "stage": "None",
        "status": "READY",
        "source": "s3://m/3",
        "run_id": "run-3",
        "run_link": "https://runs/3",
        "description": "third",
        "tags": {"validation": "passed"},
        "aliases": [],
        "created_by": "alice",
        "created_at": iso(version.created_at),
        "updated_at": iso(version.updated_at),
    }
    assert event_types(since) == ["model_version.created"]
    assert RegisteredModel.objects.get().last_version == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "source"),
        ({"source": ""}, "source"),
        ({"source": "s3://m/../x"}, "source"),
        ({"source": ["s3://m"]}, "source"),
        ({"source": "s3://m", "run_id": "r" * 65}, "run_id"),
        ({"source": "s3://m", "tags": {"k": "v" * 5001}}, "value"),
        ({"source": "s3://m", "stage": "Production"}, "stage"),
    ],
)
def test_create_version_refuses_bad_input_and_takes_no_number(api, model, body, field):
    before = counts()

    response = api.post(url("models", "m", "versions"), body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert list(response.json()["fields"]) == [field]
    assert counts() == before
    assert RegisteredModel.objects.get().last_version == 2


def test_list_versions_newest_first_without_deleted(api, model, actor):
    services.version_delete(version=ModelVersion.objects.get(version=2), actor=actor)
    make_version(actor, model, source="s3://m/3")

    response = api.get(url("models", "m", "versions"))

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [v["version"] for v in body["results"]] == [3, 1]
    assert body["results"][1] == version_body(ModelVersion.objects.get(version=1))
    assert body["results"][1]["aliases"] == ["prod"]


def test_list_versions_refuses_a_page_size_over_the_limit(api, model):
    response = api.get(url("models", "m", "versions"), {"page_size": 1001})

    assert response.status_code == 400
    assert response.json()["fields"] == {"page_size": ["Must be between 1 and 1000."]}


def test_get_version(api, model):
    response = api.get(url("models", "m", "versions", 1))

    assert response.status_code == 200
    assert response.json() == version_body(ModelVersion.objects.get(version=1))
    assert response.json()["run_id"] == "run-1"


@pytest.mark.parametrize("version", ["abc", "0", "-1", "1.5", "1e3", "99999999999", "true"])
def test_a_version_that_is_not_a_positive_number_is_400_everywhere(api, model, version):
    before = counts()
    calls = [
        api.get(url("models", "m", "versions", version)),
        api.patch(url("models", "m", "versions", version), {"description": "x"}, format="json"),
        api.delete(url("models", "m", "versions", version)),
        api.post(url("models", "m", "versions", version, "stage"), {"stage": "Staging"}, "json"),
        api.put(url("models", "m", "versions", version, "tags", "k"), {"value": "v"}, "json"),
        api.delete(url("models", "m", "versions", version, "tags", "k")),
    ]

    for response in calls:
        assert response.status_code == 400, response.request["PATH_INFO"]
        assert response.json() == {
            "code": "invalid",
            "message": f"Version must be a positive integer, got '{version}'.",
            "fields": {"version": [f"Version must be a positive integer, got '{version}'."]},
        }
    assert counts() == before


@pytest.mark.parametrize("version", ["3", "999"])
def test_an_unknown_version_is_404_everywhere(api, model, version):
    before = counts()
    calls = [
        api.get(url("models", "m", "versions", version)),
        api.patch(url("models", "m", "versions", version), {"description": "x"}, format="json"),
        api.delete(url("models", "m", "versions", version)),
        api.post(url("models", "m", "versions", version, "stage"), {"stage": "Staging"}, "json"),
        api.put(url("models", "m", "versions", version, "tags", "k"), {"value": "v"}, "json"),
        api.delete(url("models", "m", "versions", version, "tags", "k")),
        api.put(url("models", "m", "aliases", "prod"), {"version": int(version)}, "json"),
    ]

    for response in calls:
        assert response.status_code == 404, response.request["PATH_INFO"]
        assert response.json() == {
            "code": "not_found",
            "message": f"Model Version (name=m, version={version}) not found",
        }
    assert counts() == before


def test_patch_version_changes_the_description(api, model):
    since = last_seq()

    response = api.patch(url("models", "m", "versions", 2), {"description": "better"}, "json")

    assert response.status_code == 200
    assert response.json() == version_body(ModelVersion.objects.get(version=2))
    assert response.json()["description"] == "better"
    assert event_types(since) == ["model_version.updated"]


def test_patch_version_refuses_unknown_fields(api, model):
    before = counts()

    response = api.patch(url("models", "m", "versions", 2), {"stage": "Production"}, "json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"stage": ["Unknown field."]}
    assert counts() == before


def test_delete_version_answers_204_and_takes_its_aliases(api, model):
    since = last_seq()

    response = api.delete(url("models", "m", "versions", 1))

    assert response.status_code == 204
    assert response.content == b""
    assert event_types(since) == ["model_version_alias.deleted", "model_version.deleted"]
    assert api.get(url("models", "m", "versions", 1)).status_code == 404
    assert api.get(url("models", "m", "aliases", "prod")).status_code == 404
    assert api.get(url("models", "m", "aliases")).json() == []
    created = api.post(url("models", "m", "versions"), {"source": "s3://m/3"}, format="json")
    assert created.json()["version"] == 3


def test_stage_transition_with_archiving(api, model, actor):
    services.version_transition(
        version=ModelVersion.objects.get(version=1), stage=Stage.PRODUCTION, actor=actor
    )
    since = last_seq()

    response = api.post(
        url("models", "m", "versions", 2, "stage"),
        {"stage": "production", "archive_existing_versions": True, "comment": "ship it"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json() == version_body(ModelVersion.objects.get(version=2))
    assert response.json()["stage"] == "Production"
    assert dict(ModelVersion.objects.values_list("version", "stage")) == {
        1: "Archived",
        2: "Production",
    }
    events = list(Event.objects.filter(seq__gt=since).values_list("type", "version", "comment"))
    assert events == [
        (
            "model_version.stage_transitioned",
            1,
            "Archived because version 2 moved to Production.",
        ),
        ("model_version.stage_transitioned", 2, "ship it"),
    ]


def test_stage_transition_without_archiving_keeps_the_others(api, model, actor):
    services.version_transition(
        version=ModelVersion.objects.get(version=1), stage=Stage.STAGING, actor=actor
    )

    response = api.post(url("models", "m", "versions", 2, "stage"), {"stage": "Staging"}, "json")

    assert response.status_code == 200
    assert dict(ModelVersion.objects.values_list("version", "stage")) == {
        1: "Staging",
        2: "Staging",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stage": "Prod"}, "stage"),
        ({}, "stage"),
        ({"stage": "Archived", "archive_existing_versions": True}, "archive_existing_versions"),
        ({"stage": "None", "archive_existing_versions": True}, "archive_existing_versions"),
        ({"stage": "Staging", "archive_existing_versions": "maybe"}, "archive_existing_versions"),
        ({"stage": "Staging", "force": True}, "force"),
    ],
)
def test_stage_transition_refuses_bad_input(api, model, body, field):
    before = counts()

    response = api.post(url("models", "m", "versions", 1, "stage"), body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert list(response.json()["fields"]) == [field]
    assert counts() == before
    assert set(ModelVersion.objects.values_list("stage", flat=True)) == {"None"}


def test_version_tag_put_and_delete(api, model):
    since = last_seq()

    added = api.put(
        url("models", "m", "versions", 1, "tags", "validation"), {"value": "ok"}, "json"
    )
    got = api.get(url("models", "m", "versions", 1)).json()["tags"]
    deleted = api.delete(url("models", "m", "versions", 1, "tags", "validation"))
    missing = api.delete(url("models", "m", "versions", 1, "tags", "validation"))

    assert (added.status_code, deleted.status_code) == (204, 204)
    assert got == {"validation": "ok"}
    assert missing.status_code == 404
    assert missing.json() == {
        "code": "not_found",
        "message": "Version 1 of 'm' has no tag 'validation'.",
    }
    assert event_types(since) == ["model_version_tag.set", "model_version_tag.deleted"]


@pytest.mark.parametrize(
    ("key", "body", "field"),
    [
        ("k" * 251, {"value": "v"}, "key"),
        ("k", {"value": "v" * 5001}, "value"),
        ("k", {"value": ["v"]}, "value"),
    ],
)
def test_version_tag_put_refuses_invalid_input(api, model, key, body, field):
    before = counts()

    response = api.put(url("models", "m", "versions", 1, "tags", key), body, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]
    assert counts() == before


# --- aliases ----------------------------------------------------------------------------------


def test_list_aliases(api, model, actor):
    services.alias_set(model=model, alias="canary", version=2, actor=actor)

    response = api.get(url("models", "m", "aliases"))

    assert response.status_code == 200
    assert response.json() == [
        {
            "model": "m",
            "alias": alias.alias,
            "version": alias.version.version,
            "updated_at": iso(alias.updated_at),
        }
        for alias in ModelAlias.objects.order_by("alias")
    ]
    assert [(a["alias"], a["version"]) for a in response.json()] == [("canary", 2), ("prod", 1)]


def test_put_alias_creates_and_moves(api, model):
    since = last_seq()

    created = api.put(url("models", "m", "aliases", "champion"), {"version": 2}, format="json")
    moved = api.put(url("models", "m", "aliases", "champion"), {"version": 1}, format="json")

    assert created.status_code == 201
    assert moved.status_code == 200
    alias = ModelAlias.objects.get(alias="champion")
    assert moved.json() == {
        "model": "m",
        "alias": "champion",
        "version": 1,
        "updated_at": iso(alias.updated_at),
    }
    assert created.json()["version"] == 2
    assert event_types(since) == ["model_version_alias.set", "model_version_alias.set"]


def test_put_alias_with_the_current_expected_version_moves_it(api, model):
    response = api.put(
        url("models", "m", "aliases", "prod"), {"version": 2, "expected_version": 1}, "json"
    )

    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert ModelAlias.objects.get(alias="prod").version.version == 2


def test_put_alias_with_a_stale_expected_version_is_409(api, model):
    before = counts()

    response = api.put(
        url("models", "m", "aliases", "prod"), {"version": 2, "expected_version": 2}, "json"
    )

    assert response.status_code == 409
    assert response.json() == {
        "code": "conflict",
        "message": (
            "Alias 'prod' of model 'm' points at version 1, not version 2; nothing was changed."
        ),
        "fields": {"expected_version": ["The alias points at version 1."]},
    }
    assert counts() == before
    assert ModelAlias.objects.get(alias="prod").version.version == 1


@pytest.mark.parametrize(
    ("alias", "body", "field"),
    [
        ("latest", {"version": 1}, "alias"),
        ("Latest", {"version": 1}, "alias"),
        ("v2", {"version": 1}, "alias"),
        ("a" * 256, {"version": 1}, "alias"),
        ("has space", {"version": 1}, "alias"),
        ("dot.ted", {"version": 1}, "alias"),
        ("ok", {"version": "abc"}, "version"),
        ("ok", {"version": 0}, "version"),
        ("ok", {}, "version"),
        ("ok", {"version": 1, "expected_version": "x"}, "expected_version"),
        ("ok", {"version": 1, "force": True}, "force"),
    ],
)
def test_put_alias_refuses_bad_input(api, model, alias, body, field):
    before = counts()

    response = api.put(url("models", "m", "aliases", alias), body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert list(response.json()["fields"]) == [field]
    assert counts() == before


def test_get_alias_returns_the_version_with_an_etag(api, model):
    response = api.get(url("models", "m", "aliases", "prod"))

    assert response.status_code == 200
    assert response.json() == version_body(ModelVersion.objects.get(version=1))
    assert response["ETag"].startswith('"')
    assert response["ETag"].endswith('"')
    assert response["Cache-Control"] == "no-cache"


def test_get_alias_with_a_matching_etag_is_304_with_no_body(api, model):
    etag = api.get(url("models", "m", "aliases", "prod"))["ETag"]

    response = api.get(url("models", "m", "aliases", "prod"), HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag


@pytest.mark.parametrize(
    "header", ['"other", {etag}', "W/{etag}", '{etag}, "other"'], ids=["list", "weak", "first"]
)
def test_get_alias_if_none_match_accepts_lists_and_weak_tags(api, model, header):
    etag = api.get(url("models", "m", "aliases", "prod"))["ETag"]

    response = api.get(
        url("models", "m", "aliases", "prod"), HTTP_IF_NONE_MATCH=header.format(etag=etag)
    )

    assert response.status_code == 304


def test_get_alias_with_another_etag_is_200(api, model):
    response = api.get(url("models", "m", "aliases", "prod"), HTTP_IF_NONE_MATCH='"stale"')

    assert response.status_code == 200
    assert response.json()["version"] == 1


def test_old_etag_gives_200_after_the_alias_moves(api, model):
    old = api.get(url("models", "m", "aliases", "prod"))["ETag"]
    api.put(url("models", "m", "aliases", "prod"), {"version": 2}, format="json")

    response = api.get(url("models", "m", "aliases", "prod"), HTTP_IF_NONE_MATCH=old)

    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert response["ETag"] != old
    again = api.get(url("models", "m", "aliases", "prod"), HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304


def test_old_etag_gives_200_after_the_alias_moves_away_and_back(api, model):
    old = api.get(url("models", "m", "aliases", "prod"))["ETag"]
    api.put(url("models", "m", "aliases", "prod"), {"version": 2}, format="json")
    api.put(url("models", "m", "aliases", "prod"), {"version": 1}, format="json")

    response = api.get(url("models", "m", "aliases", "prod"), HTTP_IF_NONE_MATCH=old)

    assert response.status_code == 200
    assert response.json()["version"] == 1


def test_old_etag_gives_200_after_the_version_description_changes(api, model):
    old = api.get(url("models", "m", "aliases", "prod"))["ETag"]
    api.patch(url("models", "m", "versions", 1), {"description": "retrained"}, format="json")

    response = api.get(url("models", "m", "aliases", "prod"), HTTP_IF_NONE_MATCH=old)

    assert response.status_code == 200
    assert response.json()["description"] == "retrained"


def test_old_etag_gives_200_after_the_version_is_tagged_or_transitioned(api, model):
    first = api.get(url("models", "m", "aliases", "prod"))["ETag"]
    api.put(url("models", "m", "versions", 1, "tags", "k"), {"value": "v"}, format="json")
    second = api.get(url("models", "m", "aliases", "prod"), HTTP_IF_NONE_MATCH=first)
    api.post(url("models", "m", "versions", 1, "stage"), {"stage": "Staging"}, format="json")
    third = api.get(url("models", "m", "aliases", "prod"), HTTP_IF_NONE_MATCH=second["ETag"])

    assert second.status_code == 200
    assert second.json()["tags"] == {"k": "v"}
    assert third.status_code == 200
    assert third.json()["stage"] == "Staging"


def test_etag_is_unchanged_by_reads(api, model):
    etag = api.get(url("models", "m", "aliases", "prod"))["ETag"]
    api.get(url("models", "m"))
    api.get(url("models", "m", "versions", 2))

    response = api.get(url("models", "m", "aliases", "prod"), HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 304


def test_get_unknown_alias_is_404(api, model):
    response = api.get(url("models", "m", "aliases", "nope"))

    assert response.status_code == 404
    assert response.json() == {
        "code": "not_found",
        "message": "Registered model alias nope not found on model m.",
    }


def test_delete_alias_answers_204_then_404(api, model):
    since = last_seq()

    response = api.delete(url("models", "m", "aliases", "prod"))
    again = api.delete(url("models", "m", "aliases", "prod"))

    assert response.status_code == 204
    assert response.content == b""
    assert again.status_code == 404
    assert again.json() == {
        "code": "not_found",
        "message": "Registered model alias prod not found on model m.",
    }
    assert event_types(since) == ["model_version_alias.deleted"]
    assert api.get(url("models", "m", "aliases", "prod")).status_code == 404


# --- events -----------------------------------------------------------------------------------


def event_seqs(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["seq"] for item in response.json()["results"]]


def test_events_list_renders_each_event(api, model, user):
    response = api.get(url("events"))

    assert response.status_code == 200
    body = response.json()
    assert body["previous"] is None
    assert body["next"] is None
    first = Event.objects.get(seq=1)
    assert body["results"][0] == {
        "seq": 1,
        "type": "registered_model.created",
        "outcome": "done",
        "created_at": iso(first.created_at),
        "actor": {"id": user.pk, "name": "alice", "token": "", "client_ip": ""},
        "source": "shell",
        "request_id": "",
        "model": {"id": model.pk, "name": "m"},
        "version": None,
        "before": None,
        "after": {"name": "m", "description": "desc", "tags": {"team": "risk"}},
        "comment": "",
        "prev_hash": "0" * 64,
        "hash": first.hash,
    }
    assert [item["seq"] for item in body["results"]] == [1, 2, 3, 4]


def test_events_filter_by_model_version_type_and_actor(admin_api, model, actor, django_user_model):
    api = admin_api  # a registry-wide reader sees every model's events
    other_user = django_user_model.objects.create_user(username="bob", password="bob-password-1")
    other = make_model(Actor(user=other_user), "other")  # seq 5, by bob
    make_version(actor, other)  # seq 6
    services.model_tag_set(model=model, key="k", value="v", actor=actor)  # seq 7

    assert event_seqs(api.get(url("events"), {"model": "m"})) == [1, 2, 3, 4, 7]
    assert event_seqs(api.get(url("events"), {"model": "other"})) == [5, 6]
    assert event_seqs(api.get(url("events"), {"model": "nope"})) == []
    assert event_seqs(api.get(url("events"), {"version": 1})) == [2, 4, 6]
    assert event_seqs(api.get(url("events"), {"model": "m", "version": 1})) == [2, 4]
    assert event_seqs(api.get(url("events"), {"type": "model_version.created"})) == [2, 3, 6]
    assert event_seqs(
        api.get(url("events"), {"type": "registered_model.created,registered_model_tag.set"})
    ) == [1, 5, 7]
    assert event_seqs(
        api.get(url("events", query="type=registered_model.created&type=model_version_alias.set"))
    ) == [1, 4, 5]
    assert event_seqs(api.get(url("events"), {"actor": "bob"})) == [5]
    assert event_seqs(api.get(url("events"), {"actor": "alice", "model": "other"})) == [6]
    assert event_seqs(api.get(url("events"), {"type": "no.such"})) == []


def test_events_filter_by_time_range(api, model):
    times = {
        1: datetime(2026, 3, 1, 12, tzinfo=UTC),
        2: datetime(2026, 3, 2, 12, tzinfo=UTC),
        3: datetime(2026, 3, 3, 12, tzinfo=UTC),
        4: datetime(2026, 3, 4, 12, tzinfo=UTC),
    }
    with history_writable():  # back-dating events: past the append-only triggers
        for seq, when in times.items():
            Event.objects.filter(seq=seq).update(created_at=when)

    assert event_seqs(api.get(url("events"), {"since": "2026-03-02T12:00:00Z"})) == [2, 3, 4]
    assert event_seqs(api.get(url("events"), {"until": "2026-03-03T12:00:00Z"})) == [1, 2]
    assert event_seqs(
        api.get(url("events"), {"since": "2026-03-02T00:00:00Z", "until": "2026-03-04T00:00:00Z"})
    ) == [2, 3]
    # A "+" left unescaped in the query string arrives as a space; it is read back as "+".
    assert event_seqs(api.get(url("events", query="since=2026-03-03T13:00:00+01:00"))) == [3, 4]
    assert event_seqs(api.get(url("events"), {"until": "2026-03-01T12:00:00.000001+00:00"})) == [1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": "2026-03-01T00:00:00"}, "since"),
        ({"version": "abc"}, "version"),
        ({"version": "0"}, "version"),
        ({"page_size": "1001"}, "page_size"),
        ({"page_size": "0"}, "page_size"),
    ],
)
def test_events_list_refuses_bad_parameters(api, model, query, field):
    response = api.get(url("events"), query)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert list(response.json()["fields"]) == [field]


def test_events_cursor_pagination_is_stable_while_events_are_appended(api, model, actor):
    first = api.get(url("events"), {"page_size": 3})
    assert event_seqs(first) == [1, 2, 3]
    assert first.json()["previous"] is None

    # New events arrive between pages.
    make_version(actor, model)  # seq 5
    services.model_tag_set(model=model, key="k", value="v", actor=actor)  # seq 6
    make_version(actor, model)  # seq 7
    second = api.get(first.json()["next"])
    assert event_seqs(second) == [4, 5, 6]

    services.alias_set(model=model, alias="canary", version=3, actor=actor)  # seq 8
    third = api.get(second.json()["next"])
    assert event_seqs(third) == [7, 8]
    assert third.json()["next"] is None

    back = api.get(third.json()["previous"])
    assert event_seqs(back) == [4, 5, 6]


def test_events_cursor_pagination_keeps_filters(api, model, actor):
    for _ in range(3):
        make_version(actor, model)  # seqs 5, 6, 7: versions 3, 4, 5

    first = api.get(url("events"), {"type": "model_version.created", "page_size": 2})
    second = api.get(first.json()["next"])

    assert event_seqs(first) == [2, 3]
    assert event_seqs(second) == [5, 6]
    assert event_seqs(api.get(second.json()["next"])) == [7]


def test_events_cursor_that_is_garbage_is_400(api, model):
    response = api.get(url("events"), {"cursor": "not-a-cursor"})

    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid",
        "message": "cursor: Not a cursor from a previous page.",
        "fields": {"cursor": ["Not a cursor from a previous page."]},
    }


def test_writes_through_the_api_record_actor_source_and_request_id(api, model, user):
    since = last_seq()

    api.put(
        url("models", "m", "aliases", "canary"),
        {"version": 2},
        format="json",
        HTTP_X_REQUEST_ID="deploy-7",
    )

    item = api.get(url("events"), {"type": "model_version_alias.set"}).json()["results"][-1]
    assert item["seq"] == since + 1
    assert item["actor"] == {"id": user.pk, "name": "alice", "token": "", "client_ip": "127.0.0.1"}
    assert item["source"] == "api"
    assert item["request_id"] == "deploy-7"
    assert item["before"] is None
    assert item["after"] == {"alias": "canary", "version": 2}


NUL_REFUSED = {
    "code": "invalid",
    "message": "NUL characters are not allowed in the path or the query string.",
    "fields": {"non_field_errors": ["NUL character."]},
}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/models/a%00b/"),
        ("delete", "/api/v1/models/a%00b/"),
        ("delete", "/api/v1/models/m/aliases/a%00b/"),
        ("delete", "/api/v1/models/m/tags/a%00b/"),
        ("delete", "/api/v1/models/m/versions/1/tags/a%00b/"),
    ],
)
def test_a_nul_byte_in_the_path_is_a_client_error(api, model, method, path):
    before = counts()

    response = getattr(api, method)(path)

    # Refused before any lookup (config.limits), the same on SQLite and PostgreSQL.
    assert response.status_code == 400
    assert response.json() == NUL_REFUSED
    assert counts() == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/models/?name=a%00b",
        "/api/v1/models/?tag=a%00b",
        "/api/v1/models/?tag=team=%00",
        "/api/v1/events/?model=a%00b",
        "/api/v1/events/?actor=a%00b",
        "/api/v1/events/?type=a%00b",
    ],
)
def test_a_nul_byte_in_a_filter_is_a_client_error(api, model, path):
    response = api.get(path)

    assert response.status_code == 400
    assert response.json() == NUL_REFUSED
