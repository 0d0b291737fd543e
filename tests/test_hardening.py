"""Limits and refusals that keep every answer a 4xx in the API's shape: request size, query
size, NUL characters, page sizes, strict JSON types, token creation rate, unknown API paths,
and the OpenAPI schema's promises about them (docs/operations.md, "Hardening")."""

from __future__ import annotations

import base64
import json
from typing import Any
from unittest import mock

import pytest
from django.core.exceptions import RequestDataTooBig
from django.test import RequestFactory
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts.actors import Actor
from accounts.models import ApiToken
from accounts.throttling import TokenCreateThrottle
from config import api as config_api
from registry import services
from registry.mlflow.urls import urlpatterns as mlflow_urlpatterns
from registry.models import Event, ModelAlias, RegisteredModel
from webhooks.services import subscription_create

pytestmark = pytest.mark.django_db

PASSWORD = "hardening-password-1"
MLF = "/api/2.0/mlflow/"


def basic(username: str) -> APIClient:
    client = APIClient()
    raw = base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {raw}")
    return client


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user(username="owner", password=PASSWORD)


@pytest.fixture
def fraud(owner):
    actor = Actor(user=owner)
    model = services.model_create(name="fraud", actor=actor)
    services.version_create(model=model, source="s3://b/1", actor=actor)
    services.alias_set(model=model, alias="prod", version=1, actor=actor)
    return model


# --- request size ---------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413_on_the_native_api_and_creates_nothing(owner, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    events = Event.objects.count()
    body = {"name": "big", "description": "d" * 2000}
    response = basic("owner").post("/api/v1/models/", body, format="json")
    assert response.status_code == 413
    assert response.json() == {
        "code": "too_large",
        "message": "The request body is larger than the limit of 1000 bytes.",
    }
    assert RegisteredModel.objects.count() == 0
    assert Event.objects.count() == events
    # Just under the limit is fine.
    small = {"name": "small", "description": "d" * 900}
    assert basic("owner").post("/api/v1/models/", small, format="json").status_code == 201


