"""Databricks' registry-webhook routes: the databricks-sdk against a live server, the wire
shapes, the errors and permissions, and signed deliveries to a real receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from django.test import Client
from standardwebhooks import Webhook

from accounts.actors import Actor
from accounts.tokens import token_create
from registry import services as registry_services
from registry.mlflow.rendering import millis
from registry.models import Event, ModelVersion
from registry.permissions import Level
from webhooks import crypto
from webhooks.choices import DeliveryState, Flavor, SubscriptionStatus
from webhooks.models import Delivery, Subscription
from webhooks.services import subscription_create

PASSWORD = "dbx-password-1"
SECRET = "databricks-shared-secret"
DBX = "/api/2.0/mlflow/registry-webhooks/"
URL = "http://127.0.0.1:9/hook"


def _basic(username: str) -> Client:
    raw = base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()
    return Client(HTTP_AUTHORIZATION=f"Basic {raw}")


@pytest.fixture
def people(django_user_model):
    """root (superuser); on model "fraud": manager (CAN_MANAGE), reader (CAN_READ); stranger."""
    root = django_user_model.objects.create_superuser(
        username="root", password=PASSWORD, email="root@example.com"
    )
    for name in ("manager", "reader", "stranger"):
        django_user_model.objects.create_user(username=name, password=PASSWORD)
    model = registry_services.model_create(name="fraud", actor=Actor(user=root))
    registry_services.version_create(
        model=model, source="s3://bucket/fraud/1", actor=Actor(user=root)
    )
    registry_services.model_create(name="churn", actor=Actor(user=root))
    registry_services.permissions_update(
        model=model,
        actor=Actor.system(),
        users={"manager": Level.CAN_MANAGE, "reader": Level.CAN_READ},
        groups={},
    )
    return {"root": root, "model": model}


@pytest.fixture
def hooks_ok(settings):
    """Webhook URLs on 127.0.0.1 pass the SSRF guard (no receiver needed for wire tests)."""
    settings.MODELGATE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


def _send(client: Client, method: str, route: str, body: dict | None = None) -> tuple[int, Any]:
    if method == "get":
        response = client.get(DBX + route, body or {})
    else:
        response = getattr(client, method)(
            DBX + route, json.dumps(body or {}), content_type="application/json"
        )
    return response.status_code, response.json()


def _create(client: Client, **fields: Any) -> dict:
    body = {"events": ["MODEL_VERSION_CREATED"], "http_url_spec": {"url": URL}}
    body.update(fields)
    status, answer = _send(client, "post", "create", body)
    assert status == 200, answer
    return answer["webhook"]


def _databricks_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _standard_verify(secret: str, received: Any) -> dict:
    key = "whsec_" + base64.b64encode(secret.encode()).decode()
    return Webhook(key).verify(received.body, received.headers)


def _state() -> tuple:
    return (
        list(
            Subscription.objects.values_list(
                "id", "url", "events", "status", "description", "headers_encrypted", "updated_at"
            )
        ),
        Event.objects.count(),
        Delivery.objects.count(),
    )


# --- the databricks-sdk ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_sdk_manages_and_tests_a_model_webhook(people, receiver, live_server):
    sdk = pytest.importorskip("databricks.sdk")
    from databricks.sdk.service.ml import HttpUrlSpec, RegistryWebhookEvent, RegistryWebhookStatus

    token = token_create(user=people["root"].__class__.objects.get(username="manager")).secret
    workspace = sdk.WorkspaceClient(host=live_server.url, token=token, auth_type="pat")
    registry = workspace.model_registry
    created = registry.create_webhook(
        events=[
            RegistryWebhookEvent.MODEL_VERSION_CREATED,
            RegistryWebhookEvent.MODEL_VERSION_TRANSITIONED_TO_PRODUCTION,
        ],
        description="Deploy on promotion",
        http_url_spec=HttpUrlSpec(
            url=receiver.url,
            secret=SECRET,
            authorization="Bearer receiver-token",
            enable_ssl_verification=False,
        ),
        model_name="fraud",
    ).webhook
    stored = Subscription.objects.get()
    assert created.id == stored.id.hex
    assert [e.value for e in created.events] == [
        "MODEL_VERSION_CREATED",
        "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION",
    ]
    assert created.description == "Deploy on promotion"
    assert created.model_name == "fraud"
    assert created.status.value == "ACTIVE"
    assert created.http_url_spec.url == receiver.url
    assert created.http_url_spec.enable_ssl_verification is False
    assert created.creation_timestamp == millis(stored.created_at)
    assert created.last_updated_timestamp == millis(stored.updated_at)
    assert (stored.flavor, stored.model_id, stored.verify_tls) == (
        Flavor.DATABRICKS,
        people["model"].pk,
        False,
    )
    assert crypto.decrypt_headers(stored.headers_encrypted) == {
        "Authorization": "Bearer receiver-token"
    }

    listed = list(
        registry.list_webhooks(
            events=[RegistryWebhookEvent.MODEL_VERSION_TRANSITIONED_TO_PRODUCTION],
            model_name="fraud",
        )
    )
    assert [w.id for w in listed] == [created.id]
    assert list(registry.list_webhooks(events=[RegistryWebhookEvent.COMMENT_CREATED])) == []

    updated = registry.update_webhook(
        created.id, status=RegistryWebhookStatus.TEST_MODE, description="Only tests"
    ).webhook
    assert (updated.status.value, updated.description) == ("TEST_MODE", "Only tests")

    answer = registry.test_registry_webhook(
        created.id, event=RegistryWebhookEvent.MODEL_VERSION_TRANSITIONED_TO_PRODUCTION
    )
    assert (answer.status_code, answer.body) == (200, "ok")
    hit = receiver.wait_for(1)[0]
    payload = json.loads(hit.body)
    assert payload["event"] == "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"
    assert payload["webhook_id"] == created.id
    assert (payload["model_name"], payload["version"], payload["to_stage"]) == (
        "fraud",
        "1",
        "Production",
    )
    assert hit.headers["x-databricks-signature"] == _databricks_signature(SECRET, hit.body)
    assert hit.headers["authorization"] == "Bearer receiver-token"
    assert _standard_verify(SECRET, hit) == payload
    assert "x-mlflow-signature" not in hit.headers

    registry.delete_webhook(created.id)
    assert Subscription.objects.count() == 0
    assert list(registry.list_webhooks()) == []
    assert list(
        Event.objects.filter(type__startswith="webhook.").values_list("type", flat=True)
    ) == ["webhook.created", "webhook.updated", "webhook.deleted"]


@pytest.mark.django_db(transaction=True)
def test_the_sdk_gets_clear_errors(people, live_server, settings):
    sdk = pytest.importorskip("databricks.sdk")
    from databricks.sdk.errors import InvalidParameterValue, NotFound, PermissionDenied
    from databricks.sdk.service.ml import HttpUrlSpec, JobSpec, RegistryWebhookEvent

    def workspace(name: str) -> Any:
        user = people["root"].__class__.objects.get(username=name)
        return sdk.WorkspaceClient(
            host=live_server.url, token=token_create(user=user).secret, auth_type="pat"
        ).model_registry

    events = [RegistryWebhookEvent.MODEL_VERSION_CREATED]
    with pytest.raises(InvalidParameterValue, match="job webhooks are not supported"):
        workspace("manager").create_webhook(
            events=events,
            job_spec=JobSpec(job_id="1", access_token="dapi-secret"),
            model_name="fraud",
        )
    with pytest.raises(PermissionDenied):
        workspace("reader").create_webhook(
            events=events,
            http_url_spec=HttpUrlSpec(url="https://hooks.example.com/"),
            model_name="fraud",
        )
    with pytest.raises(NotFound):
        workspace("stranger").create_webhook(
            events=events,
            http_url_spec=HttpUrlSpec(url="https://hooks.example.com/"),
            model_name="fraud",
        )
    with pytest.raises(NotFound):
        workspace("manager").delete_webhook("0" * 32)
    assert Subscription.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_sdk_follows_page_tokens(people, live_server, settings):
    sdk = pytest.importorskip("databricks.sdk")
    settings.MODELGATE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    ids = [_create(_basic("root"), description=f"hook {n}")["id"] for n in range(3)]
    registry = sdk.WorkspaceClient(
        host=live_server.url, token=token_create(user=people["root"]).secret, auth_type="pat"
    ).model_registry
    assert [w.id for w in registry.list_webhooks(max_results=1)] == ids[::-1]
    assert [w.description for w in registry.list_webhooks(max_results=2)] == [
        "hook 2",
        "hook 1",
        "hook 0",
    ]


@pytest.mark.django_db(transaction=True)
def test_registry_changes_reach_a_databricks_webhook_signed(people, receiver):
    manager = Actor(user=people["root"].__class__.objects.get(username="manager"))
    client = _basic("manager")
    hook = _create(
        client,
        model_name="fraud",
        events=["MODEL_VERSION_TRANSITIONED_TO_PRODUCTION", "MODEL_VERSION_TAG_SET"],
        http_url_spec={"url": receiver.url, "secret": SECRET},
    )
    version = ModelVersion.objects.get(model=people["model"], version=1)
    registry_services.version_tag_set(
        version=version, key="validation", value="passed", actor=manager
    )
    registry_services.version_transition(version=version, stage="Production", actor=manager)
    # Another model's change is not this webhook's.
    registry_services.version_create(
        model=registry_services.model_create(name="other", actor=Actor(user=people["root"])),
        source="s3://bucket/other/1",
        actor=Actor(user=people["root"]),
    )
    got = receiver.wait_for(2)
    assert len(got) == 2
    payloads = [json.loads(r.body) for r in got]
    assert sorted(p["event"] for p in payloads) == [
        "MODEL_VERSION_TAG_SET",
        "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION",
    ]
    for hit, payload in zip(got, payloads, strict=True):
        assert hit.headers["x-databricks-signature"] == _databricks_signature(SECRET, hit.body)
        assert _standard_verify(SECRET, hit) == payload
        assert payload["webhook_id"] == hook["id"]
        assert (payload["model_name"], payload["version"]) == ("fraud", "1")
        assert "authorization" not in hit.headers
    tagged = next(p for p in payloads if p["event"] == "MODEL_VERSION_TAG_SET")
    assert tagged["tags"] == [{"key": "validation", "value": "passed"}]
    moved = next(p for p in payloads if p["event"] != "MODEL_VERSION_TAG_SET")
    assert (moved["from_stage"], moved["to_stage"]) == ("None", "Production")
    assert sorted(Delivery.objects.values_list("event_type", "state")) == [
        ("MODEL_VERSION_TAG_SET", DeliveryState.SUCCEEDED),
        ("MODEL_VERSION_TRANSITIONED_TO_PRODUCTION", DeliveryState.SUCCEEDED),
    ]


# --- wire shapes -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_answers_the_registry_webhook_exactly(people, hooks_ok):
    status, body = _send(
        _basic("manager"),
        "post",
        "create",
        {
            "events": ["MODEL_VERSION_CREATED", "COMMENT_CREATED"],
            "description": "Tell the deployer",
            "model_name": "fraud",
            "status": "TEST_MODE",
            "http_url_spec": {
                "url": URL,
                "secret": SECRET,
                "authorization": "Bearer receiver-token",
            },
        },
    )
    stored = Subscription.objects.get()
    assert status == 200
    assert body == {
        "webhook": {
            "id": stored.id.hex,
            "events": ["MODEL_VERSION_CREATED", "COMMENT_CREATED"],
            "description": "Tell the deployer",
            "model_name": "fraud",
            "status": "TEST_MODE",
            "creation_timestamp": millis(stored.created_at),
            "last_updated_timestamp": millis(stored.updated_at),
            "http_url_spec": {"url": URL, "enable_ssl_verification": True},
        }
    }
    assert stored.verify_tls is True
    assert crypto.decrypt(stored.secret_encrypted) == SECRET
    event = Event.objects.get(type="webhook.created")
    assert (event.model_name, event.source, event.after["flavor"]) == (
        "fraud",
        "mlflow",
        "databricks",
    )
    assert event.after["headers"] == ["Authorization"]
    assert "receiver-token" not in json.dumps(event.after)


@pytest.mark.django_db
def test_a_registry_wide_webhook_by_a_superuser(people, hooks_ok):
    hook = _create(_basic("root"), events=["REGISTERED_MODEL_CREATED"])
    assert "model_name" not in hook
    assert "description" not in hook
    assert Subscription.objects.get().model_id is None


@pytest.mark.django_db
@pytest.mark.parametrize("prefix", ["/ajax-api/2.0/mlflow/", "/api/2.0/preview/mlflow/"])
def test_the_routes_answer_under_the_other_prefixes(people, hooks_ok, prefix):
    client = _basic("manager")
    response = client.post(
        prefix + "registry-webhooks/create",
        json.dumps(
            {
                "events": ["MODEL_VERSION_CREATED"],
                "http_url_spec": {"url": URL},
                "model_name": "fraud",
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 200
    hook_id = response.json()["webhook"]["id"]
    listed = client.get(prefix + "registry-webhooks/list").json()
    assert [w["id"] for w in listed["webhooks"]] == [hook_id]
    assert client.delete(prefix + f"registry-webhooks/delete?id={hook_id}").json() == {}
    assert Subscription.objects.count() == 0


@pytest.mark.django_db
def test_list_filters_by_events_and_model_and_pages(people, hooks_ok):
    root = _basic("root")
    a = _create(root, model_name="fraud", events=["MODEL_VERSION_CREATED", "COMMENT_CREATED"])
    b = _create(root, model_name="churn", events=["COMMENT_CREATED"])
    c = _create(root, events=["REGISTERED_MODEL_CREATED"])
    subscription_create(actor=Actor(user=people["root"]), url=URL, events=["*"])  # native
    ids = lambda answer: [w["id"] for w in answer.get("webhooks", [])]  # noqa: E731
    assert ids(_send(root, "get", "list")[1]) == [c["id"], b["id"], a["id"]]
    assert ids(_send(root, "get", "list", {"events": "COMMENT_CREATED"})[1]) == [b["id"], a["id"]]
    both = root.get(DBX + "list", {"events": ["REGISTERED_MODEL_CREATED", "MODEL_VERSION_CREATED"]})
    assert ids(both.json()) == [c["id"], a["id"]]
    assert ids(_send(root, "get", "list", {"model_name": "fraud"})[1]) == [a["id"]]
    first = _send(root, "get", "list", {"max_results": "2"})[1]
    assert ids(first) == [c["id"], b["id"]]
    rest = _send(root, "get", "list", {"max_results": "2", "page_token": first["next_page_token"]})[
        1
    ]
    assert ids(rest) == [a["id"]]
    assert "next_page_token" not in rest
    # A model's manager sees that model's webhooks; a reader sees none; nobody errs.
    assert ids(_send(_basic("manager"), "get", "list")[1]) == [a["id"]]
    assert _send(_basic("reader"), "get", "list")[1] == {}
    assert _send(_basic("reader"), "get", "list", {"model_name": "fraud"})[1] == {}


@pytest.mark.django_db
def test_update_changes_what_is_given(people, hooks_ok):
    client = _basic("manager")
    hook = _create(
        client,
        model_name="fraud",
        http_url_spec={"url": URL, "secret": SECRET, "authorization": "Bearer one"},
    )
    status, body = _send(
        client,
        "patch",
        "update",
        {
            "id": hook["id"],
            "events": ["TRANSITION_REQUEST_TO_PRODUCTION_CREATED"],
            "http_url_spec": {
                "url": "http://127.0.0.1:10/new",
                "enable_ssl_verification": False,
                "authorization": "",
            },
        },
    )
    assert status == 200
    assert body["webhook"]["events"] == ["TRANSITION_REQUEST_TO_PRODUCTION_CREATED"]
    assert body["webhook"]["http_url_spec"] == {
        "url": "http://127.0.0.1:10/new",
        "enable_ssl_verification": False,
    }
    stored = Subscription.objects.get()
    assert crypto.decrypt_headers(stored.headers_encrypted) == {}
    assert crypto.decrypt(stored.secret_encrypted) == SECRET

    status, body = _send(
        client,
        "patch",
        "update",
        {"id": hook["id"], "status": "DISABLED", "http_url_spec": {"secret": "a-brand-new-secret"}},
    )
    assert status == 200
    assert body["webhook"]["status"] == "DISABLED"
    stored.refresh_from_db()
    assert stored.status == SubscriptionStatus.DISABLED
    assert crypto.decrypt(stored.secret_encrypted) == "a-brand-new-secret"
    assert stored.url == "http://127.0.0.1:10/new"


@pytest.mark.django_db
def test_a_webhook_follows_its_model_renamed(people, hooks_ok):
    hook = _create(_basic("manager"), model_name="fraud")
    registry_services.model_rename(
        model=people["model"], actor=Actor(user=people["root"]), new_name="fraud-v2"
    )
    listed = _send(_basic("manager"), "get", "list", {"model_name": "fraud-v2"})[1]
    assert [(w["id"], w["model_name"]) for w in listed["webhooks"]] == [(hook["id"], "fraud-v2")]


@pytest.mark.django_db
def test_delete_takes_the_id_in_the_query_or_the_body(people, hooks_ok):
    client = _basic("manager")
    first = _create(client, model_name="fraud")
    second = _create(client, model_name="fraud")
    response = client.delete(DBX + f"delete?id={first['id']}")
    assert (response.status_code, response.json()) == (200, {})
    response = client.delete(
        DBX + "delete", json.dumps({"id": second["id"]}), content_type="application/json"
    )
    assert (response.status_code, response.json()) == (200, {})
    assert Subscription.objects.count() == 0


@pytest.mark.django_db
def test_test_reports_a_receiver_that_cannot_be_reached(people, hooks_ok):
    client = _basic("manager")
    hook = _create(client, model_name="fraud", http_url_spec={"url": "http://127.0.0.1:1/"})
    status, body = _send(client, "post", "test", {"id": hook["id"]})
    assert status == 200
    assert list(body) == ["body"]
    assert body["body"].startswith("ConnectError")
    delivery = Delivery.objects.get()
    assert (delivery.event_type, delivery.is_test) == ("MODEL_VERSION_CREATED", True)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"job_spec": {"job_id": "1", "access_token": "dapi-x"}, "http_url_spec": None},
            "Invalid parameter 'job_spec': job webhooks are not supported by Modelgate, which "
            "runs no jobs. Use 'http_url_spec' to have events POSTed to a URL.",
        ),
        ({"http_url_spec": None}, "Missing value for required parameter 'http_url_spec'."),
        ({"http_url_spec": {}}, "Missing value for required parameter 'http_url_spec.url'."),
        (
            {"http_url_spec": {"url": URL, "enable_ssl_verification": "no"}},
            "Invalid value 'no' for parameter 'http_url_spec.enable_ssl_verification' supplied: "
            "expected true or false.",
        ),
        (
            {"http_url_spec": {"url": URL, "authorization": "Bearer a\r\nX-Evil: 1"}},
            "Invalid value for parameter 'http_url_spec.authorization': at most 4096 characters "
            "on one line.",
        ),
        (
            {"http_url_spec": {"url": "http://169.254.169.254/"}},
            "The URL's host 169.254.169.254 is a cloud metadata address; webhooks go to public "
            "hosts.",
        ),
        ({"events": None}, "Missing value for required parameter 'events'."),
        ({"events": []}, "Missing value for required parameter 'events'."),
        (
            {"events": ["MODEL_VERSION_DELETED"]},
            "Unknown event(s): MODEL_VERSION_DELETED. Known: COMMENT_CREATED, "
            "MODEL_VERSION_CREATED, MODEL_VERSION_TAG_SET, MODEL_VERSION_TRANSITIONED_STAGE, "
            "MODEL_VERSION_TRANSITIONED_TO_ARCHIVED, MODEL_VERSION_TRANSITIONED_TO_PRODUCTION, "
            "MODEL_VERSION_TRANSITIONED_TO_STAGING, REGISTERED_MODEL_CREATED, "
            "TRANSITION_REQUEST_CREATED, TRANSITION_REQUEST_TO_ARCHIVED_CREATED, "
            "TRANSITION_REQUEST_TO_PRODUCTION_CREATED, TRANSITION_REQUEST_TO_STAGING_CREATED.",
        ),
        (
            {"events": ["REGISTERED_MODEL_CREATED"]},
            "REGISTERED_MODEL_CREATED can only be subscribed to registry-wide.",
        ),
        ({"status": "PAUSED"}, "status must be one of ACTIVE, TEST_MODE, DISABLED."),
        (
            {"http_url_spec": {"url": URL, "secret": "short"}},
            "A secret is either whsec_ and the base64 of at least 24 bytes, or a string of at "
            "least 16 characters.",
        ),
    ],
)
def test_bad_input_is_invalid_and_changes_nothing(people, hooks_ok, change, message):
    body = {
        "events": ["MODEL_VERSION_CREATED"],
        "http_url_spec": {"url": URL},
        "model_name": "fraud",
    }
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    before = _state()
    status, answer = _send(_basic("manager"), "post", "create", body)
    assert (status, answer) == (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": message})
    assert _state() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Missing value for required parameter 'id'."),
        ({"events": []}, "Missing value for required parameter 'id'."),
        ({"id": "HOOK", "job_spec": {"job_id": "1"}}, None),
        ({"id": "HOOK", "events": ["NOPE"]}, None),
        ({"id": "HOOK", "status": "PAUSED"}, "status must be one of ACTIVE, TEST_MODE, DISABLED."),
        (
            {"id": "HOOK", "http_url_spec": {"secret": ""}},
            "Invalid value '' for parameter 'http_url_spec.secret': a webhook's secret cannot be "
            "removed; give a new one (at least 16 characters) to rotate it.",
        ),
        (
            {"id": "HOOK", "description": "new", "http_url_spec": {"url": "ftp://x/"}},
            "The URL must start with http:// or https://.",
        ),
    ],
)
def test_a_refused_update_changes_nothing(people, hooks_ok, body, message):
    client = _basic("manager")
    hook = _create(client, model_name="fraud", http_url_spec={"url": URL, "authorization": "B x"})
    if "id" in body:
        body = {**body, "id": hook["id"]}
    before = _state()
    status, answer = _send(client, "patch", "update", body)
    assert status == 400
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    if message is not None:
        assert answer["message"] == message
    assert _state() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            {"events": "MODEL_VERSION_DELETED"},
            "Invalid value MODEL_VERSION_DELETED for parameter 'events': known events are "
            "MODEL_VERSION_CREATED, MODEL_VERSION_TRANSITIONED_STAGE, TRANSITION_REQUEST_CREATED, "
            "COMMENT_CREATED, REGISTERED_MODEL_CREATED, MODEL_VERSION_TAG_SET, "
            "MODEL_VERSION_TRANSITIONED_TO_STAGING, MODEL_VERSION_TRANSITIONED_TO_PRODUCTION, "
            "MODEL_VERSION_TRANSITIONED_TO_ARCHIVED, TRANSITION_REQUEST_TO_STAGING_CREATED, "
            "TRANSITION_REQUEST_TO_PRODUCTION_CREATED, TRANSITION_REQUEST_TO_ARCHIVED_CREATED.",
        ),
        ({"max_results": "5000"}, "max_results must be between 1 and 1000."),
        ({"page_token": "%%%"}, "Invalid page token '%%%'."),
    ],
)
def test_bad_list_parameters_are_invalid(people, query, message):
    status, answer = _send(_basic("root"), "get", "list", query)
    assert (status, answer) == (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": message})


@pytest.mark.django_db
def test_an_unknown_model_is_not_found(people, hooks_ok):
    for route, method in (("create", "post"), ("list", "get")):
        status, answer = _send(
            _basic("root"),
            method,
            route,
            {
                "events": ["MODEL_VERSION_CREATED"],
                "http_url_spec": {"url": URL},
                "model_name": "nope",
            },
        )
        assert (status, answer) == (
            404,
            {
                "error_code": "RESOURCE_DOES_NOT_EXIST",
                "message": "Registered Model with name=nope not found",
            },
        )
    assert Subscription.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("route", "method", "extra"),
    [
        ("update", "patch", {"description": "x"}),
        ("delete", "delete", {}),
        ("test", "post", {}),
    ],
)
def test_unknown_and_foreign_ids_do_not_exist(people, hooks_ok, route, method, extra):
    root = Actor(user=people["root"])
    mlflow_hook = subscription_create(
        actor=root, flavor=Flavor.MLFLOW, url=URL, events=["model_version.created"]
    ).subscription
    native = subscription_create(actor=root, url=URL, events=["*"]).subscription
    before = _state()
    for hook_id in ("0" * 32, "not-an-id", mlflow_hook.id.hex, native.id.hex):
        status, answer = _send(_basic("root"), method, route, {"id": hook_id, **extra})
        assert (status, answer) == (
            404,
            {
                "error_code": "RESOURCE_DOES_NOT_EXIST",
                "message": f"Webhook with ID {hook_id} not found.",
            },
        )
    assert _state() == before


@pytest.mark.django_db
def test_who_may_manage_which_webhook(people, hooks_ok):
    model_hook = _create(_basic("manager"), model_name="fraud")
    wide_hook = _create(_basic("root"), events=["REGISTERED_MODEL_CREATED"])
    before = _state()
    cases = [
        # (who, route, method, body, status, error_code)
        ("reader", "create", "post", {"model_name": "fraud"}, 403, "PERMISSION_DENIED"),
        ("stranger", "create", "post", {"model_name": "fraud"}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("manager", "create", "post", {}, 403, "PERMISSION_DENIED"),
        ("reader", "update", "patch", {"id": model_hook["id"]}, 403, "PERMISSION_DENIED"),
        ("reader", "delete", "delete", {"id": model_hook["id"]}, 403, "PERMISSION_DENIED"),
        ("reader", "test", "post", {"id": model_hook["id"]}, 403, "PERMISSION_DENIED"),
        ("stranger", "update", "patch", {"id": model_hook["id"]}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("stranger", "delete", "delete", {"id": model_hook["id"]}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("manager", "update", "patch", {"id": wide_hook["id"]}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("manager", "delete", "delete", {"id": wide_hook["id"]}, 404, "RESOURCE_DOES_NOT_EXIST"),
    ]
    for who, route, method, extra, status, code in cases:
        body = {"events": ["MODEL_VERSION_CREATED"], "http_url_spec": {"url": URL}, **extra}
        got_status, answer = _send(_basic(who), method, route, body)
        assert (got_status, answer["error_code"]) == (status, code), (who, route, answer)
    assert _state() == before
    # A read-only token writes nothing, even its owner's model webhooks.
    manager = people["root"].__class__.objects.get(username="manager")
    token = Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=manager, read_only=True).secret}")
    before = _state()  # issuing the token is an event of its own
    status, answer = _send(token, "delete", "delete", {"id": model_hook["id"]})
    assert (status, answer["error_code"]) == (403, "PERMISSION_DENIED")
    assert _state() == before
