"""The SSRF guard: at save time with a clear message, and again at every connection."""

from __future__ import annotations

import pytest

from accounts.actors import Actor
from webhooks import http, ssrf
from webhooks.ssrf import UrlRefused, address_refusal, url_check

REFUSED = [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.1/hook", "loopback"),
    ("http://0x7f000001/hook", "loopback"),
    ("http://2130706433/hook", "loopback"),
    ("http://0177.0.0.1/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://localhost:8000/hook", "own machine"),
    ("http://api.localhost/hook", "own machine"),
    ("http://10.1.2.3/hook", "private"),
    ("http://172.16.0.1/hook", "private"),
    ("http://192.168.1.1/hook", "private"),
    ("http://[fd00::1]/hook", "private"),
    ("http://100.64.0.1/hook", "CGNAT"),
    ("http://169.254.1.1/hook", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://169.254.169.254/latest/meta-data", "metadata"),
    ("http://metadata.google.internal/x", "metadata"),
    ("http://0.0.0.0/hook", "unicast"),
    ("http://224.0.0.1/hook", "unicast"),
    ("ftp://example.com/hook", "http://"),
    ("file:///etc/passwd", "http://"),
    ("https://user:secret@example.com/hook", "credentials"),
    ("https://:secret@example.com/hook", "credentials"),
    ("https://example.com:99999/hook", "malformed"),
    ("https:///hook", "no host"),
    ("https://exa mple.com/hook", "spaces"),
    ("", "needs a URL"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_refused_urls_say_why(url, why):
    with pytest.raises(UrlRefused, match=why):
        url_check(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/modelgate",
        "http://93.184.215.14:8080/x",
        "https://[2606:4700::1]/",
    ],
)
def test_public_urls_pass(url):
    assert url_check(url) == url


def test_allowed_networks_let_chosen_ranges_through_but_never_metadata(settings):
    settings.MODELGATE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8", "0.0.0.0/0", "::/0"]
    assert url_check("http://127.0.0.1:9000/hook") == "http://127.0.0.1:9000/hook"
    assert address_refusal("10.0.0.5") is None
    assert address_refusal("169.254.169.254") == "a cloud metadata address"
    assert address_refusal("fd00:ec2::254") == "a cloud metadata address"
    assert address_refusal("::ffff:169.254.169.254") == "a cloud metadata address"
    with pytest.raises(UrlRefused, match="metadata"):
        url_check("http://169.254.169.254/")


def test_the_api_answers_400_with_the_reason(admin_api):
    response = admin_api.post("/api/v1/webhooks/", {"url": "http://0x7f000001/hook"}, format="json")
    assert response.status_code == 400
    assert "loopback" in response.json()["fields"]["url"][0]


@pytest.mark.django_db(transaction=True)
def test_the_guard_checks_the_address_actually_connected_to(settings, receiver, monkeypatch):
    """A name that resolved to a public address when saved and to loopback when sending
    (DNS rebinding) is refused at connect time, and the attempt says why."""
    settings.MODELGATE_WEBHOOK_ALLOWED_NETWORKS = []
    monkeypatch.setattr(ssrf, "_resolve", lambda host, port: ["127.0.0.1"])
    answer = http.post(f"http://rebind.example:{receiver.port}/hook", {}, b"{}")
    assert answer.status_code is None
    assert "Refused to connect to rebind.example (127.0.0.1): a loopback address" in answer.error
    assert receiver.received == []


@pytest.mark.django_db(transaction=True)
def test_a_name_with_any_refused_address_is_refused(settings, receiver, monkeypatch):
    settings.MODELGATE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    monkeypatch.setattr(ssrf, "_resolve", lambda host, port: ["127.0.0.1", "10.0.0.1"])
    answer = http.post(f"http://mixed.example:{receiver.port}/hook", {}, b"{}")
    assert "10.0.0.1" in answer.error
    assert receiver.received == []


@pytest.mark.django_db(transaction=True)
def test_a_delivery_to_a_url_no_longer_allowed_fails_with_the_reason(
    settings, receiver, admin_user
):
    from registry.services import model_create
    from webhooks.models import Attempt
    from webhooks.services import subscription_create

    subscription_create(
        actor=Actor(user=admin_user), url=receiver.url, events=["registered_model.created"]
    )
    settings.MODELGATE_WEBHOOK_ALLOWED_NETWORKS = []
    model_create(name="blocked", actor=Actor(user=admin_user))
    attempt = Attempt.objects.get()
    assert attempt.status_code is None
    assert "a loopback address" in attempt.error
    assert receiver.received == []