def test_a_body_over_the_limit_is_invalid_parameter_value_on_the_mlflow_routes(owner, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = {"name": "big", "description": "d" * 2000}
    response = basic("owner").post(MLF + "registered-models/create", body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "Bad request: Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.",
    }
    assert RegisteredModel.objects.count() == 0


def test_the_body_limit_is_the_modelgate_setting_with_djangos_default():
    from django.conf import settings

    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 2_621_440


def test_too_many_query_fields_is_a_400_everywhere(fraud, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3
    query = "&".join(f"f{i}=1" for i in range(5))
    expected = "Bad request: The number of GET/POST parameters exceeded "
    expected += "settings.DATA_UPLOAD_MAX_NUMBER_FIELDS."
    client = basic("owner")
    for path in ("/api/v1/models/", "/api/v1/models/fraud/aliases/prod/"):
        response = client.get(f"{path}?{query}")
        assert response.status_code == 400, path
        assert response["Content-Type"] == "application/json"
        assert json.loads(response.content) == {"code": "malformed_request", "message": expected}
    response = client.get(f"{MLF}registered-models/search?{query}")
    assert response.status_code == 400
    assert response.json() == {"error_code": "INVALID_PARAMETER_VALUE", "message": expected}


def test_djangos_own_refusals_under_the_api_are_json():
    factory = RequestFactory()
    api_request = factory.post("/api/v1/models/")
    response = config_api.bad_request(api_request, RequestDataTooBig("too big"))
    assert response.status_code == 413
    assert json.loads(response.content)["code"] == "too_large"
    response = config_api.server_error(factory.get("/api/v1/models/"))
    assert response.status_code == 500
    assert json.loads(response.content) == {
        "code": "internal_error",
        "message": "Internal server error; it has been logged.",
    }
    # Elsewhere (the admin), Django's own pages.
    assert config_api.server_error(factory.get("/admin/"))["Content-Type"].startswith("text/html")


def test_an_unknown_api_path_is_a_json_404_and_other_paths_keep_djangos_page(owner):
    response = basic("owner").get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {
        "code": "not_found",
        "message": "No API endpoint GET /api/v1/nothing-here/.",
    }
    # A path parameter its converter refuses is such a path too.
    assert basic("owner").get("/api/v1/tokens/not-a-number/").status_code == 404
    assert basic("owner").get("/nothing-here").headers["Content-Type"].startswith("text/html")


# --- NUL characters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/v1/models/?name=%00", "/api/v1/models/fr%00aud/", "/api/v1/events/?type=a%00b"],
)
def test_a_nul_in_a_native_path_or_query_is_a_400_on_every_database(fraud, path):
    response = basic("owner").get(path)
    assert response.status_code == 400
    assert json.loads(response.content) == {
        "code": "invalid",
        "message": "NUL characters are not allowed in the path or the query string.",
        "fields": {"non_field_errors": ["NUL character."]},
    }


def test_a_nul_in_a_json_string_is_a_400_and_changes_nothing(fraud):
    response = basic("owner").patch(
        "/api/v1/models/fraud/", {"description": "a\x00b"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["fields"] == {"description": ["Null characters are not allowed."]}
    fraud.refresh_from_db()
    assert fraud.description == ""


# --- page sizes -----------------------------------------------------------------------------


def _paginated_list_paths() -> list[str]:
    """Every native GET whose schema has `page_size`, with seeded path parameters."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    values = {"name": "fraud", "version": "1", "alias": "prod"}
    paths = []
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if not path.startswith("/api/v1/") or get is None:
            continue
        if any(p["name"] == "page_size" for p in get.get("parameters", [])):
            paths.append(path.format(**values, id="{webhook}"))
    return sorted(paths)


def test_every_native_list_is_paged_and_known_here():
    assert _paginated_list_paths() == [
        "/api/v1/events/",
        "/api/v1/models/",
        "/api/v1/models/fraud/aliases/prod/history/",
        "/api/v1/models/fraud/versions/",
        "/api/v1/models/fraud/versions/1/activity/",
        "/api/v1/models/fraud/versions/1/comments/",
        "/api/v1/policies/",
        "/api/v1/tokens/",
        "/api/v1/transition-requests/",
        "/api/v1/webhooks/",
        "/api/v1/webhooks/{webhook}/deliveries/",
    ]


@pytest.mark.parametrize("limit", [1000, 5])
def test_every_list_refuses_a_page_over_the_limit_and_serves_one_at_it(fraud, settings, limit):
    settings.MODELGATE_MAX_PAGE_SIZE = limit
    webhook = subscription_create(
        actor=Actor(user=fraud.created_by),
        model=fraud,
        url="https://hooks.example.com/modelgate",
        events=["*"],
    )
    client = basic("owner")
    for path in _paginated_list_paths():
        path = path.format(webhook=webhook.subscription.id.hex)
        over = client.get(path, {"page_size": limit + 1})
        assert over.status_code == 400, path
        assert over.json() == {
            "code": "invalid",
            "message": f"page_size: Must be between 1 and {limit}.",
            "fields": {"page_size": [f"Must be between 1 and {limit}."]},
        }, path
        assert client.get(path, {"page_size": 0}).status_code == 400, path
        assert client.get(path, {"page_size": limit}).status_code == 200, path


def test_the_schema_states_the_page_size_limit(settings):
    settings.MODELGATE_MAX_PAGE_SIZE = 250
    schema = SchemaGenerator().get_schema(request=None, public=True)
    parameters = schema["paths"]["/api/v1/models/"]["get"]["parameters"]
    page_size = next(p for p in parameters if p["name"] == "page_size")
    assert page_size["schema"] == {"type": "integer", "minimum": 1, "maximum": 250}


@pytest.mark.parametrize(
    "path", ["/api/v1/events/", "/api/v1/events/export/", "/api/v1/models/fraud/history/"]
)
def test_a_date_time_past_the_calendar_in_utc_is_a_400(fraud, path):
    # Valid RFC 3339, but a year before 1 once in UTC, where the database compares it.
    name = "at" if path.endswith("/history/") else "since"
    response = basic("owner").get(path, {name: "0001-01-01T00:30:00+01:00"})
    assert response.status_code == 400
    assert response.json()["fields"] == {name: ["'0001-01-01T00:30:00+01:00' is out of range."]}


def test_a_cursor_that_is_not_one_is_a_400(owner):
    response = basic("owner").get("/api/v1/events/", {"cursor": "not-a-cursor"})
    assert response.status_code == 400
    assert response.json()["fields"] == {"cursor": ["Not a cursor from a previous page."]}


@pytest.mark.parametrize(
    ("route", "too_many", "limit"),
    [("registered-models/search", 1001, 1000), ("model-versions/search", 200_001, 200_000)],
)
def test_mlflow_max_results_limits_hold(fraud, route, too_many, limit):
    client = basic("owner")
    response = client.get(MLF + route, {"max_results": too_many})
    assert response.status_code == 400
    assert response.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "Invalid value for request parameter max_results. It must be at most "
        f"{limit}, but got value {too_many}",
    }
    assert client.get(MLF + route, {"max_results": limit}).status_code == 200


# --- strict JSON types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "fields"),
    [
        ("post", "/api/v1/models/", {"name": 5}, {"name": ["Not a valid string."]}),
        (
            "post",
            "/api/v1/models/",
            {"name": "x", "tags": {"k": 1}},
            {"tags": {"k": ["Not a valid string."]}},
        ),
        (
            "put",
            "/api/v1/models/fraud/aliases/prod/",
            {"version": "1"},
            {"version": ["A valid integer is required."]},
        ),
        ("post", "/api/v1/tokens/", {"read_only": 0}, {"read_only": ["Must be a valid boolean."]}),
        (
            "post",
            "/api/v1/tokens/",
            {"expires_in_days": 7.0},
            {"expires_in_days": ["A valid integer is required."]},
        ),
    ],
)
def test_a_value_of_another_json_type_is_refused_not_coerced(fraud, method, path, body, fields):
    events = Event.objects.count()
    response = getattr(basic("owner"), method)(path, body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["fields"] == fields
    assert Event.objects.count() == events
    assert ApiToken.objects.count() == 0


def test_an_alias_or_tag_key_with_a_final_newline_is_refused(fraud):
    client = basic("owner")
    body = {"name": "fraud", "alias": "prod2\n", "version": "1"}
    assert client.post(MLF + "registered-models/alias", body, format="json").status_code == 400
    tag = {"name": "fraud", "key": "team\n", "value": "ml"}
    assert client.post(MLF + "registered-models/set-tag", tag, format="json").status_code == 400
    assert not ModelAlias.objects.filter(alias__startswith="prod2").exists()
    assert not fraud.tags.exists()


# --- token creation rate --------------------------------------------------------------------


def test_token_creation_is_throttled_per_user_with_retry_after(owner, django_user_model, settings):
    settings.MODELGATE_TOKEN_CREATE_RATE = "3/min"
    django_user_model.objects.create_user(username="other", password=PASSWORD)
    client = basic("owner")
    for n in range(3):
        assert client.post("/api/v1/tokens/", {"name": f"t{n}"}, format="json").status_code == 201
    refused = client.post("/api/v1/tokens/", {"name": "t3"}, format="json")
    assert refused.status_code == 429
    assert refused.json() == {
        "code": "throttled",
        "message": "Request was throttled. Expected available in 60 seconds.",
    }
    assert refused["Retry-After"] == "60"
    assert ApiToken.objects.filter(user=owner).count() == 3
    # Reading is not throttled, nor is another user.
    assert client.get("/api/v1/tokens/").status_code == 200
    assert basic("other").post("/api/v1/tokens/", {}, format="json").status_code == 201


def test_no_token_rate_means_no_limit(owner, settings):
    settings.MODELGATE_TOKEN_CREATE_RATE = ""
    client = basic("owner")
    for n in range(25):
        assert client.post("/api/v1/tokens/", {"name": f"t{n}"}, format="json").status_code == 201


def test_token_creation_goes_on_when_the_throttle_cache_is_down(owner, settings):
    settings.MODELGATE_TOKEN_CREATE_RATE = "1/min"
    broken = mock.Mock()
    broken.get.side_effect = ConnectionError("cache down")
    with mock.patch("accounts.throttling._counters", return_value=broken):
        for n in range(3):
            response = basic("owner").post("/api/v1/tokens/", {"name": f"t{n}"}, format="json")
            assert response.status_code == 201


def test_the_token_rate_default_is_twenty_a_minute():
    throttle = TokenCreateThrottle()
    assert (throttle.num_requests, throttle.duration) == (20, 60)


@pytest.mark.redis
def test_the_token_throttle_counts_in_redis(owner, settings):
    settings.MODELGATE_TOKEN_CREATE_RATE = "2/min"
    client = basic("owner")
    assert client.post("/api/v1/tokens/", {}, format="json").status_code == 201
    assert client.post("/api/v1/tokens/", {}, format="json").status_code == 201
    assert client.post("/api/v1/tokens/", {}, format="json").status_code == 429
    from accounts.throttling import _counters

    assert len(_counters().get(f"modelgate:throttle:token_create:{owner.pk}")) == 2


@pytest.mark.redis
def test_failed_logins_are_counted_and_read_back_in_redis(settings):
    from django.core.cache.backends.redis import RedisCache

    from accounts import throttling

    settings.MODELGATE_AUTH_FAILURES_PER_MINUTE = 3
    assert isinstance(throttling._counters(), RedisCache)  # the direct reading path
    assert throttling._failures("192.0.2.7") == 0
    for count in (1, 2):
        throttling.auth_failure_note("192.0.2.7")
        assert throttling._failures("192.0.2.7") == count
    assert throttling.auth_failures_exceeded("192.0.2.7") is False
    throttling.auth_failure_note("192.0.2.7")
    assert throttling.auth_failures_exceeded("192.0.2.7") is True
    assert throttling.auth_failures_exceeded("192.0.2.8") is False
    # The window's expiry is the cache's: the counter carries its TTL.
    key = throttling._counters().make_key("modelgate:authfail:192.0.2.7")
    ttl = throttling._redis_reader(throttling._counters()).ttl(key)
    assert 0 < ttl <= throttling.WINDOW_SECONDS


def test_the_auth_throttle_lets_requests_through_when_its_cache_is_down():
    from accounts import throttling

    broken = mock.Mock()
    broken.get.side_effect = ConnectionError("cache down")
    with mock.patch("accounts.throttling._counters", return_value=broken):
        assert throttling.auth_failures_exceeded("192.0.2.9") is False


# --- what the schema promises ---------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def test_every_operation_documents_its_errors_with_their_real_bodies(schema):
    for path, operations in schema["paths"].items():
        error = "Error" if path.startswith("/api/v1/") else "MlflowError"
        for method, operation in operations.items():
            responses = operation["responses"]
            for status in ("401", "403", "429"):
                assert status in responses, (method, path, status)
                body = responses[status]["content"]["application/json"]["schema"]
                assert body == {"$ref": f"#/components/schemas/{error}"}
            assert "Retry-After" in responses["429"]["headers"]
            takes_input = operation.get("parameters") or operation.get("requestBody")
            assert ("400" in responses) == bool(takes_input), (method, path)
    assert schema["components"]["schemas"]["Error"]["required"] == ["code", "message"]
    assert schema["components"]["schemas"]["MlflowError"]["required"] == ["error_code", "message"]


def test_token_creation_documents_its_429_and_conflicts_their_409(schema):
    assert "429" in schema["paths"]["/api/v1/tokens/"]["post"]["responses"]
    assert "409" in schema["paths"]["/api/v1/models/"]["post"]["responses"]
    assert "409" not in schema["paths"]["/api/v1/models/"]["get"]["responses"]
    assert "404" in schema["paths"]["/api/v1/models/{name}/"]["get"]["responses"]
    assert "413" in schema["paths"]["/api/v1/models/"]["post"]["responses"]


def test_input_objects_refuse_unknown_fields_in_the_schema_too(schema):
    body = schema["components"]["schemas"]["ModelCreateInRequest"]
    assert body["additionalProperties"] is False
    assert body["properties"]["name"]["maxLength"] == 256
    assert "description" not in body  # not the base class's docstring


# Routes of registry/mlflow/urls.py the schema leaves out: the legacy list (the search without a
# filter) and the Databricks read, which Databricks tooling knows without a schema.
UNDOCUMENTED_MLFLOW = {"registered-models/list", "databricks/registered-models/get"}


def test_the_mlflow_registry_routes_are_in_the_schema(schema):
    routes = {str(pattern.pattern) for pattern in mlflow_urlpatterns}
    documented = {path.removeprefix(MLF) for path in schema["paths"] if path.startswith(MLF)}
    assert documented == routes - UNDOCUMENTED_MLFLOW
    alias = schema["paths"][MLF + "registered-models/alias"]
    assert set(alias) == {"get", "post", "delete"}
    assert "304" in alias["get"]["responses"]
    assert alias["get"]["security"] == schema["paths"]["/api/v1/models/"]["get"]["security"]
