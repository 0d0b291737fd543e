"""Every operation of the OpenAPI schema, fuzzed by schemathesis against the app in-process.

Three callers: a superuser (HTTP Basic with a password), a plain user (a bearer API token) and
nobody. For every request: no 5xx, and the status, content type and body the schema documents.
For the signed-in callers, a request the schema calls valid is not refused as invalid, nor an
invalid one accepted; for the anonymous one, no route that needs credentials answers it.

Path parameters are drawn half from the schema and half from a seeded registry (models "fraud"
and "churn", their versions, tags, aliases, a policy, a transition request, a comment, a
webhook with a delivery, a token), so requests reach real objects. In a request the schema
calls valid, names that must exist (a user in an ACL, a model a token is limited to, a
webhook's URL, which is resolved in production, an MLflow alias read) are pointed at seeded
ones, opaque tokens (page cursors) and MLflow filters (a grammar) are left out, and the rules
the schema states only in words are applied (tag keys, which OpenAPI 3.0 cannot constrain;
rules across fields; no NUL in ignored MLflow fields). Invalid requests are sent as generated.

The registry is seeded once, and every request runs in a savepoint rolled back after it, so each
starts from the same state. Deterministic (derandomized). Bounded for CI: a few examples per
operation and caller, and the coverage phase (boundary values, missing and wrong-typed
parameters) for the superuser only.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import hypothesis
import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import override_settings
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.actors import Actor
from accounts.tokens import token_create
from config.wsgi import application
from registry import services
from registry.models import Event, ModelVersion
from registry.permissions import Level
from webhooks.choices import DeliveryState
from webhooks.models import Delivery
from webhooks.services import subscription_create
from workflows.policies import policy_create
from workflows.services import comment_create, request_create

PASSWORD = "fuzz-password-1"
HOOK_URL = "https://hooks.example.com/modelgate"

CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Valid requests accepted, invalid ones refused: for signed-in callers (an anonymous one is
# refused before its request is read). That anonymous callers are refused: `ignored_auth`.
CHECKS = {
    "superuser": [*CONFORMANCE, positive_data_acceptance, negative_data_rejection],
    "user": [*CONFORMANCE, positive_data_acceptance, negative_data_rejection],
    "anonymous": [*CONFORMANCE, ignored_auth],
}


def isolated(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The WSGI application, each request (streamed answers included) in a savepoint that is
    rolled back: every request, and every probe a check sends, sees the seeded registry."""
    with transaction.atomic():
        try:
            result = application(environ, start_response)
            body = b"".join(result)
            getattr(result, "close", lambda: None)()
        finally:
            transaction.set_rollback(True)
    return [body]


def _schema(raw: dict[str, Any], *, examples: int, coverage: bool) -> Any:
    """The schema with one caller's generation settings: deterministic, `examples` requests per
    operation and mode (valid, invalid), plus the coverage phase's boundary cases if asked."""
    config = SchemathesisConfig.from_dict(
        {
            "generation": {
                "max-examples": examples,
                "deterministic": True,
                "with-security-parameters": False,
                "database": "none",
            },
            "phases": {"coverage": {"enabled": coverage, "unexpected-methods": []}},
        }
    )
    loaded = schemathesis.openapi.from_dict(raw, config=config)
    loaded.app = isolated
    loaded.hook(before_generate_path_parameters)
    return loaded


# Filled by the `registry` fixture: path parameter → values that exist.
SEEDED: dict[str, list[Any]] = {}


def _pick(key: str) -> st.SearchStrategy[Any]:
    # The values exist only once the fixture ran: draw an index, look the value up then.
    return st.integers(min_value=0, max_value=7).map(lambda i: SEEDED[key][i % len(SEEDED[key])])


_ID_KINDS = {
    "/api/v1/tokens/": "token",
    "/api/v1/policies/": "policy",
    "/api/v1/transition-requests/": "request",
    "/api/v1/comments/": "comment",
    "/api/v1/webhooks/": "webhook",
    "/api/v1/deliveries/": "delivery",
}


