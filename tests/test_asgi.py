"""The ASGI path production runs (uvicorn workers), through Django's AsyncClient.

Most tests use the WSGI test client; these check the async middleware and views behave the
same: authentication, reads, writes, the alias poll path, and the admin's session and CSRF.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from registry.models import Event, RegisteredModel

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.anyio]

PASSWORD = "asgi-password-1"


def basic(username: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def pipeline(django_user_model):
    return django_user_model.objects.create_user(username="pipeline", password=PASSWORD)


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser(username="boss", password=PASSWORD)


async def test_health_and_anonymous_refusal():
    client = AsyncClient()
    assert (await client.get("/healthz")).status_code == 200
    refused = await client.get("/api/v1/models/")
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthenticated"
    assert refused["X-Request-ID"]


async def test_reads_writes_and_the_poll_path(pipeline):
    client = AsyncClient()
    auth = basic("pipeline")
    created = await client.post(
        "/api/v1/models/", {"name": "fraud"}, content_type="application/json", headers=auth
    )
    assert created.status_code == 201
    assert (await sync_to_async(RegisteredModel.objects.count)()) == 1
    version = await client.post(
        "/api/v1/models/fraud/versions/",
        {"source": "s3://m/1"},
        content_type="application/json",
        headers=auth,
    )
    assert version.status_code == 201
    alias = await client.put(
        "/api/v1/models/fraud/aliases/production/",
        {"version": 1},
        content_type="application/json",
        headers=auth,
    )
    assert alias.status_code == 201
    first = await client.get("/api/v1/models/fraud/aliases/production/", headers=auth)
    assert first.status_code == 200
    assert first.json()["version"] == 1
    again = await client.get(
        "/api/v1/models/fraud/aliases/production/",
        headers={**auth, "If-None-Match": first["ETag"]},
    )
    assert again.status_code == 304
    mlflow = await client.get("/api/2.0/mlflow/registered-models/get?name=fraud", headers=auth)
    assert mlflow.status_code == 200
    assert mlflow.json()["registered_model"]["name"] == "fraud"
    types = await sync_to_async(list)(Event.objects.values_list("type", flat=True))
    assert types == [
        "registered_model.created",
        "model_version.created",
        "model_version_alias.set",
    ]


async def test_admin_login_uses_the_session_and_csrf(admin):
    client = AsyncClient(enforce_csrf_checks=True)
    page = await client.get("/admin/login/")
    assert page.status_code == 200
    token = page.cookies["csrftoken"].value
    refused = await client.post("/admin/login/", {"username": "boss", "password": PASSWORD})
    assert refused.status_code == 403  # no CSRF token
    logged_in = await client.post(
        "/admin/login/",
        {"username": "boss", "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    assert logged_in.status_code == 302
    assert "sessionid" in logged_in.cookies
    index = await client.get("/admin/")
    assert index.status_code == 200
    assert b"Registry administration" in index.content


# --- the alias poll route's lean lane (config.asgi) -------------------------------------------

LEAN_PATH = "/api/v1/models/fraud/aliases/production/"


class AsgiCall:
    """One request straight into an ASGI application, the way uvicorn makes it."""

    def __init__(
        self,
        app,
        method: str,
        path: str,
        headers: dict[str, str],
        query: str = "",
        body: bytes = b"",
    ):
        self.app = app
        self.body = body
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": [
                (b"host", b"testserver"),
                *((key.lower().encode(), value.encode()) for key, value in headers.items()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        self.messages: list[dict] = []
        self.requested = False
        self.disconnected = asyncio.Event()

    async def receive(self) -> dict:
        if not self.requested:
            self.requested = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.messages.append(message)

    async def run(self) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """Status, headers and body; None when the application sent nothing."""
        await self.app(self.scope, self.receive, self.send)
        if not self.messages:
            return None
        start = self.messages[0]
        body = b"".join(message.get("body", b"") for message in self.messages[1:])
        return start["status"], start["headers"], body


async def asgi_get(app, headers: dict[str, str], query: str = "", method: str = "GET"):
    return await AsgiCall(app, method, LEAN_PATH, headers, query).run()


@pytest.fixture
def lean(settings, pipeline):
    """The lean lane on (it needs the poll's thread pool) and an alias to poll."""
    from accounts.actors import Actor
    from config.asgi import write_pool_close
    from registry import services
    from registry.api.polling import pool_close
    from registry.watch import watcher
    from tests.factories import make_model, make_version

    settings.MODELGATE_POLL_THREADS = 2
    settings.MODELGATE_EVENT_WATCH_INTERVAL = 0.05
    actor = Actor(user=pipeline)
    model = make_model(actor, name="fraud")
    for _ in range(2):
        make_version(actor, model)
    services.alias_set(model=model, alias="production", version=1, actor=actor)
    yield model, actor
    pool_close()
    write_pool_close()
    watcher.quiesce()


def test_the_lean_lane_is_the_alias_poll_route_only(settings):
    from django.urls import resolve, reverse

    from config.asgi import POLL_ROUTE, takes_lean_lane
    from registry.api.views import alias_detail

    path = reverse("alias-detail", kwargs={"name": "fraud", "alias": "production"})
    assert path == LEAN_PATH
    assert POLL_ROUTE.fullmatch(path)
    assert resolve(path).func is alias_detail

    def scope(method: str, path: str) -> dict:
        return {"type": "http", "method": method, "path": path, "root_path": ""}

    settings.MODELGATE_POLL_THREADS = 2
    assert takes_lean_lane(scope("GET", path))
    assert takes_lean_lane(scope("HEAD", path))
    assert not takes_lean_lane(scope("PUT", path))
    assert not takes_lean_lane(scope("DELETE", path))
    assert not takes_lean_lane(scope("GET", path + "history/"))
    assert not takes_lean_lane(scope("GET", "/api/v1/models/fraud/aliases/"))
    assert not takes_lean_lane(scope("GET", "/healthz"))
    assert not takes_lean_lane({**scope("GET", path), "root_path": "/prefix"})
    assert not takes_lean_lane({"type": "lifespan"})
    settings.MODELGATE_POLL_LEAN = False
    assert not takes_lean_lane(scope("GET", path))
    settings.MODELGATE_POLL_LEAN = True
    settings.MODELGATE_POLL_THREADS = 0  # no pool of its own: Django's handler serves it
    assert not takes_lean_lane(scope("GET", path))


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("read", 200),
        ("not modified", 304),
        ("head", 200),
        ("no credentials", 401),
        ("wrong password", 401),
        ("unknown alias", 404),
        ("bad wait", 400),
    ],
)
async def test_the_lean_lane_answers_as_djangos_handler_does(lean, case, status):
    """Status, every header (in order) and body, against Django's own ASGIHandler."""
    from django.core.handlers.asgi import ASGIHandler

    from config.asgi import application

    headers = {**basic("pipeline"), "X-Request-ID": "lean-test-1"}
    path, query, method = LEAN_PATH, "", "GET"
    if case == "not modified":
        _, first, _ = await AsgiCall(ASGIHandler(), "GET", path, headers).run()
        headers["If-None-Match"] = _etag(first)
    elif case == "head":
        method = "HEAD"
    elif case.endswith("no credentials"):
        del headers["Authorization"]
    elif case == "wrong password":
        headers["Authorization"] = "Basic " + base64.b64encode(b"pipeline:nope").decode()
    elif case == "unknown alias":
        path = path.replace("production", "staging")
    elif case == "bad wait":
        query = "wait=soon"

    django = await AsgiCall(ASGIHandler(), method, path, headers, query).run()
    lean_answer = await AsgiCall(application, method, path, headers, query).run()

    assert django[0] == status
    assert lean_answer == django


