"""Every API route by every role: the expected status, and nothing changed by a refused write.

The routes come from the URL configuration itself: a route that is not in MATRIX fails
`test_every_route_is_in_the_matrix`, so a new door cannot be added without saying who may use it.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.actors import Actor
from accounts.models import ApiToken
from accounts.tokens import token_create
from registry import services
from registry.models import (
    Event,
    ModelAlias,
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelGroupGrant,
    RegisteredModelTag,
    RegisteredModelUserGrant,
)
from registry.permissions import Level
from webhooks.choices import DeliveryState
from webhooks.models import Delivery, Subscription
from webhooks.services import subscription_create
from workflows.models import Comment, Policy, Review, TransitionRequest
from workflows.policies import policy_create
from workflows.services import comment_create, request_create

pytestmark = pytest.mark.django_db

PASSWORD = "matrix-password-1"

# What a route needs: a level on the model "m", or one of these.
ANY_USER = "any signed-in caller"  # lists, searches: filtered, never refused
CREATE = "may create models"
OWN_TOKENS = "manages own tokens (not with a token)"
AUTHOR = "the author only (the comment is the owner's)"
PUBLIC = "no authentication"
DOCS = "no authentication, but wrong credentials are refused"
AUDITOR = "a registry-wide read grant (no role here has one)"
SUPERUSER = "a superuser: registry-wide webhooks (no role here is one)"


@dataclass(frozen=True)
class Route:
    needs: Level | str
    request: Callable[[dict[str, Any]], tuple[str, Any]]  # ctx → (path, body or query)
    write: bool = True


def _q(path: str, **query: Any) -> Callable[[dict[str, Any]], tuple[str, Any]]:
    return lambda ctx: (path.format(**ctx), {k: v.format(**ctx) for k, v in query.items()})


def _b(path: str, body: dict[str, Any]) -> Callable[[dict[str, Any]], tuple[str, Any]]:
    return lambda ctx: (path.format(**ctx), body)


def _read(needs: Level | str, path: str, **query: Any) -> Route:
    return Route(needs, _q(path, **query), write=False)


def _own_token_path(ctx: dict[str, Any]) -> tuple[str, Any]:
    return f"/api/v1/tokens/{ctx['own_token_id']}/", None


def _acl(ctx: dict[str, Any]) -> dict[str, Any]:
    return {
        "access_control_list": [
            {"user_name": ctx["caller"] or "nobody", "permission_level": "CAN_MANAGE"}
        ]
    }


MLF = "/api/2.0/mlflow/"
V1 = "/api/v1/"
DBX_V1_STAGING = {"name": "m", "version": "1", "stage": "Staging"}
# Does not resolve here: accepted when saved, and a test send fails fast without a network.
HOOK_URL = "https://hooks.example.com/modelgate"

MATRIX: dict[str, dict[str, Route]] = {
    # native API
    "api/v1/models/": {
        "GET": _read(ANY_USER, V1 + "models/"),
        "POST": Route(CREATE, _b(V1 + "models/", {"name": "brand-new"})),
    },
    "api/v1/models/<str:name>/": {
        "GET": _read(Level.CAN_READ, V1 + "models/m/"),
        "PATCH": Route(Level.CAN_EDIT, _b(V1 + "models/m/", {"description": "x"})),
        "DELETE": Route(Level.CAN_MANAGE, _q(V1 + "models/m/")),
    },
    "api/v1/models/<str:name>/rename/": {
        "POST": Route(Level.CAN_MANAGE, _b(V1 + "models/m/rename/", {"new_name": "m2"})),
    },
    "api/v1/models/<str:name>/permissions/": {
        "GET": _read(Level.CAN_MANAGE, V1 + "models/m/permissions/"),
        "PUT": Route(Level.CAN_MANAGE, lambda ctx: (V1 + "models/m/permissions/", _acl(ctx))),
        "PATCH": Route(Level.CAN_MANAGE, lambda ctx: (V1 + "models/m/permissions/", _acl(ctx))),
    },
    "api/v1/models/<str:name>/tags/<str:key>/": {
        "PUT": Route(Level.CAN_EDIT, _b(V1 + "models/m/tags/k/", {"value": "new"})),
        "DELETE": Route(Level.CAN_EDIT, _q(V1 + "models/m/tags/k/")),
    },
    "api/v1/models/<str:name>/versions/": {
        "GET": _read(Level.CAN_READ, V1 + "models/m/versions/"),
        "POST": Route(Level.CAN_EDIT, _b(V1 + "models/m/versions/", {"source": "s3://b/9"})),
    },
    "api/v1/models/<str:name>/versions/<str:version>/": {
        "GET": _read(Level.CAN_READ, V1 + "models/m/versions/1/"),
        "PATCH": Route(Level.CAN_EDIT, _b(V1 + "models/m/versions/1/", {"description": "x"})),
        "DELETE": Route(Level.CAN_MANAGE, _q(V1 + "models/m/versions/1/")),
    },
    "api/v1/models/<str:name>/versions/<str:version>/stage/": {
        "POST": Route(
            Level.CAN_MANAGE_STAGING_VERSIONS,
            _b(V1 + "models/m/versions/1/stage/", {"stage": "Staging"}),
        ),
    },
    "api/v1/models/<str:name>/versions/<str:version>/tags/<str:key>/": {
        "PUT": Route(Level.CAN_EDIT, _b(V1 + "models/m/versions/1/tags/k/", {"value": "new"})),
        "DELETE": Route(Level.CAN_EDIT, _q(V1 + "models/m/versions/1/tags/k/")),
    },
    "api/v1/models/<str:name>/aliases/": {
        "GET": _read(Level.CAN_READ, V1 + "models/m/aliases/"),
    },
    "api/v1/models/<str:name>/aliases/<str:alias>/": {
        "GET": _read(Level.CAN_READ, V1 + "models/m/aliases/prod/"),
        "PUT": Route(Level.CAN_EDIT, _b(V1 + "models/m/aliases/prod/", {"version": 2})),
        "DELETE": Route(Level.CAN_EDIT, _q(V1 + "models/m/aliases/prod/")),
    },
    "api/v1/events/": {"GET": _read(ANY_USER, V1 + "events/")},
    "api/v1/tokens/": {
        "GET": _read(ANY_USER, V1 + "tokens/"),
        "POST": Route(OWN_TOKENS, _b(V1 + "tokens/", {"name": "new"})),
    },
    "api/v1/tokens/<int:pk>/": {
        "GET": Route(ANY_USER, _own_token_path, write=False),
        "DELETE": Route(OWN_TOKENS, _own_token_path),
    },
    # MLflow routes (the same views serve ajax-api/2.0/mlflow/ and api/2.0/preview/mlflow/)
    "api/2.0/mlflow/registered-models/create": {
        "POST": Route(CREATE, _b(MLF + "registered-models/create", {"name": "brand-new"})),
    },
    "api/2.0/mlflow/registered-models/get": {
        "GET": _read(Level.CAN_READ, MLF + "registered-models/get", name="m"),
    },
    "api/2.0/mlflow/registered-models/update": {
        "PATCH": Route(
            Level.CAN_EDIT,
            _b(MLF + "registered-models/update", {"name": "m", "description": "x"}),
        ),
    },
    "api/2.0/mlflow/registered-models/rename": {
        "POST": Route(
            Level.CAN_MANAGE,
            _b(MLF + "registered-models/rename", {"name": "m", "new_name": "m2"}),
        ),
    },
    "api/2.0/mlflow/registered-models/delete": {
        "DELETE": Route(Level.CAN_MANAGE, _b(MLF + "registered-models/delete", {"name": "m"})),
    },
    "api/2.0/mlflow/registered-models/search": {
        "GET": _read(ANY_USER, MLF + "registered-models/search"),
    },
    "api/2.0/mlflow/registered-models/list": {
        "GET": _read(ANY_USER, MLF + "registered-models/list"),
    },
    "api/2.0/mlflow/registered-models/get-latest-versions": {
        "GET": _read(Level.CAN_READ, MLF + "registered-models/get-latest-versions", name="m"),
        "POST": Route(
            Level.CAN_READ,
            _b(MLF + "registered-models/get-latest-versions", {"name": "m"}),
            write=False,
        ),
    },
    "api/2.0/mlflow/registered-models/set-tag": {
        "POST": Route(
            Level.CAN_EDIT,
            _b(MLF + "registered-models/set-tag", {"name": "m", "key": "k", "value": "new"}),
        ),
    },
    "api/2.0/mlflow/registered-models/delete-tag": {
        "DELETE": Route(
            Level.CAN_EDIT, _b(MLF + "registered-models/delete-tag", {"name": "m", "key": "k"})
        ),
    },
    "api/2.0/mlflow/registered-models/alias": {
        "GET": _read(Level.CAN_READ, MLF + "registered-models/alias", name="m", alias="prod"),
        "POST": Route(
            Level.CAN_EDIT,
            _b(MLF + "registered-models/alias", {"name": "m", "alias": "prod", "version": "2"}),
        ),
        "DELETE": Route(
            Level.CAN_EDIT, _b(MLF + "registered-models/alias", {"name": "m", "alias": "prod"})
        ),
    },
    "api/2.0/mlflow/model-versions/create": {
        "POST": Route(
            Level.CAN_EDIT, _b(MLF + "model-versions/create", {"name": "m", "source": "s3://b/9"})
        ),
    },
    "api/2.0/mlflow/model-versions/get": {
        "GET": _read(Level.CAN_READ, MLF + "model-versions/get", name="m", version="1"),
    },
    "api/2.0/mlflow/model-versions/update": {
        "PATCH": Route(
            Level.CAN_EDIT,
            _b(MLF + "model-versions/update", {"name": "m", "version": "1", "description": "x"}),
        ),
    },
    "api/2.0/mlflow/model-versions/transition-stage": {
        "POST": Route(
            Level.CAN_MANAGE_STAGING_VERSIONS,
            _b(
                MLF + "model-versions/transition-stage",
                {
                    "name": "m",
                    "version": "1",
                    "stage": "Staging",
                    "archive_existing_versions": False,
                },
            ),
        ),
    },
    "api/2.0/mlflow/model-versions/delete": {
        "DELETE": Route(
            Level.CAN_MANAGE, _b(MLF + "model-versions/delete", {"name": "m", "version": "1"})
        ),
    },
    "api/2.0/mlflow/model-versions/search": {
        "GET": _read(ANY_USER, MLF + "model-versions/search"),
    },
    "api/2.0/mlflow/model-versions/get-download-uri": {
        "GET": _read(
            Level.CAN_READ, MLF + "model-versions/get-download-uri", name="m", version="1"
        ),
    },
    "api/2.0/mlflow/model-versions/set-tag": {
        "POST": Route(
            Level.CAN_EDIT,
            _b(
                MLF + "model-versions/set-tag",
                {"name": "m", "version": "1", "key": "k", "value": "new"},
            ),
        ),
    },
    "api/2.0/mlflow/model-versions/delete-tag": {
        "DELETE": Route(
            Level.CAN_EDIT,
            _b(MLF + "model-versions/delete-tag", {"name": "m", "version": "1", "key": "k"}),
        ),
    },
    "api/2.0/mlflow/databricks/registered-models/get": {
        "GET": _read(Level.CAN_READ, MLF + "databricks/registered-models/get", name="m"),
    },
    # Databricks permissions API
    "api/2.0/permissions/registered-models/<str:model_id>": {
        "GET": _read(Level.CAN_MANAGE, "/api/2.0/permissions/registered-models/{model_id}"),
        "PUT": Route(
            Level.CAN_MANAGE,
            lambda ctx: (f"/api/2.0/permissions/registered-models/{ctx['model_id']}", _acl(ctx)),
        ),
        "PATCH": Route(
            Level.CAN_MANAGE,
            lambda ctx: (f"/api/2.0/permissions/registered-models/{ctx['model_id']}", _acl(ctx)),
        ),
    },
    "api/2.0/permissions/registered-models/<str:model_id>/permissionLevels": {
        "GET": _read(
            Level.CAN_READ, "/api/2.0/permissions/registered-models/{model_id}/permissionLevels"
        ),
    },
    # approval workflow
    "api/v1/policies/": {
        "GET": _read(ANY_USER, V1 + "policies/"),
        "POST": Route(
            Level.CAN_MANAGE, _b(V1 + "policies/", {"model": "m", "target": "Production"})
        ),
    },
    "api/v1/policies/<int:pk>/": {
        "GET": _read(Level.CAN_READ, V1 + "policies/{policy_id}/"),
        "PATCH": Route(
            Level.CAN_MANAGE, _b(V1 + "policies/{policy_id}/", {"required_approvals": 2})
        ),
        "DELETE": Route(Level.CAN_MANAGE, _q(V1 + "policies/{policy_id}/")),
    },
    "api/v1/transition-requests/": {
        "GET": _read(ANY_USER, V1 + "transition-requests/"),
        "POST": Route(
            Level.CAN_READ,
            _b(V1 + "transition-requests/", {"model": "m", "version": 2, "target": "Staging"}),
        ),
    },
    "api/v1/transition-requests/<int:pk>/": {
        "GET": _read(Level.CAN_READ, V1 + "transition-requests/{request_id}/"),
    },
    "api/v1/transition-requests/<int:pk>/approve/": {
        "POST": Route(
            Level.CAN_MANAGE_STAGING_VERSIONS, _q(V1 + "transition-requests/{request_id}/approve/")
        ),
    },
    "api/v1/transition-requests/<int:pk>/reject/": {
        "POST": Route(
            Level.CAN_MANAGE_STAGING_VERSIONS, _q(V1 + "transition-requests/{request_id}/reject/")
        ),
    },
    "api/v1/transition-requests/<int:pk>/cancel/": {
        "POST": Route(Level.CAN_MANAGE, _q(V1 + "transition-requests/{request_id}/cancel/")),
    },
    # Databricks workflow routes (the request is the owner's v1 → Staging, which no policy guards)
    "api/2.0/mlflow/transition-requests/create": {
        "POST": Route(
            Level.CAN_READ,
            _b(
                MLF + "transition-requests/create",
                {"name": "m", "version": "2", "stage": "Staging"},
            ),
        ),
    },
    "api/2.0/mlflow/transition-requests/approve": {
        "POST": Route(
            Level.CAN_MANAGE_STAGING_VERSIONS,
            _b(
                MLF + "transition-requests/approve",
                {**DBX_V1_STAGING, "archive_existing_versions": False},
            ),
        ),
    },
    "api/2.0/mlflow/transition-requests/reject": {
        "POST": Route(
            Level.CAN_MANAGE_STAGING_VERSIONS,
            _b(MLF + "transition-requests/reject", DBX_V1_STAGING),
        ),
    },
    "api/2.0/mlflow/transition-requests/delete": {
        "DELETE": Route(
            Level.CAN_MANAGE,
            _b(MLF + "transition-requests/delete", {**DBX_V1_STAGING, "creator": "owner"}),
        ),
    },
    "api/2.0/mlflow/transition-requests/list": {
        "GET": _read(Level.CAN_READ, MLF + "transition-requests/list", name="m", version="1"),
    },
    "api/2.0/mlflow/comments/create": {
        "POST": Route(
            Level.CAN_READ,
            _b(MLF + "comments/create", {"name": "m", "version": "1", "comment": "hi"}),
        ),
    },
    "api/2.0/mlflow/comments/update": {
        "PATCH": Route(
            AUTHOR,
            lambda ctx: (
                MLF + "comments/update",
                {"id": str(ctx["comment_id"]), "comment": "edited"},
            ),
        ),
    },
    "api/2.0/mlflow/comments/delete": {
        "DELETE": Route(
            Level.CAN_MANAGE, lambda ctx: (MLF + "comments/delete", {"id": str(ctx["comment_id"])})
        ),
    },
    "api/2.0/mlflow/databricks/model-versions/transition-stage": {
        "POST": Route(
            Level.CAN_MANAGE_STAGING_VERSIONS,
            _b(
                MLF + "databricks/model-versions/transition-stage",
                {**DBX_V1_STAGING, "archive_existing_versions": False, "comment": "go"},
            ),
        ),
    },
    "api/v1/models/<str:name>/versions/<str:version>/comments/": {
        "GET": _read(Level.CAN_READ, V1 + "models/m/versions/1/comments/"),
        "POST": Route(Level.CAN_READ, _b(V1 + "models/m/versions/1/comments/", {"text": "hi"})),
    },
    "api/v1/models/<str:name>/versions/<str:version>/activity/": {
        "GET": _read(Level.CAN_READ, V1 + "models/m/versions/1/activity/"),
    },
    "api/v1/comments/<int:pk>/": {
        "PATCH": Route(AUTHOR, _b(V1 + "comments/{comment_id}/", {"text": "edited"})),
        "DELETE": Route(Level.CAN_MANAGE, _q(V1 + "comments/{comment_id}/")),
    },
    # the OpenAPI schema and its browsable UI: public documentation, no data
    "api/schema/": {"GET": _read(DOCS, "/api/schema/")},
    "api/docs/": {"GET": _read(DOCS, "/api/docs/")},
    # health, for load balancers and probes
    "healthz": {"GET": _read(PUBLIC, "/healthz")},
    "readyz": {"GET": _read(PUBLIC, "/readyz")},
    # the scrape token or MODELGATE_METRICS_ALLOWED_NETWORKS, not a user's credentials; the
    # test client is on loopback, allowed by default (tests/test_metrics.py: the refusals)
    "metrics": {"GET": _read(PUBLIC, "/metrics")},
    # history for auditors (issue 7)
    "api/v1/events/verify/": {"GET": _read(AUDITOR, V1 + "events/verify/")},
    "api/v1/events/export/": {"GET": _read(ANY_USER, V1 + "events/export/", format="csv")},
    "api/v1/models/<str:name>/history/": {"GET": _read(Level.CAN_READ, V1 + "models/m/history/")},
    "api/v1/models/<str:name>/aliases/<str:alias>/history/": {
        "GET": _read(Level.CAN_READ, V1 + "models/m/aliases/prod/history/")
    },
    # webhooks (issue 6): the model's webhooks are for its managers
    "api/v1/webhooks/": {
        "GET": _read(ANY_USER, V1 + "webhooks/"),
        "POST": Route(Level.CAN_MANAGE, _b(V1 + "webhooks/", {"url": HOOK_URL, "model": "m"})),
    },
    "api/v1/webhooks/<str:pk>/": {
        "GET": _read(Level.CAN_MANAGE, V1 + "webhooks/{webhook_id}/"),
        "PATCH": Route(Level.CAN_MANAGE, _b(V1 + "webhooks/{webhook_id}/", {"name": "x"})),
        "DELETE": Route(Level.CAN_MANAGE, _q(V1 + "webhooks/{webhook_id}/")),
    },
    "api/v1/webhooks/<str:pk>/test/": {
        "POST": Route(Level.CAN_MANAGE, _b(V1 + "webhooks/{webhook_id}/test/", {})),
    },
    "api/v1/webhooks/<str:pk>/deliveries/": {
        "GET": _read(Level.CAN_MANAGE, V1 + "webhooks/{webhook_id}/deliveries/"),
    },
    "api/v1/deliveries/<str:pk>/": {
        "GET": _read(Level.CAN_MANAGE, V1 + "deliveries/{delivery_id}/"),
    },
    "api/v1/deliveries/<str:pk>/redeliver/": {
        "POST": Route(Level.CAN_MANAGE, _q(V1 + "deliveries/{delivery_id}/redeliver/")),
    },
    "api/v1/deliveries/replay/": {
        "POST": Route(
            Level.CAN_MANAGE,
            lambda ctx: (
                V1 + "deliveries/replay/",
                {"since": "2000-01-01T00:00:00Z", "webhook": ctx["webhook_id"]},
            ),
        ),
    },
    # MLflow webhooks are registry-wide: a superuser's; the list is filtered
    "api/2.0/mlflow/webhooks": {
        "GET": _read(ANY_USER, MLF + "webhooks"),
        "POST": Route(
            SUPERUSER,
            _b(
                MLF + "webhooks",
                {
                    "name": "new",
                    "url": HOOK_URL,
                    "events": [{"entity": "MODEL_VERSION", "action": "CREATED"}],
                },
            ),
        ),
    },
    "api/2.0/mlflow/webhooks/<str:webhook_id>": {
        "GET": _read(SUPERUSER, MLF + "webhooks/{mlflow_hook_id}"),
        "PATCH": Route(SUPERUSER, _b(MLF + "webhooks/{mlflow_hook_id}", {"name": "x"})),
        "DELETE": Route(SUPERUSER, _q(MLF + "webhooks/{mlflow_hook_id}")),
    },
    "api/2.0/mlflow/webhooks/<str:webhook_id>/test": {
        "POST": Route(SUPERUSER, _b(MLF + "webhooks/{mlflow_hook_id}/test", {})),
    },
    # Databricks registry webhooks (the one here is model m's)
    "api/2.0/mlflow/registry-webhooks/create": {
        "POST": Route(
            Level.CAN_MANAGE,
            _b(
                MLF + "registry-webhooks/create",
                {
                    "model_name": "m",
                    "events": ["MODEL_VERSION_CREATED"],
                    "http_url_spec": {"url": HOOK_URL},
                },
            ),
        ),
    },
    "api/2.0/mlflow/registry-webhooks/list": {
        "GET": _read(ANY_USER, MLF + "registry-webhooks/list"),
    },
    "api/2.0/mlflow/registry-webhooks/update": {
        "PATCH": Route(
            Level.CAN_MANAGE,
            lambda ctx: (
                MLF + "registry-webhooks/update",
                {"id": ctx["dbx_hook_id"], "status": "DISABLED"},
            ),
        ),
    },
    "api/2.0/mlflow/registry-webhooks/delete": {
        "DELETE": Route(Level.CAN_MANAGE, _q(MLF + "registry-webhooks/delete?id={dbx_hook_id}")),
    },
    "api/2.0/mlflow/registry-webhooks/test": {
        "POST": Route(
            Level.CAN_MANAGE,
            lambda ctx: (MLF + "registry-webhooks/test", {"id": ctx["dbx_hook_id"]}),
        ),
    },
}

# Routes that are not API doors: the admin (its own login, tested apart), static assets, and
# the catch-all that answers ENDPOINT_NOT_FOUND under the MLflow prefixes.
NOT_API = ("admin/", "static/", "^static/", "^(?:api|ajax-api)/2\\.0/(?:preview/)?mlflow/")
MLFLOW_ALIASES = ("ajax-api/2.0/mlflow/", "api/2.0/preview/mlflow/")


def _routes(patterns: list[Any], prefix: str = "") -> list[str]:
    found = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found.extend(_routes(pattern.url_patterns, route))
        elif isinstance(pattern, URLPattern):
            found.append(route)
    return found


def test_every_route_is_in_the_matrix():
    routes = set()
    for route in _routes(get_resolver().url_patterns):
        if route.startswith(NOT_API):
            continue
        for alias in MLFLOW_ALIASES:
            if route.startswith(alias):
                route = "api/2.0/mlflow/" + route.removeprefix(alias)
        routes.add(route)
    assert routes == set(MATRIX), (
        f"not in the matrix: {sorted(routes - set(MATRIX))}; "
        f"in the matrix but gone: {sorted(set(MATRIX) - routes)}"
    )


# --- roles ----------------------------------------------------------------------------------

ROLES = [
    "anonymous",
    "no_grant",
    "can_read",
    "can_edit",
    "can_manage_staging_versions",
    "can_manage_production_versions",
    "can_manage",
    "group_can_edit",
    "read_only_token",
    "other_model_token",
    "expired_token",
]


def _level_on_m(role: str) -> Level | None:
    """The role's effective level on model "m"; None when it does not authenticate."""
    if role in ("anonymous", "expired_token"):
        return None
    if role in ("no_grant", "other_model_token"):
        return Level.NONE
    if role == "group_can_edit":
        return Level.CAN_EDIT
    if role == "read_only_token":
        return Level.CAN_READ
    return Level[role.upper()]


