"""A platform admin adds a webhook in the admin, in a real browser: the secret is shown once, and
a test event reaches a real receiver, whose answer the page shows.

The server is pytest-django's live server; the receiver (tests/webhooks/receiver.py) listens on
127.0.0.1, which the SSRF guard lets through for this test only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from standardwebhooks import Webhook

from registry.models import Event
from tests.webhooks.receiver import Receiver, Reply
from webhooks import crypto
from webhooks.models import Delivery, Subscription

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    settings.MODELGATE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    server = Receiver()
    server.default = Reply(202, b'{"queued": "deploy-7"}')
    yield server
    server.close()


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser(
        username="root", password="root-password-1", email="root@example.com"
    )


def test_a_platform_admin_adds_a_webhook_and_sends_it_a_test_event(
    root, receiver, new_page, live_server, screenshots
):
    page = new_page()
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "root-password-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")

    # The add form: URL, events, no model (registry-wide), an extra header.
    page.get_by_role("link", name="Subscriptions").first.click()
    page.get_by_role("link", name="Add subscription").click()
    page.fill("#id_name", "deploy bot")
    page.fill("#id_url", receiver.url)
    page.get_by_label("model_version.created", exact=True).check()
    page.get_by_label("model_version_alias.set", exact=True).check()
    page.fill("#id_headers_text", "Authorization: Bearer deploy-token-1")
    page.screenshot(path=str(screenshots / "webhook-add.png"), full_page=True)
    page.click("input[name=_continue]")

    # The secret, once, on the page that follows the save.
    page.wait_for_selector(".messagelist")
    message = page.locator(".messagelist li.warning").inner_text()
    secret = SECRET.search(message).group()
    assert message == (
        f"Secret of deploy bot: {secret} — copy it now, it will not be shown again. "
        "Receivers verify the webhook-signature header with it."
    )
    subscription = Subscription.objects.get()
    assert crypto.decrypt(subscription.secret_encrypted) == secret
    assert secret not in subscription.secret_encrypted
    assert page.locator(".field-header_names .readonly").inner_text() == "Authorization"
    assert "deploy-token-1" not in page.content()
    page.screenshot(path=str(screenshots / "webhook-secret.png"), full_page=True)
    page.reload()
    assert secret not in page.content()
    assert page.locator(".messagelist").count() == 0

    # Send test event… leads to a page that sends nothing until confirmed.
    page.click("#test-link")
    page.wait_for_selector("#tool-form")
    assert receiver.received == []
    page.select_option("#id_event", "model_version_alias.set")
    page.click("#confirm-button")

    page.wait_for_selector(".messagelist")
    delivery = Delivery.objects.get()
    assert page.locator(".messagelist li.success").inner_text() == (
        f"Test event model_version_alias.set (webhook-id {delivery.uid}): the receiver "
        'answered 202, its response began: {"queued": "deploy-7"}'
    )
    page.screenshot(path=str(screenshots / "webhook-tested.png"), full_page=True)
    [got] = receiver.received
    assert got.headers["authorization"] == "Bearer deploy-token-1"
    payload = Webhook(secret).verify(got.body, got.headers)
    assert (payload["type"], payload["data"]["test"]) == ("model_version_alias.set", True)
    assert list(Event.objects.values_list("type", "source", "actor_name")) == [
        ("webhook.created", "admin", "root")
    ]
