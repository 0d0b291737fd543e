"""API tokens: issuing, hashing, authenticating, expiry, revocation and throttling."""

from __future__ import annotations

import base64
import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import tokens
from accounts.models import ApiToken
from accounts.tokens import TOKEN_START, token_create, token_digest, token_revoke
from registry.models import Event

pytestmark = pytest.mark.django_db

MODELS_URL = "/api/v1/models/"


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def basic(username: str, password: str) -> APIClient:
    client = APIClient()
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {raw}")
    return client


def test_create_token_command_prints_the_token_alone_on_the_last_line(user):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "create_token", "alice", "--name", "ci", "--read-only", "--expires-in-days", "7",
        stdout=out, stderr=err,
    )  # fmt: skip
    secret = out.getvalue().strip().splitlines()[-1]
    assert secret.startswith("mg_")
    token = ApiToken.objects.get()
    assert token.name == "ci"
    assert token.read_only is True
    assert token.user == user
    assert token.prefix in secret
    assert token.digest == token_digest(secret)
    assert timedelta(days=6, hours=23) < token.expires_at - timezone.now() <= timedelta(days=7)
    assert "cannot be shown again" in err.getvalue()


def test_create_token_command_refuses_unknown_user_and_model(user):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("create_token", "nobody")
    with pytest.raises(CommandError, match="No registered model named: ghost"):
        call_command("create_token", "alice", "--model", "ghost")
    assert ApiToken.objects.count() == 0


def test_no_plaintext_token_is_stored_anywhere(user):
    issued = token_create(user=user, name="bot")
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert issued.secret not in dump.getvalue()
    # mg_<prefix>_<secret>, and the secret's own alphabet includes "_": cut after the prefix
    secret_part = issued.secret.removeprefix(f"{TOKEN_START}{issued.token.prefix}_")
    assert len(secret_part) == 43
    assert secret_part not in dump.getvalue()
    assert ApiToken.objects.get().digest == token_digest(issued.secret)


def test_bearer_and_basic_with_token_authenticate(user):
    issued = token_create(user=user, name="bot")
    assert bearer(issued.secret).get(MODELS_URL).status_code == 200
    assert basic("alice", issued.secret).get(MODELS_URL).status_code == 200
    assert basic("alice", "alice-password-1").get(MODELS_URL).status_code == 200


def test_token_of_another_user_under_basic_is_refused(user, django_user_model):
    django_user_model.objects.create_user(username="bob", password="bob-password-1")
    issued = token_create(user=user)
    response = basic("bob", issued.secret).get(MODELS_URL)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


@pytest.mark.parametrize(
    ("presented", "message"),
    [
        ("mg_short", "Malformed API token."),
        ("not-a-token-at-all", "Malformed API token."),
        ("mg_abcdefgh_" + "A" * 43, "Invalid API token."),
    ],
)
def test_malformed_and_unknown_tokens_are_401_saying_which(user, presented, message):
    response = bearer(presented).get(MODELS_URL)
    assert response.status_code == 401
    assert response.json() == {"code": "unauthenticated", "message": message}
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_secret_for_a_known_prefix_is_invalid(user):
    issued = token_create(user=user)
    forged = issued.secret[:-4] + ("AAAA" if not issued.secret.endswith("AAAA") else "BBBB")
    response = bearer(forged).get(MODELS_URL)
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid API token."


def test_expired_and_revoked_tokens_are_refused(user):
    expired = token_create(user=user)
    ApiToken.objects.filter(pk=expired.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = bearer(expired.secret).get(MODELS_URL)
    assert response.status_code == 401
    assert response.json()["message"] == "This API token has expired."

    revoked = token_create(user=user)
    token_revoke(token=revoked.token)
    response = bearer(revoked.secret).get(MODELS_URL)
    assert response.status_code == 401
    assert response.json()["message"] == "This API token has been revoked."


def test_tokens_of_inactive_users_are_refused(user):
    issued = token_create(user=user)
    user.is_active = False
    user.save()
    assert bearer(issued.secret).get(MODELS_URL).status_code == 401


def test_digests_are_compared_in_constant_time(user, monkeypatch):
    issued = token_create(user=user)
    calls = []
    real = tokens.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    assert bearer(issued.secret).get(MODELS_URL).status_code == 200
    assert calls == [(issued.token.digest, token_digest(issued.secret))]
    calls.clear()
    bearer("mg_zzzzzzzz_" + "B" * 43).get(MODELS_URL)
    assert len(calls) == 1  # compared even when no token has that prefix


def test_last_used_is_recorded(user):
    issued = token_create(user=user)
    assert issued.token.last_used_at is None
    bearer(issued.secret).get(MODELS_URL)
    issued.token.refresh_from_db()
    assert issued.token.last_used_at is not None


def test_failed_attempts_are_throttled(user, settings):
    settings.MODELGATE_AUTH_FAILURES_PER_MINUTE = 5
    issued = token_create(user=user)
    for _ in range(5):
        assert basic("alice", "wrong-password").get(MODELS_URL).status_code == 401
    response = bearer(issued.secret).get(MODELS_URL)
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) > 0


