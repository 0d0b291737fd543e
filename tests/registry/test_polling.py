"""Long-polling the alias read against a live server: waits, wakes on a move, times out."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import httpx
import pytest

from accounts.actors import Actor
from config import localcache
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
    # The default: reused threads with persistent connections (conftest turns them off for
    # in-process clients, whose reads must see the test's own transaction).
    settings.MODELGATE_POLL_THREADS = 4
    yield
    pool_close()  # the pool's connections must not outlive the test database
    watcher.quiesce()  # nor the watcher's


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


def test_the_poll_path_trusts_a_credential_for_the_ttl_only(
    live_server, seeded, settings, monkeypatch
):
    from accounts.tokens import token_create, token_revoke

    _, actor = seeded
    settings.MODELGATE_POLL_AUTH_TTL = 30
    issued = token_create(user=actor.user, name="poller")
    headers = {"Authorization": f"Bearer {issued.secret}"}
    assert httpx.get(_url(live_server), headers=headers).status_code == 200
    token_revoke(token=issued.token)
    # Other routes refuse the revoked token at once; the poll path within the TTL ...
    models_url = f"{live_server.url}/api/v1/models/"
    assert httpx.get(models_url, headers=headers).status_code == 401
    assert httpx.get(_url(live_server), headers=headers).status_code == 200
    # ... and not after it: the in-process caches' clock moved past the TTL (a real sleep
    # would make the test depend on how fast a busy machine answers the requests above).
    later = time.monotonic() + 31
    monkeypatch.setattr(localcache, "time", SimpleNamespace(monotonic=lambda: later))
    assert httpx.get(_url(live_server), headers=headers).status_code == 401


# --- the watcher's tokens: what answers from memory are checked against -----------------------


def test_a_change_processed_during_a_read_keeps_it_from_being_remembered(seeded):
    model, _ = seeded
    other_model_id = model.pk + 1000
    changes = watcher.changes  # taken before a database read
    before, other_before = watcher.token(model.pk), watcher.token(other_model_id)

    watcher._wake({model.pk})  # the watcher saw an event about the model meanwhile

    assert watcher.token_since(model.pk, changes) is None
    assert watcher.token(model.pk) != before
    assert watcher.token(other_model_id) == other_before  # other models keep theirs
    assert watcher.token_since(model.pk, watcher.changes) == watcher.token(model.pk)


def test_tokens_from_before_the_watcher_ran_or_after_it_stopped_are_void(seeded):
    model, _ = seeded
    watcher.quiesce()
    assert not watcher.fresh()
    unwatched = watcher.token(model.pk)

    assert watcher.sync()  # starts it; its first look makes a new epoch
    assert watcher.fresh()
    watched = watcher.token(model.pk)
    assert watched != unwatched

    watcher.quiesce()  # nobody waits, nobody asked to keep watching: it stops
    assert not watcher.fresh()
    assert watcher.token(model.pk) != watched


def test_a_committed_move_changes_the_models_token_once_the_watcher_looked(seeded):
    model, actor = seeded
    assert watcher.sync()
    before = watcher.token(model.pk)
    services.alias_set(model=model, alias="production", version=2, actor=actor)
    assert watcher.sync()
    assert watcher.token(model.pk) != before


# --- the reads the poll path makes cheap --------------------------------------------------------


def test_alias_state_runs_the_query_the_orm_would(seeded):
    from registry import selectors
    from registry.models import ModelVersion

    model, actor = seeded
    services.alias_set(model=model, alias="staging", version=3, actor=actor)
    services.version_delete(version=ModelVersion.objects.get(model=model, version=3), actor=actor)

    def orm(alias: str):
        return (
            ModelVersion.objects.filter(
                aliases__model__name="fraud-scorer", aliases__alias=alias, deleted_at__isnull=True
            )
            .values_list("pk", "updated_at", "model__updated_at", "model_id")
            .first()
        )

    state = selectors.alias_state(actor=actor, model_name="fraud-scorer", alias="production")
    assert state == orm("production")
    assert state[0] == ModelVersion.objects.get(model=model, version=1).pk
    assert state[1].tzinfo is not None  # converted as the ORM converts (SQLite's text too)
    assert selectors.alias_state(actor=actor, model_name="fraud-scorer", alias="staging") is None
    assert selectors.alias_state(actor=actor, model_name="fraud-scorer", alias="nope") is None


def test_recent_levels_read_all_of_a_users_grants_at_once(seeded, django_user_model):
    from django.contrib.auth.models import Group

    from registry import permissions
    from registry.permissions import Level

    model, owner = seeded
    other = make_model(owner, name="other-model")
    third = make_model(owner, name="third-model")
    reader = django_user_model.objects.create_user(username="reader", password=PASSWORD)
    group = Group.objects.create(name="readers")
    reader.groups.add(group)
    services.permissions_update(
        model=model, actor=Actor.system(), users={"reader": Level.CAN_EDIT}, groups={}
    )
    services.permissions_update(
        model=other, actor=Actor.system(), users={}, groups={"readers": Level.CAN_READ}
    )
    recent = Actor(user=reader, recent_permissions=True)

    levels = [permissions.model_level(recent, m) for m in (model, other, third)]
    assert levels == [Level.CAN_EDIT, Level.CAN_READ, Level.NONE]
    assert permissions.recent_user_grants.get(reader.pk) == {
        model.pk: Level.CAN_EDIT,
        other.pk: Level.CAN_READ,
    }
    # The same answers as reading each model's grants afresh.
    fresh = Actor(user=reader)
    assert [permissions.model_level(fresh, m) for m in (model, other, third)] == levels


def test_a_user_with_too_many_grants_gets_each_level_read_alone(seeded, monkeypatch):
    from registry import permissions
    from registry.permissions import Level

    model, owner = seeded
    other = make_model(owner, name="other-model")
    monkeypatch.setattr(permissions, "RECENT_GRANTS_MAX", 1)  # the owner has two grants
    recent = Actor(user=owner.user, recent_permissions=True)

    assert permissions.model_level(recent, model) == Level.CAN_MANAGE
    assert permissions.model_level(recent, other) == Level.CAN_MANAGE
    assert permissions._recent_grants(owner.user) is None


@pytest.mark.parametrize(
    "caller", ["grant", "group grant", "no grant", "superuser", "read-only token", "limited token"]
)
def test_a_level_made_from_remembered_grants_is_the_level_model_level_gives(
    seeded, django_user_model, caller
):
    from django.contrib.auth.models import Group

    from accounts.tokens import token_create
    from registry import permissions
    from registry.permissions import Level

    model, owner = seeded
    other = make_model(owner, name="other-model")
    if caller == "superuser":
        user = django_user_model.objects.create_superuser(username="caller", password=PASSWORD)
    else:
        user = django_user_model.objects.create_user(username="caller", password=PASSWORD)
    token = None
    if caller in ("grant", "read-only token", "limited token"):
        services.permissions_update(
            model=model, actor=Actor.system(), users={"caller": Level.CAN_EDIT}, groups={}
        )
    if caller == "group grant":
        group = Group.objects.create(name="readers")
        user.groups.add(group)
        services.permissions_update(
            model=model, actor=Actor.system(), users={}, groups={"readers": Level.CAN_READ}
        )
    if caller == "read-only token":
        token = token_create(user=user, name="bot", read_only=True).token
    if caller == "limited token":
        token = token_create(user=user, name="bot", models=[other]).token

    def actor() -> Actor:
        return Actor(user=user, token=token, recent_permissions=True)

    if caller != "superuser":  # a superuser's level needs nothing read
        assert permissions.recent_level(actor(), model.pk) is None  # nothing remembered yet
    expected = [permissions.model_level(actor(), m) for m in (model, other)]
    permissions.recent_levels.clear()  # the per-model levels forgotten, the grants not

    assert [permissions.recent_level(actor(), m.pk) for m in (model, other)] == expected
    assert expected == [
        permissions.model_level(Actor(user=user, token=token), m) for m in (model, other)
    ]