def _uses_token(role: str) -> bool:
    return role.endswith("_token")


def _expected(role: str, route: Route) -> int | str:
    """401/403/404, or "ok" for any 2xx (and 304 for none here)."""
    level = _level_on_m(role)
    if route.needs == PUBLIC:
        return "ok"
    if route.needs == DOCS:
        return 401 if role == "expired_token" else "ok"
    if level is None:
        return 401
    if route.needs == ANY_USER:
        return "ok"
    if route.needs in (AUDITOR, SUPERUSER):
        return 403
    if route.needs == CREATE:
        return 403 if _uses_token(role) else "ok"
    if route.needs == OWN_TOKENS:
        return 403 if _uses_token(role) else "ok"
    if level is Level.NONE:
        return 404
    if route.needs == AUTHOR:
        return 403
    assert isinstance(route.needs, Level)
    if role == "read_only_token" and route.write:
        return 403  # a read-only token writes nothing, not even what CAN_READ allows
    return 403 if level < route.needs else "ok"


@pytest.fixture
def world(django_user_model):
    """Model "m" (v1 with tag k and alias prod, v2), another model, and the role's caller."""
    owner = django_user_model.objects.create_user(username="owner", password=PASSWORD)
    actor = Actor(user=owner)
    model = services.model_create(name="m", actor=actor, tags={"k": "v"})
    for n in (1, 2):
        services.version_create(model=model, source=f"s3://b/{n}", actor=actor)
    v1 = ModelVersion.objects.get(model=model, version=1)
    services.version_tag_set(version=v1, key="k", value="v", actor=actor)
    services.alias_set(model=model, alias="prod", version=1, actor=actor)
    other = services.model_create(name="other", actor=actor)
    policy = policy_create(actor=actor, model=model, target="Archived")
    request = request_create(version=v1, target="Staging", actor=actor)
    comment = comment_create(version=v1, actor=actor, text="first")
    webhook = subscription_create(actor=actor, model=model, url=HOOK_URL, events=["*"])
    delivery = Delivery.objects.create(
        subscription=webhook.subscription,
        event=Event.objects.order_by("-seq").first(),
        event_type="comment.created",
        body="{}",
        state=DeliveryState.FAILED,
    )
    mlflow_hook = subscription_create(
        actor=Actor.system(), flavor="mlflow", url=HOOK_URL, events=["model_version.created"]
    )
    dbx_hook = subscription_create(
        actor=actor, model=model, flavor="databricks", url=HOOK_URL, events=["COMMENT_CREATED"]
    )
    return {
        "owner": owner,
        "model": model,
        "other": other,
        "ids": {
            "policy_id": policy.pk,
            "request_id": request.pk,
            "comment_id": comment.pk,
            "webhook_id": webhook.subscription.id.hex,
            "delivery_id": delivery.pk,
            "mlflow_hook_id": mlflow_hook.subscription.id.hex,
            "dbx_hook_id": dbx_hook.subscription.id.hex,
        },
    }


