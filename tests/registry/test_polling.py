"""Long-polling the alias read against a live server: waits, wakes on a move, times out."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from accounts.actors import Actor
from registry import services
from registry.api.polling import pool_close
from registry.watch import watcher
from tests.factories import make_model, make_version

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "poll-password-1"


@pytest.fixture
def bot(django_user_model):
    return django_user_model.objects.create_user(username="bot", password=PASSWORD)


@pytest.fixture
def seeded(bot):
    actor = Actor(user=bot)
    model = make_model(actor, name="fraud-scorer")
    for _ in range(3):
        make_version(actor, model)
    services.alias_set(model=model, alias="production", version=1, actor=actor)
    return model, actor


@pytest.fixture(autouse=True)
def _fast_watch(settings):
    settings.MODELGATE_EVENT_WATCH_INTERVAL = 0.05
    # PostgreSQL's default: reused threads and connections (SQLite keeps one per request).
    settings.MODELGATE_POLL_THREADS = 4 if settings.IS_POSTGRES else 0
    yield
    pool_close()  # the pool's connections must not outlive the test database


def _url(live_server, alias: str = "production") -> str:
    return f"{live_server.url}/api/v1/models/fraud-scorer/aliases/{alias}/"


def _etag(live_server) -> str:
    response = httpx.get(_url(live_server), auth=("bot", PASSWORD))
    assert response.status_code == 200
    return response.headers["ETag"]


def test_wait_times_out_with_304_when_nothing_moves(live_server, seeded):
    etag = _etag(live_server)
    started = time.monotonic()
    response = httpx.get(
        _url(live_server) + "?wait=1",
        auth=("bot", PASSWORD),
        headers={"If-None-Match": etag},
        timeout=10,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["ETag"] == etag
    assert 0.9 <= elapsed < 5
    assert watcher.waiting() == 0


def test_wait_without_matching_etag_answers_at_once(live_server, seeded):
    started = time.monotonic()
    response = httpx.get(
        _url(live_server) + "?wait=30",
        auth=("bot", PASSWORD),
        headers={"If-None-Match": '"stale"'},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert time.monotonic() - started < 5


def test_a_move_wakes_every_waiting_bot(live_server, seeded):
    model, actor = seeded
    etag = _etag(live_server)
    waiters = 50

    async def poll_all() -> list[tuple[int, int | None, float]]:
        async with httpx.AsyncClient(auth=("bot", PASSWORD), timeout=30) as client:

            async def poll() -> tuple[int, int | None, float]:
                response = await client.get(
                    _url(live_server) + "?wait=20", headers={"If-None-Match": etag}
                )
                version = response.json()["version"] if response.status_code == 200 else None
                return response.status_code, version, time.monotonic()

            return await asyncio.gather(*(poll() for _ in range(waiters)))

    results: list[tuple[int, int | None, float]] = []
    runner = threading.Thread(target=lambda: results.extend(asyncio.run(poll_all())))
    runner.start()
    deadline = time.monotonic() + 10
    while watcher.waiting() < waiters and time.monotonic() < deadline:
        time.sleep(0.02)
    assert watcher.waiting() == waiters
    moved_at = time.monotonic()
    services.alias_set(model=model, alias="production", version=3, actor=actor)
    runner.join(timeout=30)

    assert len(results) == waiters
    assert {(status, version) for status, version, _ in results} == {(200, 3)}
    assert max(at for _, _, at in results) - moved_at < 1.0
    assert watcher.waiting() == 0


def test_a_change_to_another_model_does_not_wake(live_server, seeded):
    _, actor = seeded
    other = make_model(actor, name="other-model")
    make_version(actor, other)
    etag = _etag(live_server)

    def move_other() -> None:
        time.sleep(0.3)
        services.alias_set(model=other, alias="production", version=1, actor=actor)

    mover = threading.Thread(target=move_other)
    mover.start()
    response = httpx.get(
        _url(live_server) + "?wait=1.5",
        auth=("bot", PASSWORD),
        headers={"If-None-Match": etag},
        timeout=10,
    )
    mover.join()
    assert response.status_code == 304


@pytest.mark.parametrize("wait", ["61", "-1", "soon"])
def test_bad_wait_is_a_400(live_server, seeded, wait):
    response = httpx.get(_url(live_server) + f"?wait={wait}", auth=("bot", PASSWORD))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "wait" in response.json()["fields"]


def test_the_poll_path_trusts_a_credential_for_the_ttl_only(live_server, seeded, settings):
    from accounts.tokens import token_create, token_revoke

    _, actor = seeded
    settings.MODELGATE_POLL_AUTH_TTL = 0.5
    issued = token_create(user=actor.user, name="poller")
    headers = {"Authorization": f"Bearer {issued.secret}"}
    assert httpx.get(_url(live_server), headers=headers).status_code == 200
    token_revoke(token=issued.token)
    # Other routes refuse the revoked token at once; the poll path within the TTL ...
    models_url = f"{live_server.url}/api/v1/models/"
    assert httpx.get(models_url, headers=headers).status_code == 401
    assert httpx.get(_url(live_server), headers=headers).status_code == 200
    time.sleep(0.6)
    # ... and not after it.
    assert httpx.get(_url(live_server), headers=headers).status_code == 401
