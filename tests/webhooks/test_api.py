"""The native webhook API: subscriptions, secrets, permissions, tests, deliveries, redelivery."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from accounts.actors import Actor
from registry.models import Event
from registry.permissions import Level
from registry.services import permissions_update
from tests.factories import make_model, make_version
from tests.webhooks.receiver import Reply
from webhooks.choices import DeliveryState, SubscriptionStatus
from webhooks.models import Attempt, Delivery, Subscription

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user(username="owner", password="pw-owner-123")


@pytest.fixture
def model(owner):
    return make_model(Actor(user=owner), name="fraud")


def create(client: APIClient, **body):
    return client.post("/api/v1/webhooks/", body, format="json")


def test_a_superuser_creates_a_registry_wide_webhook_and_sees_the_secret_once(admin_api, receiver):
    response = create(admin_api, url=receiver.url, events=["model_version.created"])
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert body["events"] == ["model_version.created"]
    assert body["model"] is None
    assert body["status"] == "ACTIVE"
    assert body["flavor"] == "native"
    stored = Subscription.objects.get()
    assert body["id"] == stored.id.hex
    # Encrypted at rest: the secret's text appears nowhere in the row.
    assert body["secret"] not in stored.secret_encrypted
    assert body["secret"][6:] not in stored.secret_encrypted
    again = admin_api.get(f"/api/v1/webhooks/{body['id']}/").json()
    assert "secret" not in again
    assert again["url"] == receiver.url
    event = Event.objects.filter(type="webhook.created").get()
    assert event.after["url"] == receiver.url
    assert "secret" not in json.dumps(event.after)


def test_all_events_is_the_default_and_a_star(admin_api, receiver):
    assert create(admin_api, url=receiver.url).json()["events"] == ["*"]
    assert create(admin_api, url=receiver.url, events="*").json()["events"] == ["*"]


def test_registry_wide_webhooks_need_a_superuser(api, receiver):
    response = create(api, url=receiver.url, events=["*"])
    assert response.status_code == 403
    assert "superuser" in response.json()["message"]
    assert Subscription.objects.count() == 0
    assert not Event.objects.filter(type__startswith="webhook.").exists()


def test_model_webhooks_need_can_manage(model, owner, user, receiver):
    permissions_update(
        model=model, actor=Actor.system(), users={user.username: Level.CAN_EDIT}, groups={}
    )
    refused = create(client_for(user), url=receiver.url, events=["*"], model="fraud")
    assert refused.status_code == 403
    stranger = type(user).objects.create_user(username="stranger", password="pw-stranger-1")
    hidden = create(client_for(stranger), url=receiver.url, events=["*"], model="fraud")
    assert hidden.status_code == 404
    assert Subscription.objects.count() == 0
    allowed = create(client_for(owner), url=receiver.url, events=["*"], model="fraud")
    assert allowed.status_code == 201
    assert allowed.json()["model"] == "fraud"
    # The manager sees it; the CAN_EDIT holder gets 403 on it and an empty list.
    pk = allowed.json()["id"]
    assert client_for(user).get(f"/api/v1/webhooks/{pk}/").status_code == 403
    assert client_for(stranger).get(f"/api/v1/webhooks/{pk}/").status_code == 404
    assert client_for(user).get("/api/v1/webhooks/").json()["results"] == []
    assert [w["id"] for w in client_for(owner).get("/api/v1/webhooks/").json()["results"]] == [pk]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://127.0.0.1:9/x"}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https://user:pw@example.com/x"}, "url"),
        ({"url": "https://example.com/x", "events": ["model.exploded"]}, "events"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"url": "https://example.com/x", "secret": "short"}, "secret"),
        ({"url": "https://example.com/x", "headers": {"webhook-id": "x"}}, "headers"),
        ({"url": "https://example.com/x", "headers": {"bad name": "x"}}, "headers"),
        ({"url": "https://example.com/x", "status": "SLEEPING"}, "status"),
        ({"url": "https://example.com/x", "colour": "blue"}, "colour"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(admin_api, body, field):
    response = create(admin_api, **body)
    assert response.status_code == 400, response.json()
    assert field in response.json()["fields"]
    assert Subscription.objects.count() == 0
    assert not Event.objects.filter(type__startswith="webhook.").exists()


def test_a_new_subscription_hears_the_next_event_signed(admin_api, admin_user, receiver):
    secret = create(admin_api, url=receiver.url, events=["model_version.created"]).json()["secret"]
    actor = Actor(user=admin_user, source="api", request_id="r-42")
    model = make_model(actor, name="churn")
    make_version(actor, model, source="s3://m/1", run_id="run-1")
    (got,) = receiver.wait_for(1)
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["type"] == "model_version.created"
    data = payload["data"]
    assert data["model"]["name"] == "churn"
    assert data["version"] == 1
    assert data["after"]["source"] == "s3://m/1"
    assert data["after"]["run_id"] == "run-1"
    assert data["actor"] == {"name": "root", "token": None, "source": "api"}
    assert data["request_id"] == "r-42"
    assert payload["id"] == Event.objects.get(type="model_version.created").seq
    assert len(receiver.received) == 1  # not the model creation: not subscribed


def test_stage_and_alias_payloads_are_self_contained(admin_api, admin_user, receiver):
    create(
        admin_api,
        url=receiver.url,
        events=["model_version.stage_transitioned", "model_version_alias.set"],
    )
    actor = Actor(user=admin_user)
    model = make_model(actor, name="churn")
    v1 = make_version(actor, model)
    make_version(actor, model)
    from registry.choices import Stage
    from registry.services import alias_set, version_transition

    version_transition(version=v1, stage=Stage.STAGING, actor=actor, comment="ready")
    alias_set(model=model, alias="champion", version=1, actor=actor)
    alias_set(model=model, alias="champion", version=2, actor=actor)
    got = [json.loads(r.body) for r in receiver.wait_for(3)]
    assert [p["type"] for p in got] == [
        "model_version.stage_transitioned",
        "model_version_alias.set",
        "model_version_alias.set",
    ]
    assert got[0]["data"]["stage"] == {"from": "None", "to": "Staging"}
    assert got[0]["data"]["comment"] == "ready"
    assert got[1]["data"]["alias"] == {"name": "champion", "old_version": None, "new_version": 1}
    assert got[2]["data"]["alias"] == {"name": "champion", "old_version": 1, "new_version": 2}


def test_test_mode_and_disabled_subscriptions_hear_no_events(admin_api, admin_user, receiver):
    create(admin_api, url=receiver.url, status="TEST_MODE")
    create(admin_api, url=receiver.url, status="DISABLED")
    make_model(Actor(user=admin_user), name="quiet")
    assert Delivery.objects.count() == 0
    assert receiver.received == []


def test_a_subscription_hears_only_models_its_owner_can_still_read(
    model, owner, admin_user, user, receiver
):
    permissions_update(
        model=model, actor=Actor.system(), users={user.username: Level.CAN_MANAGE}, groups={}
    )
    created = create(
        client_for(user), url=receiver.url, model="fraud", events=["model_version.created"]
    )
    assert created.status_code == 201
    make_version(Actor(user=owner), model)
    assert len(receiver.wait_for(1)) == 1
    permissions_update(model=model, actor=Actor.system(), users={user.username: None}, groups={})
    make_version(Actor(user=owner), model)
    assert Delivery.objects.count() == 1
    assert len(receiver.received) == 1


def test_the_test_route_reports_the_receivers_answer(admin_api, receiver):
    pk = create(admin_api, url=receiver.url, events=["model_version.created"]).json()["id"]
    receiver.replies.append(Reply(status=503, body=b"down for maintenance"))
    failed = admin_api.post(f"/api/v1/webhooks/{pk}/test/", {}, format="json").json()
    assert failed["success"] is False
    assert failed["status_code"] == 503
    assert failed["body"] == "down for maintenance"
    passed = admin_api.post(f"/api/v1/webhooks/{pk}/test/", {}, format="json").json()
    assert passed["success"] is True
    assert passed["status_code"] == 200
    assert passed["body"] == "ok"
    payload = json.loads(receiver.received[-1].body)
    assert payload["type"] == "model_version.created"
    assert payload["data"]["test"] is True
    # Test sends are not retried: exactly the two attempts.
    assert Attempt.objects.count() == 2
    assert Delivery.objects.get(pk=failed["delivery"]).state == DeliveryState.FAILED


def test_rotation_signs_with_both_secrets_during_the_overlap(admin_api, admin_user, receiver):
    created = create(admin_api, url=receiver.url, events=["registered_model.created"]).json()
    rotated = admin_api.patch(
        f"/api/v1/webhooks/{created['id']}/", {"rotate_secret": True}, format="json"
    )
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != created["secret"]
    make_model(Actor(user=admin_user), name="rotated")
    (got,) = receiver.wait_for(1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(created["secret"]).verify(got.body, got.headers)
    Webhook(new_secret).verify(got.body, got.headers)
    event = Event.objects.filter(type="webhook.updated").get()
    assert event.comment == "Secret rotated."
    assert new_secret not in json.dumps([event.before, event.after])


def test_after_the_overlap_only_the_new_secret_signs(settings, admin_api, admin_user, receiver):
    settings.MODELGATE_WEBHOOK_SECRET_OVERLAP_SECONDS = 0
    created = create(admin_api, url=receiver.url, events=["registered_model.created"]).json()
    new_secret = admin_api.patch(
        f"/api/v1/webhooks/{created['id']}/", {"rotate_secret": True}, format="json"
    ).json()["secret"]
    make_model(Actor(user=admin_user), name="rotated")
    (got,) = receiver.wait_for(1)
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    Webhook(new_secret).verify(got.body, got.headers)


def test_patch_changes_fields_and_records_before_and_after(admin_api, receiver):
    pk = create(admin_api, url=receiver.url, name="ci").json()["id"]
    response = admin_api.patch(
        f"/api/v1/webhooks/{pk}/",
        {"name": "deploys", "events": ["model_version_alias.set"], "headers": {"X-Team": "ml"}},
        format="json",
    )
    body = response.json()
    assert response.status_code == 200, body
    assert "secret" not in body
    assert body["name"] == "deploys"
    assert body["events"] == ["model_version_alias.set"]
    assert body["headers"] == ["X-Team"]
    event = Event.objects.filter(type="webhook.updated").get()
    assert event.before["name"] == "ci"
    assert event.after["name"] == "deploys"
    assert event.after["headers"] == ["X-Team"]


def test_extra_headers_are_sent_but_never_shown(admin_api, admin_user, receiver):
    create(
        admin_api,
        url=receiver.url,
        events=["registered_model.created"],
        headers={"Authorization": "Bearer receiver-token"},
    )
    listed = admin_api.get("/api/v1/webhooks/").json()["results"][0]
    assert listed["headers"] == ["Authorization"]
    assert "receiver-token" not in json.dumps(listed)
    assert "receiver-token" not in Subscription.objects.get().headers_encrypted
    make_model(Actor(user=admin_user), name="authd")
    (got,) = receiver.wait_for(1)
    assert got.headers["authorization"] == "Bearer receiver-token"


def test_delete_removes_it_and_records_it(admin_api, receiver):
    pk = create(admin_api, url=receiver.url).json()["id"]
    assert admin_api.delete(f"/api/v1/webhooks/{pk}/").status_code == 204
    assert Subscription.objects.count() == 0
    assert admin_api.get(f"/api/v1/webhooks/{pk}/").status_code == 404
    assert Event.objects.filter(type="webhook.deleted").get().before["id"] == pk


def test_unknown_and_malformed_ids_are_404(admin_api):
    assert admin_api.get("/api/v1/webhooks/not-a-uuid/").status_code == 404
    assert admin_api.get(f"/api/v1/webhooks/{'0' * 32}/").status_code == 404
    assert admin_api.post("/api/v1/deliveries/xyz/redeliver/").status_code == 404


def test_deliveries_list_with_attempts_and_redeliver_keeps_the_webhook_id(
    admin_api, admin_user, receiver
):
    pk = create(admin_api, url=receiver.url, events=["registered_model.created"]).json()["id"]
    receiver.replies.append(Reply(status=400, body=b"bad"))
    make_model(Actor(user=admin_user), name="flaky")
    receiver.wait_for(1)
    (delivery,) = admin_api.get(f"/api/v1/webhooks/{pk}/deliveries/").json()["results"]
    assert delivery["state"] == "FAILED"
    assert delivery["last_status_code"] == 400
    assert [a["status_code"] for a in delivery["attempts"]] == [400]
    assert delivery["attempts"][0]["response_excerpt"] == "bad"
    response = admin_api.post(f"/api/v1/deliveries/{delivery['id']}/redeliver/")
    assert response.status_code == 202
    assert response.json()["state"] == "SUCCEEDED"
    assert [a["status_code"] for a in response.json()["attempts"]] == [400, 200]
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery["webhook_id"]
    assert first.body == second.body
    assert Event.objects.filter(type="webhook.redelivered").count() == 1
    filtered = admin_api.get(f"/api/v1/webhooks/{pk}/deliveries/?state=PENDING").json()
    assert filtered["results"] == []
    bad = admin_api.get(f"/api/v1/webhooks/{pk}/deliveries/?state=LOST")
    assert bad.status_code == 400


def test_replay_sends_again_what_failed_since_a_time(admin_api, admin_user, receiver):
    create(admin_api, url=receiver.url, events=["registered_model.created"])
    receiver.replies.extend([Reply(status=404), Reply(status=404)])
    actor = Actor(user=admin_user)
    make_model(actor, name="a")
    make_model(actor, name="b")
    receiver.wait_for(2)
    assert Delivery.objects.filter(state=DeliveryState.FAILED).count() == 2
    later = (timezone.now() + timedelta(minutes=1)).isoformat()
    none = admin_api.post("/api/v1/deliveries/replay/", {"since": later}, format="json")
    assert none.json() == {"redelivered": 0}
    earlier = (timezone.now() - timedelta(minutes=5)).isoformat()
    response = admin_api.post("/api/v1/deliveries/replay/", {"since": earlier}, format="json")
    assert response.status_code == 202
    assert response.json() == {"redelivered": 2}
    assert len(receiver.wait_for(4)) == 4
    assert Delivery.objects.filter(state=DeliveryState.SUCCEEDED).count() == 2


def test_a_renamed_model_keeps_its_webhooks(model, owner, receiver):
    from registry.services import model_rename

    pk = create(client_for(owner), url=receiver.url, model="fraud", events=["*"]).json()["id"]
    model_rename(model=model, new_name="fraud-v2", actor=Actor(user=owner))
    body = client_for(owner).get(f"/api/v1/webhooks/{pk}/").json()
    assert body["model"] == "fraud-v2"
    make_version(Actor(user=owner), model)
    types = [json.loads(r.body)["type"] for r in receiver.wait_for(3)]
    assert "model_version.created" in types


def test_a_410_disables_the_subscription_with_a_reason(admin_api, admin_user, receiver):
    pk = create(admin_api, url=receiver.url, events=["registered_model.created"]).json()["id"]
    receiver.default = Reply(status=410, body=b"gone")
    make_model(Actor(user=admin_user), name="gone")
    receiver.wait_for(1)
    body = admin_api.get(f"/api/v1/webhooks/{pk}/").json()
    assert body["status"] == SubscriptionStatus.DISABLED
    assert "410 Gone" in body["status_reason"]


def test_a_model_limited_token_cannot_manage_registry_wide_webhooks(admin_user, receiver):
    from accounts.tokens import token_create

    model = make_model(Actor(user=admin_user), name="scoped")
    issued = token_create(user=admin_user, models=[model])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    refused = create(client, url=receiver.url)
    assert refused.status_code == 403
    assert "limited to some models" in refused.json()["message"]
    assert create(client, url=receiver.url, model="scoped").status_code == 201
    assert Subscription.objects.count() == 1


def test_a_disabled_webhook_can_still_be_tested(admin_api, receiver):
    pk = create(admin_api, url=receiver.url, status="DISABLED").json()["id"]
    answer = admin_api.post(f"/api/v1/webhooks/{pk}/test/", {}, format="json").json()
    assert answer["success"] is True
    assert len(receiver.received) == 1


def test_secrets_unreadable_after_a_key_change_are_a_409_not_a_500(settings, admin_api, receiver):
    pk = create(admin_api, url=receiver.url, headers={"Authorization": "Bearer x"}).json()["id"]
    old_key = settings.MODELGATE_WEBHOOK_SECRET_KEY
    settings.MODELGATE_WEBHOOK_SECRET_KEY = "another-key"
    listed = admin_api.get(f"/api/v1/webhooks/{pk}/")
    assert listed.status_code == 409
    assert "MODELGATE_WEBHOOK_SECRET_KEY_FALLBACKS" in listed.json()["message"]
    # With the old key as a fallback everything reads again.
    settings.MODELGATE_WEBHOOK_SECRET_KEY_FALLBACKS = [old_key]
    assert admin_api.get(f"/api/v1/webhooks/{pk}/").json()["headers"] == ["Authorization"]