def _client_for(role: str, world: dict[str, Any], django_user_model: Any) -> tuple[APIClient, str]:
    client = APIClient()
    if role == "anonymous":
        return client, ""
    user = django_user_model.objects.create_user(username="caller", password=PASSWORD)
    model, other = world["model"], world["other"]

    def grant(target: RegisteredModel, level: Level) -> None:
        services.permissions_update(
            model=target, actor=Actor.system(), users={"caller": level}, groups={}
        )

    if role.startswith("can_"):
        grant(model, Level[role.upper()])
    elif role == "group_can_edit":
        group = Group.objects.create(name="editors")
        user.groups.add(group)
        services.permissions_update(
            model=model, actor=Actor.system(), users={}, groups={"editors": Level.CAN_EDIT}
        )
    elif role in ("read_only_token", "other_model_token", "expired_token"):
        grant(model, Level.CAN_MANAGE)
        grant(other, Level.CAN_MANAGE)
    if _uses_token(role):
        issued = token_create(
            user=user,
            read_only=role == "read_only_token",
            models=[other] if role == "other_model_token" else None,
        )
        if role == "expired_token":
            ApiToken.objects.filter(pk=issued.token.pk).update(
                expires_at=timezone.now() - timedelta(minutes=1)
            )
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    else:
        raw = base64.b64encode(f"caller:{PASSWORD}".encode()).decode()
        client.credentials(HTTP_AUTHORIZATION=f"Basic {raw}")
    return client, "caller"


