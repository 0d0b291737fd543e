"""MLflow's webhook routes: the real mlflow client against a live server, the wire shapes, the
errors and permissions, and signed deliveries to a real receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from django.test import Client
from mlflow.exceptions import MlflowException
from standardwebhooks import Webhook

from accounts.actors import Actor
from accounts.tokens import token_create
from registry import services as registry_services
from registry.mlflow.rendering import millis
from registry.models import Event
from registry.permissions import Level
from tests.webhooks.receiver import Reply
from webhooks import crypto
from webhooks.choices import DeliveryState, Flavor, SubscriptionStatus
from webhooks.models import Delivery, Subscription
from webhooks.services import subscription_create

ROOT_PASSWORD = "root-password-1"
USER_PASSWORD = "plain-password-1"
SECRET = "mlflow-shared-secret-1"
API = "/api/2.0/mlflow/webhooks"
MV_CREATED = {"entity": "MODEL_VERSION", "action": "CREATED"}
ALIAS_CREATED = {"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}


def _basic(username: str, password: str) -> Client:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return Client(HTTP_AUTHORIZATION=f"Basic {raw}")


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser(
        username="root", password=ROOT_PASSWORD, email="root@example.com"
    )


@pytest.fixture
def plain(django_user_model):
    return django_user_model.objects.create_user(username="plain", password=USER_PASSWORD)


@pytest.fixture
def http(root) -> Client:
    return _basic("root", ROOT_PASSWORD)


@pytest.fixture
def http_plain(plain) -> Client:
    return _basic("plain", USER_PASSWORD)


@pytest.fixture
def hooks_ok(settings):
    """Webhook URLs on 127.0.0.1 pass the SSRF guard (no receiver needed for wire tests)."""
    settings.MODELGATE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def mlflow_client(monkeypatch, root, live_server):
    """The unmodified mlflow client, signed in as the superuser, no slow retries."""
    import mlflow
    from mlflow import MlflowClient

    if not hasattr(MlflowClient, "create_webhook"):
        pytest.skip(f"webhooks came with the MLflow 3 client; this is mlflow {mlflow.__version__}")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "root")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ROOT_PASSWORD)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    return MlflowClient(registry_uri=live_server.url, tracking_uri=live_server.url)


def _post(client: Client, path: str, body: dict) -> tuple[int, dict]:
    response = client.post(path, json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def _patch(client: Client, path: str, body: dict) -> tuple[int, dict]:
    response = client.patch(path, json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def _create(client: Client, **fields) -> dict:
    body = {"name": "deploy-hook", "url": "http://127.0.0.1:9/hook", "events": [MV_CREATED]}
    body.update(fields)
    status, answer = _post(client, API, body)
    assert status == 200, answer
    return answer["webhook"]


def _mlflow_signature(secret: str, headers: dict[str, str], body: bytes) -> str:
    signed = f"{headers['x-mlflow-delivery-id']}.{headers['x-mlflow-timestamp']}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _standard_verify(secret: str, received) -> dict:
    """Verify with the standardwebhooks library, as a receiver given a raw secret does."""
    key = "whsec_" + base64.b64encode(secret.encode()).decode()
    return Webhook(key).verify(received.body, received.headers)


def _state() -> tuple:
    return (
        list(Subscription.objects.values_list("id", "name", "url", "events", "status")),
        Event.objects.count(),
        Delivery.objects.count(),
    )


# --- the real mlflow client --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_mlflow_client_manages_webhooks(mlflow_client, receiver):
    created = mlflow_client.create_webhook(
        name="deploy-hook",
        url=receiver.url,
        events=["model_version.created", "model_version_alias.created"],
        description="Tell the deployer",
        secret=SECRET,
        status="ACTIVE",
    )
    stored = Subscription.objects.get()
    assert created.webhook_id == stored.id.hex
    assert created.name == "deploy-hook"
    assert created.url == receiver.url
    assert created.description == "Tell the deployer"
    assert [str(e) for e in created.events] == [
        "model_version.created",
        "model_version_alias.created",
    ]
    assert str(created.status) == "ACTIVE"
    assert created.secret is None
    assert created.creation_timestamp == millis(stored.created_at)
    assert created.last_updated_timestamp == millis(stored.updated_at)
    assert stored.flavor == Flavor.MLFLOW
    assert stored.events == ["model_version.created", "model_version_alias.created"]
    assert stored.model_id is None
    assert crypto.decrypt(stored.secret_encrypted) == SECRET

    fetched = mlflow_client.get_webhook(created.webhook_id)
    assert (fetched.name, fetched.url, [str(e) for e in fetched.events]) == (
        "deploy-hook",
        receiver.url,
        ["model_version.created", "model_version_alias.created"],
    )

    other = mlflow_client.create_webhook(
        name="second", url=receiver.url, events=["registered_model.created"]
    )
    listed = mlflow_client.list_webhooks()
    assert [w.webhook_id for w in listed] == [other.webhook_id, created.webhook_id]
    assert listed.token == ""  # the proto default: no next page
    first = mlflow_client.list_webhooks(max_results=1)
    assert [w.webhook_id for w in first] == [other.webhook_id]
    second = mlflow_client.list_webhooks(max_results=1, page_token=first.token)
    assert [w.webhook_id for w in second] == [created.webhook_id]
    assert second.token == ""

    updated = mlflow_client.update_webhook(
        created.webhook_id,
        name="deploy-hook-2",
        events=["model_version_tag.set"],
        status="DISABLED",
    )
    assert updated.name == "deploy-hook-2"
    assert [str(e) for e in updated.events] == ["model_version_tag.set"]
    assert str(updated.status) == "DISABLED"
    assert updated.description == "Tell the deployer"
    stored.refresh_from_db()
    assert stored.status == SubscriptionStatus.DISABLED
    assert stored.events == ["model_version_tag.set"]

    mlflow_client.delete_webhook(created.webhook_id)
    assert not Subscription.objects.filter(pk=stored.pk).exists()
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.get_webhook(created.webhook_id)
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert [w.webhook_id for w in mlflow_client.list_webhooks()] == [other.webhook_id]
    assert list(
        Event.objects.filter(type__startswith="webhook.").values_list("type", flat=True)
    ) == ["webhook.created", "webhook.created", "webhook.updated", "webhook.deleted"]
    assert SECRET not in json.dumps(list(Event.objects.values_list("before", "after")))


@pytest.mark.django_db(transaction=True)
def test_the_mlflow_client_tests_a_webhook(mlflow_client, receiver):
    from mlflow.entities.webhook import WebhookEvent

    hook = mlflow_client.create_webhook(
        name="t", url=receiver.url, events=["model_version.created"], secret=SECRET
    )
    result = mlflow_client.test_webhook(hook.webhook_id)
    assert (result.success, result.response_status, result.response_body) == (True, 200, "ok")
    assert result.error_message is None
    got = receiver.wait_for(1)[0]
    payload = json.loads(got.body)
    assert (payload["entity"], payload["action"]) == ("model_version", "created")
    assert payload["data"]["name"] == "example-model"
    assert got.headers["x-mlflow-signature"] == _mlflow_signature(SECRET, got.headers, got.body)
    assert _standard_verify(SECRET, got) == payload

    receiver.default = Reply(status=503, body=b"busy")
    result = mlflow_client.test_webhook(
        hook.webhook_id, event=WebhookEvent("model_version_alias", "created")
    )
    assert (result.success, result.response_status, result.response_body) == (False, 503, "busy")
    assert result.error_message is None
    got = receiver.wait_for(2)[1]
    payload = json.loads(got.body)
    assert (payload["entity"], payload["action"]) == ("model_version_alias", "created")
    assert payload["data"] == {"name": "example-model", "version": "1", "alias": "example-alias"}
    tests = Delivery.objects.filter(is_test=True).order_by("pk")
    assert [(d.event_type, d.state) for d in tests] == [
        ("model_version.created", DeliveryState.SUCCEEDED),
        ("model_version_alias.created", DeliveryState.FAILED),
    ]


@pytest.mark.django_db(transaction=True)
def test_registry_changes_reach_an_mlflow_webhook_signed(mlflow_client, receiver):
    mlflow_client.create_webhook(
        name="deployer",
        url=receiver.url,
        events=["model_version.created", "model_version_alias.created"],
        secret=SECRET,
    )
    mlflow_client.create_registered_model("fraud")
    mlflow_client.create_model_version("fraud", "s3://bucket/fraud/1", run_id=None)
    mlflow_client.set_registered_model_alias("fraud", "champion", "1")
    got = receiver.wait_for(2)
    assert len(got) == 2
    by_event = {(p["entity"], p["action"]): (r, p) for r in got for p in [json.loads(r.body)]}
    assert set(by_event) == {("model_version", "created"), ("model_version_alias", "created")}

    hit, payload = by_event[("model_version", "created")]
    assert payload["data"] == {
        "name": "fraud",
        "version": "1",
        "source": "s3://bucket/fraud/1",
        "run_id": None,
        "tags": {},
        "description": None,
    }
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["x-mlflow-delivery-id"] == hit.headers["webhook-id"]
    assert hit.headers["x-mlflow-timestamp"] == hit.headers["webhook-timestamp"]
    assert hit.headers["x-mlflow-signature"] == _mlflow_signature(SECRET, hit.headers, hit.body)
    assert _standard_verify(SECRET, hit) == payload
    assert "x-databricks-signature" not in hit.headers

    hit, payload = by_event[("model_version_alias", "created")]
    assert payload["data"] == {"name": "fraud", "alias": "champion", "version": "1"}
    assert hit.headers["x-mlflow-signature"] == _mlflow_signature(SECRET, hit.headers, hit.body)
    assert _standard_verify(SECRET, hit) == payload
    delivery = Delivery.objects.get(uid=hit.headers["x-mlflow-delivery-id"])
    assert (delivery.event_type, delivery.state, delivery.attempts) == (
        "model_version_alias.created",
        DeliveryState.SUCCEEDED,
        1,
    )


@pytest.mark.django_db(transaction=True)
def test_a_webhook_without_secret_is_delivered_unsigned(mlflow_client, receiver):
    mlflow_client.create_webhook(name="open", url=receiver.url, events=["registered_model.created"])
    mlflow_client.create_registered_model("fraud", description="Card fraud")
    hit = receiver.wait_for(1)[0]
    assert json.loads(hit.body)["data"] == {
        "name": "fraud",
        "tags": {},
        "description": "Card fraud",
    }
    assert "x-mlflow-signature" not in hit.headers
    assert "webhook-signature" not in hit.headers
    assert hit.headers["x-mlflow-delivery-id"] == hit.headers["webhook-id"]


@pytest.mark.django_db(transaction=True)
def test_a_plain_user_gets_permission_denied_from_the_client(monkeypatch, plain, live_server):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "plain")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", USER_PASSWORD)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(registry_uri=live_server.url, tracking_uri=live_server.url)
    with pytest.raises(MlflowException) as excinfo:
        client.create_webhook(
            name="x", url="https://hooks.example.com/", events=["model_version.created"]
        )
    assert excinfo.value.error_code == "PERMISSION_DENIED"
    assert list(client.list_webhooks()) == []
    assert Subscription.objects.count() == 0


# --- wire shapes -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_answers_the_webhook_message_exactly(http, hooks_ok):
    status, body = _post(
        http,
        API,
        {
            "name": "deploy-hook",
            "url": "http://127.0.0.1:9/hook",
            "events": [MV_CREATED, ALIAS_CREATED],
            "description": "Tell the deployer",
            "secret": SECRET,
            "status": "DISABLED",
        },
    )
    stored = Subscription.objects.get()
    assert status == 200
    assert body == {
        "webhook": {
            "webhook_id": stored.id.hex,
            "name": "deploy-hook",
            "description": "Tell the deployer",
            "url": "http://127.0.0.1:9/hook",
            "events": [MV_CREATED, ALIAS_CREATED],
            "status": "DISABLED",
            "creation_timestamp": millis(stored.created_at),
            "last_updated_timestamp": millis(stored.updated_at),
        }
    }
    assert stored.status == SubscriptionStatus.DISABLED
    assert stored.owner.username == "root"
    event = Event.objects.get(type="webhook.created")
    assert event.source == "mlflow"
    assert event.after["flavor"] == "mlflow"
    assert event.after["events"] == ["model_version.created", "model_version_alias.created"]


@pytest.mark.django_db
def test_enum_numbers_are_accepted_and_unset_fields_omitted(http, hooks_ok):
    hook = _create(
        http, events=[{"entity": 3, "action": 4}, {"entity": "model_version_tag", "action": 3}]
    )
    assert hook["events"] == [
        {"entity": "MODEL_VERSION_TAG", "action": "SET"},
        {"entity": "MODEL_VERSION_TAG", "action": "DELETED"},
    ]
    assert "description" not in hook
    assert hook["status"] == "ACTIVE"
    assert Subscription.objects.get().events == [
        "model_version_tag.set",
        "model_version_tag.deleted",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("prefix", ["/ajax-api/2.0/mlflow/", "/api/2.0/preview/mlflow/"])
def test_the_routes_answer_under_the_other_prefixes(http, hooks_ok, prefix):
    status, body = _post(
        http,
        prefix + "webhooks",
        {"name": "a", "url": "http://127.0.0.1:9/", "events": [MV_CREATED]},
    )
    assert status == 200
    webhook_id = body["webhook"]["webhook_id"]
    assert http.get(prefix + f"webhooks/{webhook_id}").json()["webhook"]["name"] == "a"
    assert http.get(prefix + "webhooks").json()["webhooks"][0]["webhook_id"] == webhook_id
    assert http.delete(prefix + f"webhooks/{webhook_id}").json() == {}


@pytest.mark.django_db
def test_patch_changes_what_is_given(http, hooks_ok):
    hook = _create(http, description="old", secret=SECRET)
    path = f"{API}/{hook['webhook_id']}"
    status, body = _patch(http, path, {"name": "", "url": "", "events": [], "description": ""})
    assert status == 200
    assert body["webhook"]["name"] == "deploy-hook"
    assert body["webhook"]["url"] == "http://127.0.0.1:9/hook"
    assert body["webhook"]["events"] == [MV_CREATED]
    assert "description" not in body["webhook"]

    status, body = _patch(
        http,
        path,
        {"url": "http://127.0.0.1:10/new", "secret": "another-secret-of-16", "status": "ACTIVE"},
    )
    assert status == 200
    assert body["webhook"]["url"] == "http://127.0.0.1:10/new"
    stored = Subscription.objects.get()
    assert crypto.decrypt(stored.secret_encrypted) == "another-secret-of-16"
    assert crypto.decrypt(stored.previous_secret_encrypted) == SECRET
    assert Event.objects.filter(type="webhook.updated").last().comment == "Secret rotated."


@pytest.mark.django_db
def test_a_test_mode_subscription_reads_as_disabled(http, root, hooks_ok):
    hook = _create(http)
    Subscription.objects.update(status=SubscriptionStatus.TEST_MODE)
    assert http.get(f"{API}/{hook['webhook_id']}").json()["webhook"]["status"] == "DISABLED"


@pytest.mark.django_db
def test_test_reports_a_receiver_that_cannot_be_reached(http, hooks_ok):
    hook = _create(http, url="http://127.0.0.1:1/closed")
    status, body = _post(http, f"{API}/{hook['webhook_id']}/test", {})
    assert status == 200
    assert body["result"]["success"] is False
    assert "response_status" not in body["result"]
    assert body["result"]["error_message"].startswith("ConnectError")


# --- lists -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_pages_newest_first_and_shows_only_mlflow_webhooks(http, root, hooks_ok):
    ids = [_create(http, name=f"h{n}")["webhook_id"] for n in range(3)]
    subscription_create(
        actor=Actor(user=root), url="http://127.0.0.1:9/native", events=["*"], name="native"
    )
    first = http.get(API, {"max_results": "2"}).json()
    assert [w["webhook_id"] for w in first["webhooks"]] == [ids[2], ids[1]]
    second = http.get(API, {"max_results": "2", "page_token": first["next_page_token"]}).json()
    assert [w["webhook_id"] for w in second["webhooks"]] == [ids[0]]
    assert "next_page_token" not in second
    everything = http.get(API).json()
    assert [w["name"] for w in everything["webhooks"]] == ["h2", "h1", "h0"]
    assert http.get(API, {"max_results": "0"}).json() == everything


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"max_results": "1001"}, "max_results must be between 1 and 1000."),
        ({"max_results": "-1"}, "max_results must be between 1 and 1000."),
        (
            {"max_results": "many"},
            "Invalid value 'many' for parameter 'max_results': expected an integer.",
        ),
        ({"page_token": "not-a-token"}, "Invalid page token 'not-a-token'."),
    ],
)
def test_bad_list_parameters_are_invalid(http, query, message):
    response = http.get(API, query)
    assert response.status_code == 400
    assert response.json() == {"error_code": "INVALID_PARAMETER_VALUE", "message": message}


@pytest.mark.django_db
def test_an_empty_list_is_an_empty_object(http):
    assert http.get(API).json() == {}


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": None}, "Missing value for required parameter 'name'."),
        (
            {"name": "-bad-"},
            "Webhook name '-bad-' is invalid. It must start and end with a letter or digit, be "
            "less than 63 characters long, and contain only letters, digits, dots (.), "
            "underscores (_), and hyphens (-).",
        ),
        ({"url": None}, "Missing value for required parameter 'url'."),
        ({"url": "ftp://example.com/x"}, "The URL must start with http:// or https://."),
        (
            {"url": "http://10.0.0.5/hook"},
            "The URL's host 10.0.0.5 is a private address; webhooks go to public hosts.",
        ),
        ({"events": None}, "Missing value for required parameter 'events'."),
        ({"events": []}, "Missing value for required parameter 'events'."),
        (
            {"events": [{"entity": "PROMPT", "action": "CREATED"}]},
            "Invalid value prompt.created in parameter 'events': Modelgate sends these webhook "
            "events: model_version.created, model_version_alias.created, "
            "model_version_alias.deleted, model_version_tag.deleted, model_version_tag.set, "
            "registered_model.created.",
        ),
        (
            {"events": [{"entity": "MODEL_VERSION", "action": "DELETED"}]},
            "Invalid value model_version.deleted in parameter 'events': Modelgate sends these "
            "webhook events: model_version.created, model_version_alias.created, "
            "model_version_alias.deleted, model_version_tag.deleted, model_version_tag.set, "
            "registered_model.created.",
        ),
        (
            {"events": [{"entity": "MODEL", "action": "CREATED"}]},
            "Invalid value {'entity': 'MODEL', 'action': 'CREATED'} for parameter 'events' "
            'supplied: expected {"entity": <WebhookEntity>, "action": <WebhookAction>} with enum '
            "names such as MODEL_VERSION and CREATED.",
        ),
        ({"events": "model_version.created"}, None),
        (
            {"status": "TEST_MODE"},
            "Invalid value 'TEST_MODE' for parameter 'status' supplied: expected ACTIVE or "
            "DISABLED.",
        ),
        (
            {"secret": "short"},
            "A secret is either whsec_ and the base64 of at least 24 bytes, or a string of at "
            "least 16 characters.",
        ),
    ],
)
def test_bad_input_is_invalid_and_changes_nothing(http, hooks_ok, change, message):
    body = {"name": "ok", "url": "http://127.0.0.1:9/", "events": [MV_CREATED]}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    before = _state()
    status, answer = _post(http, API, body)
    assert status == 400
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    if message is not None:
        assert answer["message"] == message
    assert _state() == before


@pytest.mark.django_db
def test_a_refused_patch_changes_nothing(http, hooks_ok):
    hook = _create(http, secret=SECRET)
    before = (_state(), list(Subscription.objects.values_list("updated_at", "secret_encrypted")))
    status, answer = _patch(http, f"{API}/{hook['webhook_id']}", {"name": "new", "secret": ""})
    assert status == 400
    assert answer == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "Invalid value '' for parameter 'secret': a webhook's secret cannot be "
        "removed; give a new one (at least 16 characters) to rotate it.",
    }
    status, answer = _patch(http, f"{API}/{hook['webhook_id']}", {"events": [{"entity": "X"}]})
    assert status == 400
    after = (_state(), list(Subscription.objects.values_list("updated_at", "secret_encrypted")))
    assert after == before


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "patch", "delete", "test"])
def test_unknown_ids_do_not_exist(http, root, hooks_ok, method):
    native = subscription_create(
        actor=Actor(user=root), url="http://127.0.0.1:9/native", events=["*"]
    ).subscription
    for webhook_id in ("0" * 32, "not-a-uuid", native.id.hex):
        path = f"{API}/{webhook_id}"
        if method == "get":
            response = http.get(path)
        elif method == "delete":
            response = http.delete(path)
        elif method == "patch":
            response = http.patch(path, json.dumps({"name": "x"}), content_type="application/json")
        else:
            response = http.post(path + "/test", "{}", content_type="application/json")
        assert response.status_code == 404
        assert response.json() == {
            "error_code": "RESOURCE_DOES_NOT_EXIST",
            "message": f"Webhook with ID {webhook_id} not found.",
        }
    assert Subscription.objects.get() == native


@pytest.mark.django_db
def test_only_superusers_manage_mlflow_webhooks(http, http_plain, plain, hooks_ok):
    hook = _create(http)
    path = f"{API}/{hook['webhook_id']}"
    # A model's manager is no registry-wide manager.
    model = registry_services.model_create(name="fraud", actor=Actor.system())
    registry_services.permissions_update(
        model=model, actor=Actor.system(), users={"plain": Level.CAN_MANAGE}, groups={}
    )
    before = _state()
    denied = {
        "error_code": "PERMISSION_DENIED",
        "message": "Registry-wide webhooks can only be managed by a superuser.",
    }
    attempts = [
        http_plain.post(
            API,
            json.dumps({"name": "x", "url": "http://127.0.0.1:9/", "events": [MV_CREATED]}),
            content_type="application/json",
        ),
        http_plain.get(path),
        http_plain.patch(path, json.dumps({"name": "x"}), content_type="application/json"),
        http_plain.delete(path),
        http_plain.post(path + "/test", "{}", content_type="application/json"),
        # Also for ids that do not exist: no existence oracle.
        http_plain.get(f"{API}/{'0' * 32}"),
    ]
    for response in attempts:
        assert response.status_code == 403
        assert response.json() == denied
    assert http_plain.get(API).json() == {}
    assert _state() == before


@pytest.mark.django_db
def test_a_read_only_token_reads_but_does_not_write(root, hooks_ok, http):
    hook = _create(http)
    path = f"{API}/{hook['webhook_id']}"
    issued = token_create(user=root, read_only=True)
    token = Client(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert token.get(path).json()["webhook"]["webhook_id"] == hook["webhook_id"]
    assert [w["webhook_id"] for w in token.get(API).json()["webhooks"]] == [hook["webhook_id"]]
    before = _state()
    response = token.patch(path, json.dumps({"name": "x"}), content_type="application/json")
    assert (response.status_code, response.json()["error_code"]) == (403, "PERMISSION_DENIED")
    response = token.post(path + "/test", "{}", content_type="application/json")
    assert (response.status_code, response.json()["error_code"]) == (403, "PERMISSION_DENIED")
    assert _state() == before


@pytest.mark.django_db
def test_anonymous_callers_are_unauthenticated(hooks_ok):
    anonymous = Client()
    assert anonymous.get(API).json()["error_code"] == "UNAUTHENTICATED"
    response = anonymous.post(
        API,
        json.dumps({"name": "x", "url": "http://127.0.0.1:9/", "events": [MV_CREATED]}),
        content_type="application/json",
    )
    assert response.status_code == 401
    assert Subscription.objects.count() == 0


@pytest.mark.django_db
def test_a_wrong_method_is_endpoint_not_found(http):
    response = http.put(API, "{}", content_type="application/json")
    assert response.status_code == 404
    assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND"