async def test_a_warm_304_is_answered_from_memory(lean, monkeypatch):
    from config.asgi import application
    from registry import selectors

    reads = []
    alias_state = selectors.alias_state
    monkeypatch.setattr(
        selectors, "alias_state", lambda **kwargs: reads.append(1) or alias_state(**kwargs)
    )
    auth = basic("pipeline")
    status, headers, body = await asgi_get(application, auth)
    assert status == 200
    etag = _etag(headers)
    await sync_to_async(_watcher_sync)()  # the watcher is running and has looked
    first = await asgi_get(application, auth)  # read again: remembered now the watcher runs
    assert first[0] == 200
    reads.clear()

    for _ in range(5):
        status, headers, body = await asgi_get(application, {**auth, "If-None-Match": etag})
        assert (status, body) == (304, b"")
        assert _etag(headers) == etag
    assert reads == []  # no database read

    # A 200 always reads; so does a 304 for an ETag that is not the remembered one.
    assert (await asgi_get(application, auth))[0] == 200
    assert (await asgi_get(application, {**auth, "If-None-Match": '"other"'}))[0] == 200
    assert len(reads) == 2


async def test_a_move_voids_the_memory(lean):
    from config.asgi import application
    from registry import services

    model, actor = lean
    auth = basic("pipeline")
    await sync_to_async(_watcher_sync)()
    _, headers, _ = await asgi_get(application, auth)
    old = _etag(headers)
    assert (await asgi_get(application, {**auth, "If-None-Match": old}))[0] == 304

    await sync_to_async(services.alias_set)(model=model, alias="production", version=2, actor=actor)
    await sync_to_async(_watcher_sync)()  # every web process sees it within an interval

    status, headers, body = await asgi_get(application, {**auth, "If-None-Match": old})
    assert status == 200
    assert json.loads(body)["version"] == 2
    new = _etag(headers)
    assert (await asgi_get(application, {**auth, "If-None-Match": new}))[0] == 304