# Refused reviews are kept in the history as `…_refused` events (docs/auditing.md), which is
# all they may leave behind.
KEEPS_REFUSAL = {
    "api/v1/transition-requests/<int:pk>/approve/",
    "api/v1/transition-requests/<int:pk>/reject/",
    "api/2.0/mlflow/transition-requests/approve",
    "api/2.0/mlflow/transition-requests/reject",
}


def _refused_events() -> int:
    return Event.objects.filter(type__endswith="_refused").count()


def _state() -> dict[str, Any]:
    """Everything a refused write must leave as it was."""
    return {
        "events": list(
            Event.objects.exclude(type__endswith="_refused").values_list("seq", flat=True)
        ),
        "models": list(RegisteredModel.objects.values_list("name", "description", "updated_at")),
        "versions": list(
            ModelVersion.objects.values_list("version", "stage", "description", "deleted_at")
        ),
        "model_tags": list(RegisteredModelTag.objects.values_list("key", "value")),
        "version_tags": list(ModelVersionTag.objects.values_list("key", "value")),
        "aliases": list(ModelAlias.objects.values_list("alias", "version_id")),
        "grants": list(RegisteredModelUserGrant.objects.values_list("user_id", "permission_id"))
        + list(RegisteredModelGroupGrant.objects.values_list("group_id", "permission_id")),
        "tokens": list(ApiToken.objects.values_list("prefix", "revoked_at")),
        "policies": list(Policy.objects.values_list("pk", "required_approvals")),
        "requests": list(TransitionRequest.objects.values_list("pk", "status")),
        "reviews": list(Review.objects.values_list("pk", flat=True)),
        "comments": list(Comment.objects.values_list("pk", "text")),
        "webhooks": list(
            Subscription.objects.values_list("pk", "name", "url", "status", "secret_encrypted")
        ),
        "deliveries": list(Delivery.objects.values_list("pk", "state", "attempts")),
    }