def test_events_record_the_token_prefix(user):
    issued = token_create(user=user, name="pipeline")
    response = bearer(issued.secret).post(MODELS_URL, {"name": "fraud-scorer"}, format="json")
    assert response.status_code == 201
    event = Event.objects.get(type="registered_model.created")
    assert event.actor_name == "alice"
    assert event.actor_token == issued.token.prefix


# --- /api/v1/tokens/ ------------------------------------------------------------------------


def test_token_api_issues_once_lists_without_secret_and_revokes(api, user):
    response = api.post("/api/v1/tokens/", {"name": "deploy-bot", "read_only": True}, format="json")
    assert response.status_code == 201
    body = response.json()
    secret = body["token"]
    assert secret.startswith("mg_")
    assert body["read_only"] is True
    assert body["name"] == "deploy-bot"

    listed = api.get("/api/v1/tokens/").json()["results"]
    assert len(listed) == 1
    assert "token" not in listed[0]
    assert listed[0]["prefix"] == body["prefix"]

    assert bearer(secret).get(MODELS_URL).status_code == 200
    assert api.delete(f"/api/v1/tokens/{body['id']}/").status_code == 204
    assert bearer(secret).get(MODELS_URL).status_code == 401
    assert ApiToken.objects.get().revoked_at is not None


def test_token_api_only_shows_own_tokens(api, django_user_model):
    bob = django_user_model.objects.create_user(username="bob", password="bob-password-1")
    other = token_create(user=bob)
    assert api.get("/api/v1/tokens/").json()["results"] == []
    assert api.get(f"/api/v1/tokens/{other.token.pk}/").status_code == 404
    assert api.delete(f"/api/v1/tokens/{other.token.pk}/").status_code == 404
    assert ApiToken.objects.get().revoked_at is None


def test_token_api_refuses_token_callers_and_bad_input(user, api):
    issued = token_create(user=user)
    response = bearer(issued.secret).post("/api/v1/tokens/", {"name": "x"}, format="json")
    assert response.status_code == 403
    response = api.post("/api/v1/tokens/", {"models": ["ghost"]}, format="json")
    assert response.status_code == 400
    assert "ghost" in response.json()["message"]
    response = api.post("/api/v1/tokens/", {"expires_in_days": 0}, format="json")
    assert response.status_code == 400
    assert ApiToken.objects.count() == 1


def test_anonymous_cannot_use_the_token_api(anon):
    assert anon.get("/api/v1/tokens/").status_code == 401
    assert anon.post("/api/v1/tokens/", {}, format="json").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_basic_requests_checks_the_password_once(user, monkeypatch):
    import threading
    import time

    from django.contrib.auth import hashers
    from django.db import connection

    calls = []
    real = hashers.check_password

    def counting(*args, **kwargs):
        calls.append(1)
        time.sleep(0.05)  # as slow as a real hasher, relatively: the others arrive meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(hashers, "check_password", counting)
    monkeypatch.setattr("django.contrib.auth.base_user.check_password", counting)
    from accounts.authentication import CachedBasicAuthentication

    auth = CachedBasicAuthentication()
    barrier = threading.Barrier(8)
    results = []

    def sign_in():
        barrier.wait()
        try:
            results.append(auth.authenticate_credentials("alice", "alice-password-1")[0].username)
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_in) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["alice"] * 8
    assert len(calls) == 1