@pytest.mark.parametrize("forget", ["credential", "level", "watcher"])
async def test_memory_is_not_used_once_anything_it_needs_is_forgotten(lean, monkeypatch, forget):
    from config.asgi import application
    from registry import selectors
    from registry.api.polling import recent_auth
    from registry.permissions import recent_levels, recent_user_grants
    from registry.watch import watcher

    auth = basic("pipeline")
    await sync_to_async(_watcher_sync)()
    _, headers, _ = await asgi_get(application, auth)
    etag = _etag(headers)
    reads = []
    alias_state = selectors.alias_state
    monkeypatch.setattr(
        selectors, "alias_state", lambda **kwargs: reads.append(1) or alias_state(**kwargs)
    )
    assert (await asgi_get(application, {**auth, "If-None-Match": etag}))[0] == 304
    assert reads == []

    if forget == "credential":
        recent_auth.clear()  # past MODELGATE_POLL_AUTH_TTL
    elif forget == "level":
        recent_levels.clear()  # and what a level could be made from
        recent_user_grants.clear()
    else:
        monkeypatch.setattr(watcher, "_checked_at", watcher._checked_at - 10)  # a stalled watcher
    assert (await asgi_get(application, {**auth, "If-None-Match": etag}))[0] == 304
    assert reads == [1]


async def test_a_revoked_grant_is_refused_within_the_ttl_on_the_lean_lane(
    lean, settings, django_user_model
):
    from config.asgi import application
    from registry.permissions import Level

    settings.MODELGATE_POLL_AUTH_TTL = 0.2
    model, _ = lean
    reader = await sync_to_async(django_user_model.objects.create_user)(
        username="reader", password=PASSWORD
    )
    await sync_to_async(_grant)(reader, model, Level.CAN_READ)
    auth = basic("reader")
    await sync_to_async(_watcher_sync)()
    _, headers, _ = await asgi_get(application, auth)
    etag = _etag(headers)
    assert (await asgi_get(application, {**auth, "If-None-Match": etag}))[0] == 304

    await sync_to_async(_grant)(reader, model, None)
    await asyncio.sleep(0.3)
    status, _, body = await asgi_get(application, {**auth, "If-None-Match": etag})
    assert status == 404
    assert json.loads(body)["code"] == "not_found"