CASES = [
    pytest.param(route_key, method, role, id=f"{method} {route_key} as {role}")
    for route_key, methods in MATRIX.items()
    for method, role in itertools.product(methods, ROLES)
]


@pytest.mark.parametrize(("route_key", "method", "role"), CASES)
def test_route_as_role(route_key, method, role, world, django_user_model, settings):
    settings.MODELGATE_AUTH_FAILURES_PER_MINUTE = 10_000
    settings.MODELGATE_APPROVE_WAIT_SECONDS = 0  # on_commit tasks do not run in this test
    route = MATRIX[route_key][method]
    client, caller = _client_for(role, world, django_user_model)
    own_token = ApiToken.objects.filter(user__username=caller).first()
    if own_token is None and caller:
        own_token = token_create(user=django_user_model.objects.get(username=caller)).token
    ctx = {
        "caller": caller,
        "model_id": world["model"].pk,
        "own_token_id": own_token.pk if own_token else 0,
        **world["ids"],
    }
    path, payload = route.request(ctx)
    before = _state()
    refused_before = _refused_events()
    if method == "GET":
        response = client.get(path, payload or {})
    else:
        response = getattr(client, method.lower())(path, payload, format="json")
    expected = _expected(role, route)
    if expected == "ok":
        assert 200 <= response.status_code < 300, (response.status_code, response.content[:300])
    else:
        assert response.status_code == expected, (response.status_code, response.content[:300])
        if route.write:
            assert _state() == before
    kept = 1 if expected == 403 and route_key in KEEPS_REFUSAL else 0
    assert _refused_events() - refused_before == kept