def before_generate_path_parameters(
    context: Any, strategy: st.SearchStrategy[dict[str, Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """Half the path parameters name seeded objects, half are the schema's."""
    operation = context.operation
    names = [parameter.name for parameter in operation.path_parameters] if operation else []
    if not names:
        return strategy
    keys = {}
    for name in names:
        if name == "id":
            kind = next(k for prefix, k in _ID_KINDS.items() if operation.path.startswith(prefix))
            keys[name] = _pick(kind)
        else:
            keys[name] = _pick(name)
    return st.one_of(st.fixed_dictionaries(keys), strategy)


_raw = schemathesis.openapi.from_wsgi("/api/schema/", application).raw_schema
superuser_schema = _schema(_raw, examples=3, coverage=True)
user_schema = _schema(_raw, examples=5, coverage=False)
anonymous_schema = _schema(_raw, examples=2, coverage=False)


@pytest.fixture(scope="module")
def registry(django_db_setup: None, django_db_blocker: Any) -> Iterator[dict[str, Any]]:
    """A small registry, seeded once for the module in a transaction rolled back at its end,
    and the settings that keep a fuzzed request quick and local."""
    quick = override_settings(
        MODELGATE_APPROVE_WAIT_SECONDS=0,
        MODELGATE_AUTH_FAILURES_PER_MINUTE=10_000,
        MODELGATE_POLL_THREADS=0,
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )
    # No DNS in tests: webhook URLs are checked without resolving their host names.
    no_dns = mock.patch("webhooks.ssrf._resolve", _no_dns)
    with django_db_blocker.unblock(), quick, no_dns, transaction.atomic():
        headers = _seed()
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            yield headers
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
            transaction.set_rollback(True)


def _seed() -> dict[str, dict[str, str]]:
    user_model = get_user_model()
    root = user_model.objects.create_superuser(
        username="root", password=PASSWORD, email="root@example.com"
    )
    alice = user_model.objects.create_user(username="alice", password=PASSWORD)
    by_root, by_alice = Actor(user=root), Actor(user=alice)
    m = services.model_create(name="fraud", actor=by_root, tags={"team": "ml"})
    for n in (1, 2):
        services.version_create(model=m, source=f"s3://b/{n}", actor=by_root)
    v1 = ModelVersion.objects.get(model=m, version=1)
    services.version_tag_set(version=v1, key="team", value="ml", actor=by_root)
    services.alias_set(model=m, alias="prod", version=1, actor=by_root)
    services.permissions_update(model=m, actor=by_root, users={"alice": Level.CAN_EDIT}, groups={})
    a = services.model_create(name="churn", actor=by_alice)
    services.version_create(model=a, source="s3://a/1", actor=by_alice)
    policy = policy_create(actor=by_root, model=m, target="Production")
    request = request_create(version=v1, target="Staging", actor=by_alice)
    comment = comment_create(version=v1, actor=by_alice, text="first")
    webhook = subscription_create(actor=by_root, model=m, url=HOOK_URL, events=["*"])
    delivery = Delivery.objects.create(
        subscription=webhook.subscription,
        event=Event.objects.order_by("-seq").first(),
        event_type="comment.created",
        body="{}",
        state=DeliveryState.FAILED,
    )
    token = token_create(user=alice, name="bot")
    Group.objects.create(name="editors")
    SEEDED.clear()
    SEEDED.update(
        name=["fraud", "churn"],
        version=["1", "2"],
        key=["team"],
        alias=["prod"],
        token=[token.token.pk],
        policy=[policy.pk],
        request=[request.pk],
        comment=[comment.pk],
        webhook=[webhook.subscription.id.hex],
        delivery=[delivery.pk],
    )
    basic = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    return {
        "superuser": {"Authorization": f"Basic {basic}"},
        "user": {"Authorization": f"Bearer {token.secret}"},
        "anonymous": {},
    }


def _no_dns(host: str, port: int) -> list[str]:
    raise OSError(f"no name resolution in the fuzz test ({host})")


def _fresh_caches() -> None:
    """What tests/conftest.py clears between tests, cleared between requests here."""
    from django.core.cache import cache

    from accounts.authentication import verified_credentials
    from registry.api.polling import recent_auth, remembered_aliases
    from registry.permissions import (
        recent_levels,
        recent_registry_levels,
        recent_token_models,
        recent_user_grants,
    )

    cache.clear()
    for local in (
        verified_credentials,
        recent_auth,
        remembered_aliases,
        recent_levels,
        recent_registry_levels,
        recent_token_models,
        recent_user_grants,
    ):
        local.clear()


def _positive_fixes(case: Any) -> None:
    """In a valid request, names that must exist point at seeded objects, and the policies'
    rules across fields hold (see the module doc)."""
    if isinstance(case.query, dict):
        # Opaque: only the `next` link of a previous page holds a valid one.
        case.query.pop("cursor", None)
        case.query.pop("page_token", None)
        # MLflow's search grammar is not a pattern.
        case.query.pop("filter", None)
    if case.operation.path.startswith("/api/2.0/mlflow/"):
        _mlflow_fixes(case)
    body = case.body
    if not isinstance(body, dict):
        return
    path = case.operation.path
    if not path.startswith("/api/v1/"):
        return
    for field in ("tags", "required_tags"):
        # Tag keys have rules OpenAPI 3.0 cannot state (no propertyNames): valid ones.
        if isinstance(body.get(field), dict):
            body[field] = {f"k{i}": value for i, value in enumerate(body[field].values())}
    if path == "/api/v1/models/{name}/permissions/":
        for entry in body.get("access_control_list", []):
            if "user_name" in entry:
                entry["user_name"] = "alice"
            if "group_name" in entry:
                entry["group_name"] = "editors"
    elif path == "/api/v1/tokens/" and body.get("models"):
        body["models"] = ["fraud"]
    elif path in ("/api/v1/policies/", "/api/v1/policies/{id}/"):
        target = body.get("target", "Production")  # the seeded policy's target
        if target not in ("Staging", "Production"):
            body.pop("archive_existing_versions", None)
        if target.startswith("alias:"):
            body.pop("move_alias", None)
    elif path in ("/api/v1/webhooks/", "/api/v1/webhooks/{id}/"):
        if "url" in body:
            body["url"] = HOOK_URL
        if isinstance(body.get("events"), list):
            body["events"] = ["model_version.created"]
        if "headers" in body:
            body["headers"] = {"X-Team": "ml"}
        if "secret" in body:
            body["secret"] = "a-secret-of-16-chars"
        if body.get("model") is not None:
            body["model"] = "fraud"
    elif path == "/api/v1/webhooks/{id}/test/" and "event" in body:
        body["event"] = "model_version.created"
    elif path == "/api/v1/deliveries/replay/" and "webhook" in body:
        body["webhook"] = SEEDED["webhook"][0]


def _mlflow_fixes(case: Any) -> None:
    """MLflow arguments: about half the lookups name a seeded model (and version); an alias read
    names the seeded alias (an unknown one is INVALID_PARAMETER_VALUE on MLflow); archiving
    applies to Staging and Production only."""
    for arguments in (case.query, case.body):
        if not isinstance(arguments, dict):
            continue
        name = arguments.get("name")
        creates_model = case.operation.path.endswith("/registered-models/create")
        if isinstance(name, str) and not creates_model and len(name) % 2 == 0:
            arguments["name"] = SEEDED["name"][0]
            if "version" in arguments:
                arguments["version"] = "1"
        reads_alias = case.operation.path.endswith("/alias") and case.method.upper() == "GET"
        if reads_alias and "alias" in arguments:
            arguments["alias"] = "prod"
        if isinstance(arguments.get("order_by"), list):
            # One clause: two on the same key (however spelled) are refused.
            arguments["order_by"] = arguments["order_by"][:1]
        if arguments is case.body:
            # A NUL anywhere is refused, ignored fields included (the body's description); the
            # known fields' patterns hold none.
            _drop_nul(arguments)


def _drop_nul(value: Any) -> None:
    if isinstance(value, dict):
        for key in [k for k, item in value.items() if _has_nul([k, item])]:
            del value[key]
    elif isinstance(value, list):
        value[:] = [item for item in value if not _has_nul(item)]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    return False


def _run(case: Any, role: str, registry: dict[str, Any]) -> None:
    """Send the case as `role` and check the answer."""
    _fresh_caches()
    if case.meta is not None and case.meta.generation.mode.is_positive:
        _positive_fixes(case)
    case.call_and_validate(headers=registry[role], checks=CHECKS[role])


# Function-scoped fixtures (conftest's, django_db's savepoint) are fine here: every request
# starts from the same registry, whatever the example before it did.
_SETTINGS = hypothesis.settings(deadline=None, suppress_health_check=list(HealthCheck))
pytestmark = pytest.mark.django_db


@superuser_schema.parametrize()
@_SETTINGS
def test_superuser(case, registry):
    _run(case, "superuser", registry)


@user_schema.parametrize()
@_SETTINGS
def test_plain_user(case, registry):
    _run(case, "user", registry)


@anonymous_schema.parametrize()
@_SETTINGS
def test_anonymous(case, registry):
    _run(case, "anonymous", registry)