async def test_a_long_poll_on_the_lean_lane_wakes_on_a_move_and_stops_on_disconnect(lean):
    from config.asgi import application
    from registry import services
    from registry.watch import watcher

    model, actor = lean
    auth = basic("pipeline")
    _, headers, _ = await asgi_get(application, auth)
    etag = _etag(headers)
    conditional = {**auth, "If-None-Match": etag}

    waiting = AsgiCall(application, "GET", LEAN_PATH, conditional, "wait=20")
    task = asyncio.create_task(waiting.run())
    await _until(lambda: watcher.waiting() == 1)
    await sync_to_async(services.alias_set)(model=model, alias="production", version=2, actor=actor)
    status, _, body = await asyncio.wait_for(task, 10)
    assert status == 200
    assert json.loads(body)["version"] == 2

    _, headers, _ = await asgi_get(application, auth)
    gone = AsgiCall(
        application,
        "GET",
        LEAN_PATH,
        {**auth, "If-None-Match": _etag(headers)},
        "wait=20",
    )
    task = asyncio.create_task(gone.run())
    await _until(lambda: watcher.waiting() == 1)
    gone.disconnected.set()  # the client went away: the request stops waiting
    assert await asyncio.wait_for(task, 10) is None  # nothing sent, nothing left waiting
    assert watcher.waiting() == 0


# --- the MLflow reads' middleware lane (config.asgi.MiddlewareLane) -----------------------------

MLFLOW = "/api/2.0/mlflow/"


def test_the_middleware_lane_takes_every_mlflow_registry_route(settings):
    from django.urls import resolve

    from config.asgi import MLFLOW_PREFIXES, ModelgateASGIHandler, mlflow_routes
    from registry.mlflow import urls, views

    routes = mlflow_routes()
    reads = {
        "registered-models/get": {"GET", "HEAD"},
        "registered-models/search": {"GET", "HEAD"},
        "registered-models/list": {"GET", "HEAD"},
        "registered-models/get-latest-versions": {"GET", "HEAD", "POST"},
        "registered-models/alias": {"GET", "HEAD"},
        "model-versions/get": {"GET", "HEAD"},
        "model-versions/search": {"GET", "HEAD"},
    }
    # Every route of registry.mlflow.urls under each prefix, the polled reads with their methods.
    assert len(urls.urlpatterns) == 21
    assert {path: set(methods) for path, (_, methods) in routes.items()} == {
        prefix + str(pattern.pattern): reads.get(str(pattern.pattern), set())
        for prefix in MLFLOW_PREFIXES
        for pattern in urls.urlpatterns
    }
    for path, (match, _) in routes.items():
        assert resolve(path).func is match.func
    assert routes[MLFLOW + "registered-models/alias"][0].func.view_class is (
        views.RegisteredModelAliasApi
    )

    handler = ModelgateASGIHandler()

    def lane(method: str, path: str, **scope) -> bool | None:
        """True: a read (the poll pool), False: the writes' pool, None: Django's handler."""
        found = handler.mlflow_route(
            {"type": "http", "method": method, "path": path, "root_path": "", **scope}
        )
        return None if found is None else found[1]

    settings.MODELGATE_POLL_THREADS = 2
    settings.MODELGATE_WRITE_THREADS = 2
    assert lane("GET", MLFLOW + "registered-models/alias") is True
    assert lane("POST", "/ajax-api/2.0/mlflow/registered-models/get-latest-versions") is True
    assert lane("POST", MLFLOW + "registered-models/alias") is False  # a write
    assert lane("DELETE", MLFLOW + "registered-models/alias") is False
    assert lane("POST", MLFLOW + "model-versions/create") is False
    assert lane("PUT", MLFLOW + "model-versions/create") is False  # the view's 404
    assert lane("GET", MLFLOW + "model-versions/get-download-uri") is False  # checks afresh
    assert lane("GET", MLFLOW + "registered-models/alias/") is None
    assert lane("POST", MLFLOW + "transition-requests/create") is None  # workflows' route
    assert lane("GET", MLFLOW + "model-versions/get", root_path="/x") is None
    assert handler.mlflow_route({"type": "lifespan"}) is None
    stack = settings.MIDDLEWARE
    settings.MIDDLEWARE = [*stack, "django.middleware.gzip.GZipMiddleware"]
    assert lane("GET", MLFLOW + "model-versions/get") is None  # a stack the lane does not know
    assert lane("POST", MLFLOW + "model-versions/create") is None
    settings.MIDDLEWARE = stack
    settings.MODELGATE_POLL_THREADS = 0
    assert lane("GET", MLFLOW + "model-versions/get") is None
    assert lane("POST", MLFLOW + "model-versions/create") is False
    settings.MODELGATE_WRITE_THREADS = 0
    assert lane("POST", MLFLOW + "model-versions/create") is None
    settings.MODELGATE_POLL_LEAN = False
    settings.MODELGATE_POLL_THREADS = settings.MODELGATE_WRITE_THREADS = 2
    assert lane("GET", MLFLOW + "model-versions/get") is None
    assert lane("POST", MLFLOW + "model-versions/create") is None


