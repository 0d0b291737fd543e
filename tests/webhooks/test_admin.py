"""Webhooks in the admin: subscriptions added, changed, rotated, tested and deleted through the
services (one history event each, source admin), the secret shown once, deliveries redelivered
and failures replayed, each for the staff member's grants."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone
from django.utils.formats import date_format
from standardwebhooks import Webhook

from accounts.actors import Actor
from config.errors import PermissionDenied
from registry.models import Event, RegisteredModel
from registry.permissions import Level
from registry.services import model_create, permissions_update
from tests.registry.test_admin import form_data
from tests.webhooks.receiver import Reply
from webhooks import crypto, services
from webhooks.choices import DeliveryState, SubscriptionStatus
from webhooks.models import Attempt, Delivery, Subscription
from webhooks.services import subscription_create, subscription_update

pytestmark = pytest.mark.django_db

SUBSCRIPTIONS = "/admin/webhooks/subscription/"
DELIVERIES = "/admin/webhooks/delivery/"
SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")
GONE = "Disabled at 2025-03-01 08:00 UTC: the receiver answered 410 Gone."


def page(subscription: Subscription, action: str = "change") -> str:
    return f"{SUBSCRIPTIONS}{subscription.pk}/{action}/"


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def messages_of(response) -> list[tuple[str, str]]:
    return [(message.tags, message.message) for message in get_messages(response.wsgi_request)]


def last_seq() -> int:
    return Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def events_since(seq: int) -> list[tuple[str, str, str, str]]:
    return list(
        Event.objects.filter(seq__gt=seq)
        .order_by("seq")
        .values_list("type", "source", "actor_name", "model_name")
    )


def text_of(response) -> str:
    """The page's text without its tags, whitespace runs collapsed, as a reader sees it."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


def listed(response) -> list[str]:
    assert response.status_code == 200, response.status_code
    return sorted(str(obj) for obj in response.context["cl"].result_list)


def add_data(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "deployer",
        "url": "http://127.0.0.1:9/hook",
        "events": ["model_version_alias.set"],
        "model": "",
        "description": "",
        "status": "ACTIVE",
        "headers_text": "",
        "verify_tls": "on",
    }
    data.update(changes)
    return data


def verified(secret: str, received) -> dict:
    return Webhook(secret).verify(received.body, received.headers)


@pytest.fixture(autouse=True)
def _local_receivers(settings):
    """Receivers on 127.0.0.1 (tests/webhooks/receiver.py) pass the SSRF guard in these tests."""
    settings.MODELGATE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def people(django_user_model):
    """Staff: Mia manages `fraud`, so does Gus through his group, Ed edits it, Gina manages
    every model (a registry-wide grant), Olga has no grant; Root is a superuser."""
    make = django_user_model.objects.create_user
    found = {
        name: make(username=name, password=f"{name}-password-1", is_staff=True)
        for name in ("mia", "gus", "ed", "gina", "olga")
    }
    Group.objects.create(name="risk").user_set.add(found["gus"])
    found["gina"].user_permissions.add(
        Permission.objects.get(content_type__app_label="registry", codename="can_manage")
    )
    found["root"] = django_user_model.objects.create_superuser(
        username="root", password="root-password-1", email="root@example.com"
    )
    return found


@pytest.fixture
def models(people) -> dict[str, RegisteredModel]:
    system = Actor.system()
    found = {name: model_create(name=name, actor=system) for name in ("fraud", "churn")}
    permissions_update(
        model=found["fraud"],
        actor=system,
        users={"mia": Level.CAN_MANAGE, "ed": Level.CAN_EDIT},
        groups={"risk": Level.CAN_MANAGE},
    )
    return found


@pytest.fixture
def subscriptions(people, models) -> dict[str, Subscription]:
    """A registry-wide subscription (root's), one on `fraud` (Mia's), one on `churn` (root's,
    disabled by the registry after a 410)."""
    root, mia = Actor(user=people["root"]), Actor(user=people["mia"])
    made = {
        "everything": subscription_create(
            actor=root, name="everything", url="http://127.0.0.1:9/all", events=["*"]
        ),
        "fraud-hook": subscription_create(
            actor=mia,
            name="fraud-hook",
            url="http://127.0.0.1:9/fraud",
            events=["model_version.created"],
            model=models["fraud"],
            headers={"Authorization": "Bearer fraud-token-123"},
        ),
        "churn-hook": subscription_create(
            actor=root,
            name="churn-hook",
            url="http://127.0.0.1:9/churn",
            events=["model_version_alias.set", "model_version.created"],
            model=models["churn"],
        ),
    }
    Subscription.objects.filter(name="churn-hook").update(
        status=SubscriptionStatus.DISABLED, status_reason=GONE
    )
    return {name: Subscription.objects.get(pk=c.subscription.pk) for name, c in made.items()}