JSON = {"Content-Type": "application/json"}
MLFLOW_CASES = {
    # case: (method, route, query, body, extra headers)
    "alias": ("GET", "registered-models/alias", "name=fraud&alias=production", b"", {}),
    "alias head": ("HEAD", "registered-models/alias", "name=fraud&alias=production", b"", {}),
    "alias not modified": (
        "GET",
        "registered-models/alias",
        "name=fraud&alias=production",
        b"",
        {"If-None-Match": "etag"},
    ),
    "unknown alias": ("GET", "registered-models/alias", "name=fraud&alias=nope", b"", {}),
    "unknown model": ("GET", "registered-models/alias", "name=nope&alias=production", b"", {}),
    "missing parameter": ("GET", "registered-models/alias", "name=fraud", b"", {}),
    "nul": ("GET", "registered-models/alias", "name=fr%00aud&alias=production", b"", {}),
    "latest": ("POST", "registered-models/get-latest-versions", "", b'{"name": "fraud"}', JSON),
    "latest stages": (
        "POST",
        "registered-models/get-latest-versions",
        "",
        b'{"name": "fraud", "stages": ["None", "Staging"]}',
        JSON,
    ),
    "latest bad stage": (
        "POST",
        "registered-models/get-latest-versions",
        "",
        b'{"name": "fraud", "stages": ["Later"]}',
        JSON,
    ),
    "latest bad json": ("POST", "registered-models/get-latest-versions", "", b'{"name":', JSON),
    "latest not json": (
        "POST",
        "registered-models/get-latest-versions",
        "",
        b"name=fraud",
        {"Content-Type": "text/plain"},
    ),
    "latest get": ("GET", "registered-models/get-latest-versions", "name=fraud", b"", {}),
    "model": ("GET", "registered-models/get", "name=fraud", b"", {}),
    "version": ("GET", "model-versions/get", "name=fraud&version=2", b"", {}),
    "unknown version": ("GET", "model-versions/get", "name=fraud&version=9", b"", {}),
    "search models": ("GET", "registered-models/search", "filter=name+LIKE+%27fr%25%27", b"", {}),
    "search bad filter": ("GET", "registered-models/search", "filter=name+~+1", b"", {}),
    "list": ("GET", "registered-models/list", "", b"", {}),
    "search versions": ("GET", "model-versions/search", "filter=name%3D%27fraud%27", b"", {}),
    "preview prefix": ("GET", "registered-models/get", "name=fraud", b"", {}),
    "ajax prefix": ("GET", "registered-models/get", "name=fraud", b"", {}),
    "no credentials": ("GET", "registered-models/get", "name=fraud", b"", {}),
    "wrong password": ("GET", "registered-models/get", "name=fraud", b"", {}),
    "no grant": ("GET", "registered-models/get", "name=fraud", b"", {}),
    "disallowed host": ("GET", "registered-models/get", "name=fraud", b"", {}),
    "session cookie": ("GET", "registered-models/get", "name=fraud", b"", {}),
    # Writes (the writes' pool) that leave the registry as it was, so both handlers meet the same
    # state; a write that changes it: test_a_write_on_the_middleware_lane_…
    "create for an unknown model": (
        "POST",
        "model-versions/create",
        "",
        b'{"name": "nope", "source": "s3://b/1"}',
        JSON,
    ),
    "create without a source": ("POST", "model-versions/create", "", b'{"name": "fraud"}', JSON),
    "create from a relative source": (
        "POST",
        "model-versions/create",
        "",
        b'{"name": "fraud", "source": "../up"}',
        JSON,
    ),
    "create bad json": ("POST", "model-versions/create", "", b'{"name":', JSON),
    "create no credentials": (
        "POST",
        "model-versions/create",
        "",
        b'{"name": "fraud", "source": "s3://b/1"}',
        JSON,
    ),
    "create no grant": (
        "POST",
        "model-versions/create",
        "",
        b'{"name": "fraud", "source": "s3://b/1"}',
        JSON,
    ),
    "create an existing model": (
        "POST",
        "registered-models/create",
        "",
        b'{"name": "fraud"}',
        JSON,
    ),
    "delete a missing tag": (
        "DELETE",
        "registered-models/delete-tag",
        "",
        b'{"name": "fraud", "key": "nope"}',
        JSON,
    ),
    "delete a missing tag by query": (
        "DELETE",
        "registered-models/delete-tag",
        "name=fraud&key=nope",
        b"",
        {},
    ),
    "archive into archived": (
        "POST",
        "model-versions/transition-stage",
        "",
        b'{"name": "fraud", "version": "1", "stage": "Archived", '
        b'"archive_existing_versions": true}',
        JSON,
    ),
    "an unserved method": ("PUT", "model-versions/create", "", b"", {}),
    "download uri": ("GET", "model-versions/get-download-uri", "name=fraud&version=1", b"", {}),
}