# --- lists and pages ---------------------------------------------------------------------------


def test_the_admin_index_lists_subscriptions_and_deliveries_but_not_attempts(people):
    content = login(people["root"]).get("/admin/").content.decode()

    assert SUBSCRIPTIONS in content
    assert DELIVERIES in content
    assert "/admin/webhooks/attempt/" not in content


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("", ["churn-hook", "everything", "fraud-hook"]),
        ("?status__exact=DISABLED", ["churn-hook"]),
        ("?status__exact=ACTIVE", ["everything", "fraud-hook"]),
        ("?flavor__exact=native", ["churn-hook", "everything", "fraud-hook"]),
        ("?flavor__exact=mlflow", []),
        ("?q=fraud", ["fraud-hook"]),  # the name, the URL and the model name
        ("?q=127.0.0.1:9/all", ["everything"]),
        ("?q=churn", ["churn-hook"]),
    ],
)
def test_the_subscription_list_filters_and_searches(people, subscriptions, query, names):
    assert listed(login(people["root"]).get(SUBSCRIPTIONS + query)) == names


def test_the_subscription_list_shows_each_column(people, subscriptions):
    churn = subscriptions["churn-hook"]
    failing_since = datetime(2025, 2, 24, 8, 0, tzinfo=UTC)
    Subscription.objects.filter(pk=churn.pk).update(failing_since=failing_since)

    response = login(people["root"]).get(SUBSCRIPTIONS + "?q=churn")

    row = response.content.decode().split("<tbody>")[1].split("</tr>")[0]
    cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.S)
    assert [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in cells[1:]] == [
        "churn-hook http://127.0.0.1:9/churn",
        "Modelgate",
        "churn",
        "model_version_alias.set, model_version.created",
        f"DISABLED: {GONE}",
        "Feb. 24, 2025, 8 a.m.",
        "root",
        date_format(timezone.localtime(churn.created_at), "DATETIME_FORMAT"),
    ]


def test_the_change_page_shows_header_names_and_no_secret_or_header_value(people, subscriptions):
    fraud = subscriptions["fraud-hook"]
    secret = crypto.decrypt(fraud.secret_encrypted)

    response = login(people["root"]).get(page(fraud))

    content = response.content.decode()
    assert response.status_code == 200
    assert '<div class="readonly">Authorization</div>' in content
    assert "fraud-token-123" not in content
    assert secret not in content
    assert SECRET.search(content) is None
    assert "Set (shown only when it was made; rotate it to get a new one)." in content
    for slug in ("rotate", "test", "replay"):
        assert f'href="{page(fraud, slug)}" id="{slug}-link"' in content


def test_the_change_page_shows_why_the_registry_disabled_it(people, subscriptions):
    response = login(people["root"]).get(page(subscriptions["churn-hook"]))

    assert f'<div class="readonly">{GONE}</div>' in response.content.decode()


# --- who sees what ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "names", "may_add"),
    [
        ("root", ["churn-hook", "everything", "fraud-hook"], True),
        ("mia", ["fraud-hook"], True),  # CAN_MANAGE on fraud
        ("gus", ["fraud-hook"], True),  # the same through a group
        ("gina", ["churn-hook", "fraud-hook"], True),  # every model, not registry-wide ones
        ("ed", [], False),  # CAN_EDIT is not enough
        ("olga", [], False),
    ],
)
def test_staff_see_the_subscriptions_they_manage(people, subscriptions, who, names, may_add):
    client = login(people[who])

    assert listed(client.get(SUBSCRIPTIONS)) == names
    assert client.get(SUBSCRIPTIONS + "add/").status_code == (200 if may_add else 403)


@pytest.mark.parametrize("action", ["change", "delete", "rotate", "test", "replay"])
def test_a_subscription_the_staff_member_does_not_manage_does_not_exist_for_them(
    people, subscriptions, action
):
    everything = subscriptions["everything"]
    before = (Subscription.objects.count(), last_seq(), everything.secret_encrypted)

    for method in ("get", "post"):
        response = getattr(login(people["mia"]), method)(page(everything, action))

        assert response.status_code == 302
        assert response.url == "/admin/"
        assert messages_of(response) == [
            (
                "warning",
                f"subscription with ID “{everything.pk}” doesn’t exist. Perhaps it was deleted?",  # noqa: RUF001
            )
        ]
    everything.refresh_from_db()
    assert (Subscription.objects.count(), last_seq(), everything.secret_encrypted) == before


def test_a_non_staff_user_is_sent_to_the_login_page(django_user_model, subscriptions):
    user = django_user_model.objects.create_user(username="pat", password="pat-password-1")

    response = login(user).get(SUBSCRIPTIONS)

    assert response.status_code == 302
    assert response.url == f"/admin/login/?next={SUBSCRIPTIONS}"


# --- add -------------------------------------------------------------------------------------


def test_adding_shows_the_secret_once_and_stores_it_encrypted(people, models):
    client = login(people["root"])
    seq = last_seq()

    response = client.post(SUBSCRIPTIONS + "add/", add_data(description="the deploy bot"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    created = Subscription.objects.get()
    assert response.url == SUBSCRIPTIONS
    [(tags, shown), (_, added)] = messages_of(response)
    secret = SECRET.search(shown).group()
    assert tags == "warning"
    assert shown == (
        f"Secret of deployer: {secret} — copy it now, it will not be shown again. "
        "Receivers verify the webhook-signature header with it."
    )
    assert (
        added
        == f'The subscription “<a href="{page(created)}">deployer</a>” was added successfully.'
    )
    # Encrypted at rest: neither the secret nor its key material is in the row.
    row = Subscription.objects.filter(pk=created.pk).values()[0]
    assert not [field for field, value in row.items() if secret[6:] in str(value)]
    assert crypto.decrypt(created.secret_encrypted) == secret
    assert (created.url, created.events, created.model_id, created.status, created.owner) == (
        "http://127.0.0.1:9/hook",
        ["model_version_alias.set"],
        None,
        "ACTIVE",
        people["root"],
    )
    assert (created.description, created.verify_tls, created.headers_encrypted) == (
        "the deploy bot",
        True,
        "",
    )
    # One event, from the admin, with the request's id and address, and no secret in it.
    assert events_since(seq) == [("webhook.created", "admin", "root", "")]
    event = Event.objects.get(seq=seq + 1)
    assert (event.request_id, event.client_ip) == (response["X-Request-ID"], "127.0.0.1")
    assert event.after["id"] == created.id.hex
    assert secret[6:] not in json.dumps([event.before, event.after])
    # Shown on the next page, then never again.
    assert secret in client.get(response.url).content.decode()
    assert secret not in client.get(SUBSCRIPTIONS).content.decode()
    assert secret not in client.get(page(created)).content.decode()


def test_adding_with_a_model_and_headers_keeps_the_header_values_encrypted(people, models):
    seq = last_seq()

    response = login(people["mia"]).post(
        SUBSCRIPTIONS + "add/",
        add_data(
            model="fraud",
            events=["model_version.created", "model_version_alias.set"],
            headers_text="Authorization: Bearer s3cr3t-value\r\n\r\nX-Team:  risk \r\n",
            verify_tls="",
            status="TEST_MODE",
            _continue="1",
        ),
    )

    created = Subscription.objects.get()
    assert response.status_code == 302
    assert response.url == page(created)
    assert crypto.decrypt_headers(created.headers_encrypted) == {
        "Authorization": "Bearer s3cr3t-value",
        "X-Team": "risk",
    }
    assert "s3cr3t-value" not in created.headers_encrypted
    assert (created.model_id, created.model_name, created.owner, created.status) == (
        models["fraud"].pk,
        "fraud",
        people["mia"],
        "TEST_MODE",
    )
    assert (created.events, created.verify_tls) == (
        ["model_version.created", "model_version_alias.set"],
        False,
    )
    assert events_since(seq) == [("webhook.created", "admin", "mia", "fraud")]
    assert Event.objects.get(seq=seq + 1).after["headers"] == ["Authorization", "X-Team"]
    content = login(people["mia"]).get(page(created)).content.decode()
    assert '<div class="readonly">Authorization, X-Team</div>' in content
    assert "s3cr3t-value" not in content


@pytest.mark.parametrize(
    ("who", "changes", "field", "error"),
    [
        (
            "mia",
            {},
            "model",
            "Registry-wide webhooks can only be managed by a superuser.",
        ),
        ("mia", {"model": "churn"}, "model", "Registered Model with name=churn not found"),
        ("root", {"model": "nope"}, "model", "Registered Model with name=nope not found"),
        (
            "root",
            {"url": "http://10.1.2.3/hook"},
            "url",
            "The URL's host 10.1.2.3 is a private address; webhooks go to public hosts.",
        ),
        (
            "root",
            {"url": "ftp://127.0.0.1/hook"},
            "url",
            "The URL must start with http:// or https://.",
        ),
        ("root", {"events": []}, "events", "This field is required."),
        (
            "root",
            {"events": ["model.exploded"]},
            "events",
            "Select a valid choice. model.exploded is not one of the available choices.",
        ),
        (
            "root",
            {"headers_text": "Authorization Bearer x"},
            "headers_text",
            "Line 1 is not “Name: value”.",
        ),
        (
            "root",
            {"headers_text": "webhook-id: 1"},
            "headers_text",
            "The header 'webhook-id' is set by the registry.",
        ),
        (
            "root",
            {"headers_text": "X-A: 1\nx-a: 2"},
            "headers_text",
            "The header “x-a” is given twice.",
        ),
    ],
)
def test_a_refused_add_is_a_form_error_and_changes_nothing(
    people, models, who, changes, field, error
):
    seq = last_seq()

    response = login(people[who]).post(SUBSCRIPTIONS + "add/", add_data(**changes))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {field: [error]}
    assert Subscription.objects.count() == 0
    assert last_seq() == seq


# --- change ----------------------------------------------------------------------------------


def test_changing_goes_through_the_service_with_one_event(people, subscriptions):
    fraud = subscriptions["fraud-hook"]
    client = login(people["mia"])
    seq = last_seq()
    data = form_data(
        client.get(page(fraud)),
        "subscription_form",
        name="fraud-deployer",
        url="http://127.0.0.1:9/fraud-v2",
        headers_text="X-Team: risk",
    )
    data["events"] = ["model_version.created", "model_version.deleted"]

    response = client.post(page(fraud), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    fraud.refresh_from_db()
    assert (fraud.name, fraud.url, fraud.events) == (
        "fraud-deployer",
        "http://127.0.0.1:9/fraud-v2",
        ["model_version.created", "model_version.deleted"],
    )
    assert crypto.decrypt_headers(fraud.headers_encrypted) == {"X-Team": "risk"}
    assert events_since(seq) == [("webhook.updated", "admin", "mia", "fraud")]
    event = Event.objects.get(seq=seq + 1)
    assert (event.before["name"], event.after["name"]) == ("fraud-hook", "fraud-deployer")
    assert (event.before["headers"], event.after["headers"]) == (["Authorization"], ["X-Team"])
    assert event.request_id == response["X-Request-ID"]


def test_saving_unchanged_records_nothing_and_keeps_the_headers(people, subscriptions):
    fraud = subscriptions["fraud-hook"]
    client = login(people["root"])
    seq = last_seq()
    data = form_data(client.get(page(fraud)), "subscription_form")
    data["events"] = ["model_version.created"]

    response = client.post(page(fraud), data)

    assert response.status_code == 302
    assert last_seq() == seq
    fraud.refresh_from_db()
    assert crypto.decrypt_headers(fraud.headers_encrypted) == {
        "Authorization": "Bearer fraud-token-123"
    }


def test_removing_the_headers_and_reactivating_clears_the_registrys_reason(people, subscriptions):
    churn = subscriptions["churn-hook"]
    subscription_update(subscription=churn, actor=Actor.system(), headers={"X-Old": "1"})
    client = login(people["root"])
    data = form_data(
        client.get(page(churn)), "subscription_form", status="ACTIVE", clear_headers="on"
    )
    data["events"] = ["model_version_alias.set", "model_version.created"]
    seq = last_seq()

    response = client.post(page(churn), data)

    assert response.status_code == 302
    churn.refresh_from_db()
    assert (churn.status, churn.status_reason, churn.headers_encrypted) == ("ACTIVE", "", "")
    assert events_since(seq) == [("webhook.updated", "admin", "root", "churn")]
    event = Event.objects.get(seq=seq + 1)
    assert (event.before["status"], event.after["status"]) == ("DISABLED", "ACTIVE")
    assert (event.before["headers"], event.after["headers"]) == (["X-Old"], [])


def test_a_refused_change_is_a_form_error_and_changes_nothing(people, subscriptions):
    fraud = subscriptions["fraud-hook"]
    client = login(people["mia"])
    seq = last_seq()
    data = form_data(client.get(page(fraud)), "subscription_form", url="http://169.254.169.254/")
    data["events"] = ["model_version.created"]

    response = client.post(page(fraud), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "url": [
            "The URL's host 169.254.169.254 is a cloud metadata address; webhooks go to "
            "public hosts."
        ]
    }
    fraud.refresh_from_db()
    assert fraud.url == "http://127.0.0.1:9/fraud"
    assert last_seq() == seq


def test_an_mlflow_subscription_is_changed_in_its_own_vocabulary(people, models):
    made = subscription_create(
        actor=Actor.system(),
        flavor="mlflow",
        url="http://127.0.0.1:9/mlflow",
        events=["model_version.created"],
        model=models["fraud"],
        secret="an-mlflow-secret-of-some-length",
    )
    client = login(people["mia"])
    response = client.get(page(made.subscription))
    choices = response.context["adminform"].form.fields["events"].choices
    assert [value for value, _ in choices] == [
        "model_version.created",
        "model_version_alias.created",
        "model_version_alias.deleted",
        "model_version_tag.deleted",
        "model_version_tag.set",
        "registered_model.created",
    ]
    data = form_data(response, "subscription_form")
    data["events"] = ["model_version_alias.created"]
    seq = last_seq()

    saved = client.post(page(made.subscription), data)

    assert saved.status_code == 302
    assert Subscription.objects.get().events == ["model_version_alias.created"]
    assert events_since(seq) == [("webhook.updated", "admin", "mia", "fraud")]


# --- rotate ----------------------------------------------------------------------------------


def test_rotating_shows_the_new_secret_once_and_keeps_the_old_one_signing(people, subscriptions):
    fraud = subscriptions["fraud-hook"]
    old_encrypted = fraud.secret_encrypted
    old = crypto.decrypt(old_encrypted)
    client = login(people["mia"])
    seq = last_seq()

    confirmation = client.get(page(fraud, "rotate"))
    assert confirmation.status_code == 200
    assert "The current one keeps signing beside it for 24 hours" in text_of(confirmation)
    assert last_seq() == seq
    response = client.post(page(fraud, "rotate"))

    assert response.status_code == 302
    assert response.url == page(fraud)
    [(tags, shown)] = messages_of(response)
    secret = SECRET.search(shown).group()
    assert tags == "warning"
    assert shown == (
        f"New secret of fraud-hook: {secret} — copy it now, it will not be shown again. "
        "Receivers verify the webhook-signature header with it."
    )
    fraud.refresh_from_db()
    assert secret != old
    assert crypto.decrypt(fraud.secret_encrypted) == secret
    assert fraud.previous_secret_encrypted == old_encrypted
    assert secret[6:] not in fraud.secret_encrypted
    assert events_since(seq) == [("webhook.updated", "admin", "mia", "fraud")]
    event = Event.objects.get(seq=seq + 1)
    assert event.comment == "Secret rotated."
    assert secret[6:] not in json.dumps([event.before, event.after])
    assert secret in client.get(response.url).content.decode()
    later = client.get(page(fraud)).content.decode()
    assert secret not in later
    assert "The previous secret also signs until" in later


# --- test events -----------------------------------------------------------------------------


def test_sending_a_test_event_shows_the_receivers_answer(people, subscriptions, receiver):
    fraud = subscriptions["fraud-hook"]
    subscription_update(subscription=fraud, actor=Actor.system(), url=receiver.url)
    receiver.default = Reply(201, b'{"accepted": true, "queue": "deploys"}')
    client = login(people["mia"])
    seq = last_seq()

    assert client.get(page(fraud, "test")).status_code == 200
    response = client.post(page(fraud, "test"), {"event": ""})

    delivery = Delivery.objects.get(subscription=fraud)
    assert response.status_code == 302
    assert messages_of(response) == [
        (
            "success",
            f"Test event model_version.created (webhook-id {delivery.uid}): the receiver "
            'answered 201, its response began: {"accepted": true, "queue": "deploys"}',
        )
    ]
    [got] = receiver.received
    assert got.headers["webhook-id"] == str(delivery.uid)
    assert got.headers["authorization"] == "Bearer fraud-token-123"
    payload = verified(crypto.decrypt(fraud.secret_encrypted), got)
    assert (payload["type"], payload["data"]["test"]) == ("model_version.created", True)
    assert (delivery.is_test, delivery.state, delivery.attempts) == (True, "SUCCEEDED", 1)
    assert last_seq() == seq  # a test changes nothing in the registry: no history event


def test_a_test_event_the_receiver_refuses_is_an_error_with_its_answer(
    people, subscriptions, receiver
):
    everything = subscriptions["everything"]
    subscription_update(subscription=everything, actor=Actor.system(), url=receiver.url)
    receiver.default = Reply(503, b"maintenance until 10:00" + b"." * 400)

    response = login(people["root"]).post(
        page(everything, "test"), {"event": "model_version_alias.set"}
    )

    delivery = Delivery.objects.get(subscription=everything)
    assert messages_of(response) == [
        (
            "error",
            f"Test event model_version_alias.set (webhook-id {delivery.uid}): the receiver "
            "answered 503, its response began: maintenance until 10:00" + "." * 177,
        )
    ]
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("FAILED", 1, 503)


def test_a_test_event_goes_out_even_to_a_disabled_subscription(people, subscriptions, receiver):
    """A test send is asked for by a person: it is sent whatever the status (as MLflow does)."""
    churn = subscriptions["churn-hook"]
    Subscription.objects.filter(pk=churn.pk).update(url=receiver.url)

    response = login(people["root"]).post(page(churn, "test"), {"event": ""})

    delivery = Delivery.objects.get(subscription=churn)
    [(tags, text)] = messages_of(response)
    assert tags == "success"
    assert f"(webhook-id {delivery.uid})" in text
    assert len(receiver.received) == 1
    assert receiver.received[0].headers["webhook-id"] == str(delivery.uid)


def test_a_test_event_nobody_answers_says_why(people, subscriptions):
    response = login(people["root"]).post(page(subscriptions["everything"], "test"), {})

    [(tags, text)] = messages_of(response)
    delivery = Delivery.objects.get()
    assert tags == "error"
    assert text.startswith(f"Test event webhook.test (webhook-id {delivery.uid}) got no answer: ")
    assert text.endswith(delivery.attempt_set.get().error)


# --- delete ----------------------------------------------------------------------------------


def test_deleting_goes_through_the_service_with_one_event(people, subscriptions):
    fraud = subscriptions["fraud-hook"]
    client = login(people["mia"])
    Delivery.objects.create(subscription=fraud, event_type="model_version.created", body="{}")

    confirmation = client.get(page(fraud, "delete"))
    assert confirmation.status_code == 200
    text = text_of(confirmation)
    assert "Summary Subscriptions: 1 Deliveries: 1 Attempts: 0" in text
    assert (
        "Objects Subscription: fraud-hook 1 deliveries and their attempts No, take me back" in text
    )
    seq = last_seq()
    response = client.post(page(fraud, "delete"), {"post": "yes"})

    assert response.status_code == 302
    assert not Subscription.objects.filter(pk=fraud.pk).exists()
    assert Delivery.objects.count() == 0
    assert events_since(seq) == [("webhook.deleted", "admin", "mia", "fraud")]
    assert Event.objects.get(seq=seq + 1).request_id == response["X-Request-ID"]


@pytest.mark.parametrize("how", ["page", "bulk"])
def test_a_deletion_the_service_refuses_is_a_message_not_a_500(
    people, subscriptions, monkeypatch, how
):
    fraud = subscriptions["fraud-hook"]

    def refuse(**kwargs):
        raise PermissionDenied("CAN_MANAGE on registered model 'fraud' is needed for this.")

    monkeypatch.setattr(services, "subscription_delete", refuse)
    seq = last_seq()
    client = login(people["mia"])

    if how == "page":
        response = client.post(page(fraud, "delete"), {"post": "yes"})
    else:
        response = client.post(
            SUBSCRIPTIONS,
            {"action": "delete_selected", "_selected_action": [fraud.pk], "post": "yes"},
        )

    assert response.status_code == 302
    text = "CAN_MANAGE on registered model 'fraud' is needed for this."
    assert ("error", text if how == "page" else f"fraud-hook: {text}") in messages_of(response)
    assert Subscription.objects.filter(pk=fraud.pk).exists()
    assert last_seq() == seq


def test_bulk_deleting_records_one_event_per_subscription(people, subscriptions):
    seq = last_seq()
    picked = [subscriptions["everything"].pk, subscriptions["churn-hook"].pk]

    response = login(people["root"]).post(
        SUBSCRIPTIONS,
        {"action": "delete_selected", "_selected_action": picked, "post": "yes"},
    )

    assert response.status_code == 302
    assert list(Subscription.objects.values_list("name", flat=True)) == ["fraud-hook"]
    assert sorted(events_since(seq)) == [
        ("webhook.deleted", "admin", "root", ""),
        ("webhook.deleted", "admin", "root", "churn"),
    ]


# --- deliveries --------------------------------------------------------------------------------


@pytest.fixture
def failed(people, models, subscriptions, receiver, django_capture_on_commit_callbacks):
    """Mia's fraud hook points at the receiver, which answers 400 to version 1's creation: a
    FAILED delivery with one attempt. The registry-wide one is disabled, so only hers hears."""
    fraud = subscriptions["fraud-hook"]
    system = Actor.system()
    subscription_update(subscription=fraud, actor=system, url=receiver.url)
    subscription_update(subscription=subscriptions["everything"], actor=system, status="DISABLED")
    receiver.replies = [Reply(400, b'{"error": "unknown model"}')]
    with django_capture_on_commit_callbacks(execute=True):
        from registry.services import version_create

        version_create(model=models["fraud"], source="s3://fraud/1", actor=system)
    delivery = Delivery.objects.get(subscription=fraud)
    assert (delivery.state, delivery.attempts) == (DeliveryState.FAILED, 1)
    return delivery


def test_the_delivery_list_filters_and_limits_to_what_the_staff_member_manages(
    people, subscriptions, failed
):
    test = Delivery.objects.create(
        subscription=subscriptions["churn-hook"], event_type="webhook.test", body="{}", is_test=True
    )
    root, mia = login(people["root"]), login(people["mia"])

    def pks(client, query=""):
        response = client.get(DELIVERIES + query)
        assert response.status_code == 200
        return sorted(d.pk for d in response.context["cl"].result_list)

    assert pks(root) == sorted([failed.pk, test.pk])
    assert pks(mia) == [failed.pk]
    assert pks(login(people["ed"])) == []
    assert pks(root, "?state__exact=FAILED") == [failed.pk]
    assert pks(root, "?state__exact=PENDING") == [test.pk]
    assert pks(root, "?subscription__flavor__exact=native") == sorted([failed.pk, test.pk])
    assert pks(root, "?subscription__flavor__exact=databricks") == []
    assert pks(root, f"?subscription={subscriptions['churn-hook'].pk}") == [test.pk]
    assert pks(root, f"?q={failed.uid}") == [failed.pk]
    assert pks(root, "?q=webhook.test") == [test.pk]
    assert pks(mia, f"?q={test.uid}") == []
    assert mia.get(f"{DELIVERIES}{test.pk}/change/").status_code == 302


def test_the_delivery_page_shows_the_attempts_and_the_body_pretty_printed(
    people, subscriptions, failed
):
    response = login(people["mia"]).get(f"{DELIVERIES}{failed.pk}/change/")

    content = response.content.decode()
    assert response.status_code == 200
    body = json.dumps(json.loads(failed.body), indent=2).replace('"', "&quot;")
    assert f'<pre class="webhook-body">{body}</pre>' in content
    assert str(failed.uid) in content
    attempt = Attempt.objects.get(delivery=failed)
    inline = content.split('id="attempt_set-group"')[1].split("</table>")[0]
    started = date_format(timezone.localtime(attempt.started_at), "DATETIME_FORMAT")
    assert " ".join(re.sub(r"<[^>]+>", " ", inline).split()).endswith(
        "Attempts Number Started at Duration Status code Error Response excerpt "
        f"attempt 1 of delivery {failed.pk} 1 {started} {attempt.duration_ms} ms 400 - "
        "{&quot;error&quot;: &quot;unknown model&quot;}"
    )
    assert 'name="_save"' not in content  # read-only
    # Its Redeliver button runs the list's action on this delivery alone.
    form = form_data(response, "redeliver-form")
    assert form == {
        "csrfmiddlewaretoken": form["csrfmiddlewaretoken"],
        "action": "redeliver_selected",
        "_selected_action": str(failed.pk),
    }
    assert f'action="{DELIVERIES}" id="redeliver-form"' in content


def test_a_pending_or_test_delivery_has_no_redeliver_button(people, subscriptions):
    fraud = subscriptions["fraud-hook"]
    pending = Delivery.objects.create(subscription=fraud, event_type="x", body="{}")
    test = Delivery.objects.create(
        subscription=fraud, event_type="x", body="not json", is_test=True, state="FAILED"
    )
    client = login(people["mia"])

    for delivery in (pending, test):
        response = client.get(f"{DELIVERIES}{delivery.pk}/change/")
        assert response.status_code == 200
        assert "redeliver-form" not in response.content.decode()
    assert '<pre class="webhook-body">not json</pre>' in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_redeliver_sends_again_with_the_same_webhook_id_and_one_event(
    people, models, subscriptions, receiver, failed
):
    client = login(people["mia"])
    seq = last_seq()

    response = client.post(
        DELIVERIES, {"action": "redeliver_selected", "_selected_action": [failed.pk]}
    )

    assert response.status_code == 302
    assert messages_of(response) == [
        ("success", "Redelivering 1 deliveries with their webhook-id and body unchanged.")
    ]
    first, again = receiver.wait_for(2)
    assert again.headers["webhook-id"] == first.headers["webhook-id"] == str(failed.uid)
    assert again.body == first.body
    failed.refresh_from_db()
    assert (failed.state, failed.attempts, failed.last_status_code) == ("SUCCEEDED", 2, 200)
    assert events_since(seq) == [("webhook.redelivered", "admin", "mia", "fraud")]
    event = Event.objects.get(seq=seq + 1)
    assert event.after == {
        "subscription": subscriptions["fraud-hook"].id.hex,
        "deliveries": [failed.pk],
    }
    assert (event.request_id, event.client_ip) == (response["X-Request-ID"], "127.0.0.1")


@pytest.mark.django_db(transaction=True)
def test_redeliver_leaves_pending_and_test_deliveries_alone(people, subscriptions, receiver):
    fraud = subscriptions["fraud-hook"]
    pending = Delivery.objects.create(subscription=fraud, event_type="x", body="{}")
    test = Delivery.objects.create(
        subscription=fraud, event_type="x", body="{}", is_test=True, state="FAILED"
    )
    seq = last_seq()

    response = login(people["root"]).post(
        DELIVERIES, {"action": "redeliver_selected", "_selected_action": [pending.pk, test.pk]}
    )

    assert messages_of(response) == [
        (
            "warning",
            "Redelivering 0 deliveries with their webhook-id and body unchanged. Left as they "
            f"are (still pending, or test deliveries): #{pending.pk}, #{test.pk}.",
        )
    ]
    assert last_seq() == seq
    assert receiver.received == []


@pytest.mark.django_db(transaction=True)
def test_replaying_the_failures_since_a_time_resends_only_those(
    people, models, subscriptions, receiver, failed
):
    fraud = subscriptions["fraud-hook"]
    old = Delivery.objects.create(
        subscription=fraud, event_type="model_version.created", body="{}", state="FAILED"
    )
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    cancelled = Delivery.objects.create(
        subscription=fraud, event_type="model_version.created", body="{}", state="CANCELLED"
    )
    since = timezone.now() - timedelta(hours=1)
    client = login(people["mia"])

    confirmation = client.get(page(fraud, "replay"))
    assert confirmation.status_code == 200
    assert '<span id="failed-count">2 such deliveries since the time below.</span>' in (
        confirmation.content.decode()
    )
    seq = last_seq()
    response = client.post(page(fraud, "replay"), {"since": since.strftime("%Y-%m-%d %H:%M:%S")})

    assert response.status_code == 302
    when = since.strftime("%Y-%m-%d %H:%M UTC")
    assert messages_of(response) == [
        ("success", f"Replaying 2 failed or cancelled deliveries since {when}.")
    ]
    got = receiver.wait_for(3)
    assert sorted(r.headers["webhook-id"] for r in got[1:]) == sorted(
        [str(failed.uid), str(cancelled.uid)]
    )
    assert Delivery.objects.get(pk=old.pk).state == "FAILED"
    assert events_since(seq) == [("webhook.redelivered", "admin", "mia", "fraud")]
    event = Event.objects.get(seq=seq + 1)
    assert event.after["deliveries"] == sorted([failed.pk, cancelled.pk])
    assert event.comment == f"Replay of the failures since {when}."


def test_replaying_when_nothing_failed_sends_nothing_and_records_nothing(people, subscriptions):
    seq = last_seq()

    response = login(people["root"]).post(
        page(subscriptions["everything"], "replay"), {"since": "2025-03-01 08:00"}
    )

    assert messages_of(response) == [
        ("info", "No failed or cancelled deliveries since 2025-03-01 08:00 UTC: nothing was sent.")
    ]
    assert last_seq() == seq


def test_a_replay_with_a_bad_time_is_a_form_error(people, subscriptions):
    response = login(people["root"]).post(
        page(subscriptions["everything"], "replay"), {"since": "yesterday-ish"}
    )

    assert response.status_code == 200
    assert response.context["form"].errors == {"since": ["Enter a valid date/time."]}