@pytest.mark.parametrize("case", list(MLFLOW_CASES))
async def test_the_middleware_lane_answers_as_djangos_handler_does(
    lean, case, django_user_model, monkeypatch
):
    """Status, every header (in order) and body, against Django's own ASGIHandler."""
    from django.core.handlers.asgi import ASGIHandler

    from config import asgi

    method, route, query, body, extra = MLFLOW_CASES[case]
    prefix = {"preview prefix": "/api/2.0/preview/mlflow/", "ajax prefix": "/ajax-api/2.0/mlflow/"}
    path = prefix.get(case, MLFLOW) + route
    headers = {**basic("pipeline"), "X-Request-ID": "lane-test-1", **extra}
    if case == "alias not modified":
        _, first, _ = await AsgiCall(
            ASGIHandler(),
            "GET",
            path,
            {k: v for k, v in headers.items() if k != "If-None-Match"},
            query,
        ).run()
        headers["If-None-Match"] = _etag(first)
    elif case.endswith("no credentials"):
        del headers["Authorization"]
    elif case == "wrong password":
        headers["Authorization"] = "Basic " + base64.b64encode(b"pipeline:nope").decode()
    elif case.endswith("no grant"):
        await sync_to_async(django_user_model.objects.create_user)(
            username="stranger", password=PASSWORD
        )
        headers["Authorization"] = basic("stranger")["Authorization"]
    elif case == "disallowed host":
        headers["Host"] = "evil.example"
    elif case == "session cookie":
        headers["Cookie"] = "sessionid=nonsense; csrftoken=" + "a" * 32

    lanes = []
    handle = asgi.ModelgateASGIHandler.handle_mlflow

    async def spy(self, *args):
        lanes.append(case)
        return await handle(self, *args)

    monkeypatch.setattr(asgi.ModelgateASGIHandler, "handle_mlflow", spy)

    def call(app):
        call = AsgiCall(app, method, path, headers, query, body)
        if "Host" in headers:
            call.scope["headers"] = [h for h in call.scope["headers"] if h[0] != b"host"]
        return call.run()

    django = await call(ASGIHandler())
    assert lanes == []
    lane = await call(asgi.ModelgateASGIHandler())
    assert lanes == [case]  # the lane took it (and handed it on, for the disallowed host)
    assert lane == django
    assert django[0] in (200, 304, 400, 401, 404)


async def test_a_write_on_the_middleware_lane_is_recorded_and_hands_its_connection_back(lean):
    """A version created through the lane answers as one created through Django's handler
    (but for its number and times), is recorded with the request's id, and the writes' thread
    keeps no database connection afterwards."""
    from django.core.handlers.asgi import ASGIHandler
    from django.db import connection

    from config import asgi

    path = MLFLOW + "model-versions/create"
    body = b'{"name": "fraud", "source": "s3://b/3", "tags": [{"key": "k", "value": "v"}]}'
    answers = []
    for app, request_id in ((asgi.ModelgateASGIHandler(), "lane"), (ASGIHandler(), "django")):
        headers = {**basic("pipeline"), "X-Request-ID": request_id, **JSON}
        answers.append(await AsgiCall(app, "POST", path, headers, body=body).run())

    def answer(status, headers, body):
        version = json.loads(body)["model_version"]
        number = version.pop("version")
        for key in ("creation_timestamp", "last_updated_timestamp"):
            assert isinstance(version.pop(key), int)
        names = [name for name, value in headers if name != b"content-length"]
        return number, status, names, version

    lane, django = (answer(*found) for found in answers)
    assert (lane[0], django[0]) == ("3", "4")
    assert lane[1:] == django[1:]
    assert lane[1] == 200
    assert lane[3]["tags"] == [{"key": "k", "value": "v"}]
    created = await sync_to_async(list)(
        Event.objects.filter(type="model_version.created", version__gte=3)
        .order_by("seq")
        .values_list("version", "actor_name", "source", "request_id")
    )
    assert created == [(3, "pipeline", "mlflow", "lane"), (4, "pipeline", "mlflow", "django")]
    assert await asgi.in_write_thread(lambda: connection.connection) is None


async def test_the_middleware_lane_records_metrics_and_logs_with_the_request_id(lean, caplog):
    from config import metrics
    from config.asgi import ModelgateASGIHandler

    route = "api/2.0/mlflow/registered-models/get"
    key = (False, route, "GET", "2xx")
    child = metrics.REQUEST_SECONDS.labels(route, "GET", "2xx")
    before = child._sum.get(), sum(bucket.get() for bucket in child._buckets)
    headers = {**basic("pipeline"), "X-Request-ID": "lane-metrics-1"}
    status, _, _ = await AsgiCall(
        ModelgateASGIHandler(), "GET", MLFLOW + "registered-models/get", headers, "name=fraud"
    ).run()
    assert status == 200
    assert key in metrics._children
    assert sum(bucket.get() for bucket in child._buckets) == before[1] + 1

    with caplog.at_level("WARNING", logger="django.request"):
        status, _, _ = await AsgiCall(
            ModelgateASGIHandler(), "GET", MLFLOW + "registered-models/get", headers, "name=nope"
        ).run()
    assert status == 404
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.getMessage() == f"Not Found: {MLFLOW}registered-models/get"
    assert record.request.request_id == "lane-metrics-1"


async def test_the_pool_runs_code_in_the_requests_log_context(lean):
    from config.logs import request_id_var
    from registry.api.polling import in_thread

    token = request_id_var.set("pool-context-1")
    try:
        assert await in_thread(request_id_var.get) == "pool-context-1"
    finally:
        request_id_var.reset(token)


async def test_a_revoked_grant_is_refused_within_the_ttl_on_the_middleware_lane(
    lean, settings, django_user_model
):
    from config.asgi import ModelgateASGIHandler
    from registry.permissions import Level

    settings.MODELGATE_POLL_AUTH_TTL = 0.2
    model, _ = lean
    reader = await sync_to_async(django_user_model.objects.create_user)(
        username="reader", password=PASSWORD
    )
    await sync_to_async(_grant)(reader, model, Level.CAN_READ)
    app = ModelgateASGIHandler()
    query = "name=fraud&alias=production"
    auth = basic("reader")
    for _ in range(2):
        status, _, _ = await AsgiCall(
            app, "GET", MLFLOW + "registered-models/alias", auth, query
        ).run()
        assert status == 200

    await sync_to_async(_grant)(reader, model, None)
    await asyncio.sleep(0.3)
    status, _, body = await AsgiCall(
        app, "GET", MLFLOW + "registered-models/alias", auth, query
    ).run()
    assert status == 404
    assert json.loads(body)["error_code"] == "RESOURCE_DOES_NOT_EXIST"


async def _until(condition, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)


def _etag(headers: list[tuple[bytes, bytes]]) -> str:
    return next(value.decode() for key, value in headers if key.lower() == b"etag")


def _watcher_sync() -> None:
    from registry.watch import watcher

    assert watcher.sync()


def _grant(user, model, level) -> None:
    from accounts.actors import Actor
    from registry import services

    services.permissions_update(
        model=model, actor=Actor.system(), users={user.username: level}, groups={}
    )
