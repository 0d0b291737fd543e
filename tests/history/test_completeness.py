"""Every change through every door leaves its events in the history, complete (issue 7).

The doors come from the code, not from this file: the API routes from the URL configuration (as
tests/test_permission_matrix.py does), the admin's from the admin site's registry (each model's
add, change and delete pages, its own URLs and every action), the tasks from the Celery app and
the commands from Django's. A door that is in none of the tables below fails the matching
`test_every_…_is_listed`, so nobody adds one without saying what it records.

Each write is then made as its client makes it (the owner's bearer token, or the password where
tokens are refused; a session in the admin), from a known address with its own X-Request-ID, and
must leave exactly the events of its row, in order, each naming the actor and the token used,
the source, that request's id and address, `before` and `after` where the change has them, the
outcome and the comment. What an approval sets off is checked too: the apply task's events, by
the system, carrying the task's id and naming the approvers.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib import admin
from django.contrib.auth.management.commands import changepassword
from django.contrib.auth.models import Group
from django.core.management import call_command, get_commands
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.actors import Actor, Source
from accounts.audit import AccountEvent
from accounts.tokens import IssuedToken, token_create
from config.celery import app as celery_app
from registry import services, tasks
from registry.choices import EventType, Outcome, Stage, event_outcome
from registry.history.verify import history_verify
from registry.models import Event, ModelAlias, ModelVersion, RegisteredModel
from registry.permissions import Level
from tests.registry.test_admin import form_data
from webhooks import crypto
from webhooks.choices import WebhookEvent
from webhooks.models import Delivery, Subscription
from workflows import tasks as workflow_tasks
from workflows.choices import RequestStatus, WorkflowEvent
from workflows.guards import REQUEST_FLOW
from workflows.models import Review, TransitionRequest
from workflows.policies import policy_create
from workflows.services import comment_create, request_approve, request_create

pytestmark = pytest.mark.django_db

PASSWORD = "completeness-pw-1"
CLIENT_IP = "198.51.100.23"
TASK_ID = "apply-task-0001"
APPLYING = "Applying request #{request}, approved by {approver}."


# --- what a door must record ------------------------------------------------------------------


@dataclass(frozen=True)
class E:
    """One event a door must record, in order: its type, whether it holds a `before` and an
    `after` snapshot (False: null, as a creation has no before), the model it names (None for
    accounts events) and its comment (formatted with the world's ids)."""

    type: str
    before: bool
    after: bool
    model: str | None = "m"
    comment: str = ""


def created(type: str, model: str | None = "m", comment: str = "") -> E:
    return E(type, before=False, after=True, model=model, comment=comment)


def changed(type: str, model: str | None = "m", comment: str = "") -> E:
    return E(type, before=True, after=True, model=model, comment=comment)


def deleted(type: str, model: str | None = "m", comment: str = "") -> E:
    return E(type, before=True, after=False, model=model, comment=comment)


# What applying the world's pending request (reader's v2 → Staging) records, as the system.
APPLIED = (
    changed(EventType.VERSION_STAGE_TRANSITIONED, comment=APPLYING),
    changed(WorkflowEvent.REQUEST_APPLIED, comment=APPLYING),
)
APPROVED = changed(WorkflowEvent.REQUEST_APPROVED)


@dataclass(frozen=True)
class Write:
    """A write route: what to send, and what it records (then what the apply task records)."""

    method: str
    path: str  # formatted with the world's ids
    body: dict[str, Any] | None = None  # string values formatted too
    events: tuple[E, ...] = ()
    applied: tuple[E, ...] = ()
    basic: bool = False  # the password (HTTP Basic): token routes refuse tokens
    source: str = Source.API


V1 = "/api/v1/"
MLF = "/api/2.0/mlflow/"
ACL = {"access_control_list": [{"user_name": "gus", "permission_level": "CAN_EDIT"}]}
DBX_PENDING = {"name": "m", "version": "2", "stage": "Staging"}


def api(method: str, route: str, body: dict[str, Any] | None, *events: E, **kw: Any) -> Write:
    return Write(method, V1 + route, body, events, **kw)


def mlflow(method: str, route: str, body: dict[str, Any], *events: E, **kw: Any) -> Write:
    return Write(method, MLF + route, body, events, source=Source.MLFLOW, **kw)


# Every write route and method of the URL configuration (MLflow routes under their first prefix;
# the same views answer /ajax-api/2.0/mlflow/ and /api/2.0/preview/mlflow/).
WRITES: dict[tuple[str, str], Write] = {
    # native API: registry
    ("api/v1/models/", "POST"): api(
        "POST", "models/", {"name": "brand-new"}, created(EventType.MODEL_CREATED, "brand-new"),
    ),
    ("api/v1/models/<str:name>/", "PATCH"): api(
        "PATCH", "models/m/", {"description": "new words"}, changed(EventType.MODEL_UPDATED),
    ),
    ("api/v1/models/<str:name>/", "DELETE"): api(
        "DELETE", "models/m/", None, deleted(EventType.MODEL_DELETED),
    ),
    ("api/v1/models/<str:name>/rename/", "POST"): api(
        "POST", "models/m/rename/", {"new_name": "m2"}, changed(EventType.MODEL_RENAMED, "m2"),
    ),
    ("api/v1/models/<str:name>/permissions/", "PUT"): api(
        "PUT", "models/m/permissions/", ACL, changed(EventType.MODEL_PERMISSIONS_UPDATED),
    ),
    ("api/v1/models/<str:name>/permissions/", "PATCH"): api(
        "PATCH", "models/m/permissions/", ACL, changed(EventType.MODEL_PERMISSIONS_UPDATED),
    ),
    ("api/v1/models/<str:name>/tags/<str:key>/", "PUT"): api(
        "PUT", "models/m/tags/k/", {"value": "new"}, changed(EventType.MODEL_TAG_SET),
    ),
    ("api/v1/models/<str:name>/tags/<str:key>/", "DELETE"): api(
        "DELETE", "models/m/tags/k/", None, deleted(EventType.MODEL_TAG_DELETED),
    ),
    ("api/v1/models/<str:name>/versions/", "POST"): api(
        "POST", "models/m/versions/", {"source": "s3://b/3"}, created(EventType.VERSION_CREATED),
    ),
    ("api/v1/models/<str:name>/versions/<str:version>/", "PATCH"): api(
        "PATCH", "models/m/versions/1/", {"description": "x"}, changed(EventType.VERSION_UPDATED),
    ),
    # Version 1 carries the alias `prod`: it goes with the version, recorded first.
    ("api/v1/models/<str:name>/versions/<str:version>/", "DELETE"): api(
        "DELETE", "models/m/versions/1/", None,
        deleted(EventType.ALIAS_DELETED, comment="Removed with version 1."),
        deleted(EventType.VERSION_DELETED),
    ),
    ("api/v1/models/<str:name>/versions/<str:version>/stage/", "POST"): api(
        "POST", "models/m/versions/1/stage/", {"stage": "Staging", "comment": "go"},
        changed(EventType.VERSION_STAGE_TRANSITIONED, comment="go"),
    ),
    ("api/v1/models/<str:name>/versions/<str:version>/tags/<str:key>/", "PUT"): api(
        "PUT", "models/m/versions/1/tags/k/", {"value": "new"},
        changed(EventType.VERSION_TAG_SET),
    ),
    ("api/v1/models/<str:name>/versions/<str:version>/tags/<str:key>/", "DELETE"): api(
        "DELETE", "models/m/versions/1/tags/k/", None, deleted(EventType.VERSION_TAG_DELETED),
    ),
    ("api/v1/models/<str:name>/aliases/<str:alias>/", "PUT"): api(
        "PUT", "models/m/aliases/prod/", {"version": 2}, changed(EventType.ALIAS_SET),
    ),
    ("api/v1/models/<str:name>/aliases/<str:alias>/", "DELETE"): api(
        "DELETE", "models/m/aliases/prod/", None, deleted(EventType.ALIAS_DELETED),
    ),
    # A read that is recorded: every export is in the history.
    ("api/v1/events/export/", "GET"): api(
        "GET", "events/export/", {"format": "jsonl"}, created(EventType.HISTORY_EXPORTED, None),
    ),
    # native API: accounts (with the password: tokens do not manage tokens)
    ("api/v1/tokens/", "POST"): api(
        "POST", "tokens/", {"name": "ci"}, created(AccountEvent.TOKEN_CREATED, None), basic=True,
    ),
    ("api/v1/tokens/<int:pk>/", "DELETE"): api(
        "DELETE", "tokens/{spare}/", None, changed(AccountEvent.TOKEN_REVOKED, None), basic=True,
    ),
    # native API: workflow
    ("api/v1/policies/", "POST"): api(
        "POST", "policies/", {"model": "m", "target": "Production"},
        created(WorkflowEvent.POLICY_CREATED),
    ),
    ("api/v1/policies/<int:pk>/", "PATCH"): api(
        "PATCH", "policies/{policy}/", {"required_approvals": 2},
        changed(WorkflowEvent.POLICY_UPDATED),
    ),
    ("api/v1/policies/<int:pk>/", "DELETE"): api(
        "DELETE", "policies/{policy}/", None, deleted(WorkflowEvent.POLICY_DELETED),
    ),
    ("api/v1/transition-requests/", "POST"): api(
        "POST", "transition-requests/",
        {"model": "m", "version": 1, "target": "Production", "comment": "ready"},
        created(WorkflowEvent.REQUEST_CREATED, comment="ready"),
    ),
    # The approval reaches the quorum: two events, then the task applies it.
    ("api/v1/transition-requests/<int:pk>/approve/", "POST"): api(
        "POST", "transition-requests/{request}/approve/", {"comment": "fine"},
        changed(WorkflowEvent.REQUEST_APPROVAL_RECORDED, comment="fine"),
        APPROVED,
        applied=APPLIED,
    ),
    ("api/v1/transition-requests/<int:pk>/reject/", "POST"): api(
        "POST", "transition-requests/{request}/reject/", {"comment": "no"},
        changed(WorkflowEvent.REQUEST_REJECTED, comment="no"),
    ),
    ("api/v1/transition-requests/<int:pk>/cancel/", "POST"): api(
        "POST", "transition-requests/{request}/cancel/", {"comment": "withdrawn"},
        changed(WorkflowEvent.REQUEST_CANCELLED, comment="withdrawn"),
    ),
    ("api/v1/models/<str:name>/versions/<str:version>/comments/", "POST"): api(
        "POST", "models/m/versions/1/comments/", {"text": "hi"},
        created(WorkflowEvent.COMMENT_CREATED, comment="hi"),
    ),
    ("api/v1/comments/<int:pk>/", "PATCH"): api(
        "PATCH", "comments/{comment}/", {"text": "edited"}, changed(WorkflowEvent.COMMENT_UPDATED),
    ),
    ("api/v1/comments/<int:pk>/", "DELETE"): api(
        "DELETE", "comments/{comment}/", None, deleted(WorkflowEvent.COMMENT_DELETED),
    ),
    # MLflow routes
    ("api/2.0/mlflow/registered-models/create", "POST"): mlflow(
        "POST", "registered-models/create", {"name": "brand-new"},
        created(EventType.MODEL_CREATED, "brand-new"),
    ),
    ("api/2.0/mlflow/registered-models/update", "PATCH"): mlflow(
        "PATCH", "registered-models/update", {"name": "m", "description": "x"},
        changed(EventType.MODEL_UPDATED),
    ),
    ("api/2.0/mlflow/registered-models/rename", "POST"): mlflow(
        "POST", "registered-models/rename", {"name": "m", "new_name": "m2"},
        changed(EventType.MODEL_RENAMED, "m2"),
    ),
    ("api/2.0/mlflow/registered-models/delete", "DELETE"): mlflow(
        "DELETE", "registered-models/delete", {"name": "m"}, deleted(EventType.MODEL_DELETED)
    ),
    ("api/2.0/mlflow/registered-models/set-tag", "POST"): mlflow(
        "POST", "registered-models/set-tag", {"name": "m", "key": "k", "value": "new"},
        changed(EventType.MODEL_TAG_SET),
    ),
    ("api/2.0/mlflow/registered-models/delete-tag", "DELETE"): mlflow(
        "DELETE", "registered-models/delete-tag", {"name": "m", "key": "k"},
        deleted(EventType.MODEL_TAG_DELETED),
    ),
    ("api/2.0/mlflow/registered-models/alias", "POST"): mlflow(
        "POST", "registered-models/alias", {"name": "m", "alias": "prod", "version": "2"},
        changed(EventType.ALIAS_SET),
    ),
    ("api/2.0/mlflow/registered-models/alias", "DELETE"): mlflow(
        "DELETE", "registered-models/alias", {"name": "m", "alias": "prod"},
        deleted(EventType.ALIAS_DELETED),
    ),
    ("api/2.0/mlflow/model-versions/create", "POST"): mlflow(
        "POST", "model-versions/create", {"name": "m", "source": "s3://b/3"},
        created(EventType.VERSION_CREATED),
    ),
    ("api/2.0/mlflow/model-versions/update", "PATCH"): mlflow(
        "PATCH", "model-versions/update", {"name": "m", "version": "1", "description": "x"},
        changed(EventType.VERSION_UPDATED),
    ),
    ("api/2.0/mlflow/model-versions/transition-stage", "POST"): mlflow(
        "POST", "model-versions/transition-stage",
        {"name": "m", "version": "1", "stage": "Staging", "archive_existing_versions": False},
        changed(EventType.VERSION_STAGE_TRANSITIONED),
    ),
    ("api/2.0/mlflow/model-versions/delete", "DELETE"): mlflow(
        "DELETE", "model-versions/delete", {"name": "m", "version": "1"},
        deleted(EventType.ALIAS_DELETED, comment="Removed with version 1."),
        deleted(EventType.VERSION_DELETED),
    ),
    ("api/2.0/mlflow/model-versions/set-tag", "POST"): mlflow(
        "POST", "model-versions/set-tag", {"name": "m", "version": "1", "key": "k", "value": "n"},
        changed(EventType.VERSION_TAG_SET),
    ),
    ("api/2.0/mlflow/model-versions/delete-tag", "DELETE"): mlflow(
        "DELETE", "model-versions/delete-tag", {"name": "m", "version": "1", "key": "k"},
        deleted(EventType.VERSION_TAG_DELETED),
    ),
    # Databricks routes
    ("api/2.0/permissions/registered-models/<str:model_id>", "PUT"): Write(
        "PUT", "/api/2.0/permissions/registered-models/{model_id}", ACL,
        (changed(EventType.MODEL_PERMISSIONS_UPDATED),), source=Source.MLFLOW,
    ),
    ("api/2.0/permissions/registered-models/<str:model_id>", "PATCH"): Write(
        "PATCH", "/api/2.0/permissions/registered-models/{model_id}", ACL,
        (changed(EventType.MODEL_PERMISSIONS_UPDATED),), source=Source.MLFLOW,
    ),
    ("api/2.0/mlflow/transition-requests/create", "POST"): mlflow(
        "POST", "transition-requests/create",
        {"name": "m", "version": "1", "stage": "Production", "comment": "ready"},
        created(WorkflowEvent.REQUEST_CREATED, comment="ready"),
    ),
    ("api/2.0/mlflow/transition-requests/approve", "POST"): mlflow(
        "POST", "transition-requests/approve",
        {**DBX_PENDING, "archive_existing_versions": False, "comment": "fine"},
        changed(WorkflowEvent.REQUEST_APPROVAL_RECORDED, comment="fine"),
        APPROVED,
        applied=APPLIED,
    ),
    ("api/2.0/mlflow/transition-requests/reject", "POST"): mlflow(
        "POST", "transition-requests/reject", {**DBX_PENDING, "comment": "no"},
        changed(WorkflowEvent.REQUEST_REJECTED, comment="no"),
    ),
    ("api/2.0/mlflow/transition-requests/delete", "DELETE"): mlflow(
        "DELETE", "transition-requests/delete",
        {**DBX_PENDING, "creator": "reader", "comment": "withdrawn"},
        changed(WorkflowEvent.REQUEST_CANCELLED, comment="withdrawn"),
    ),
    ("api/2.0/mlflow/comments/create", "POST"): mlflow(
        "POST", "comments/create", {"name": "m", "version": "1", "comment": "hi"},
        created(WorkflowEvent.COMMENT_CREATED, comment="hi"),
    ),
    ("api/2.0/mlflow/comments/update", "PATCH"): mlflow(
        "PATCH", "comments/update", {"id": "{comment}", "comment": "edited"},
        changed(WorkflowEvent.COMMENT_UPDATED),
    ),
    ("api/2.0/mlflow/comments/delete", "DELETE"): mlflow(
        "DELETE", "comments/delete", {"id": "{comment}"}, deleted(WorkflowEvent.COMMENT_DELETED)
    ),
    ("api/2.0/mlflow/databricks/model-versions/transition-stage", "POST"): mlflow(
        "POST", "databricks/model-versions/transition-stage",
        {"name": "m", "version": "1", "stage": "Staging", "archive_existing_versions": False,
         "comment": "go"},
        changed(EventType.VERSION_STAGE_TRANSITIONED, comment="go"),
    ),
    # --- webhooks: the webhooks work adds its rows here (until then, see WEBHOOKS_ROUTES) ---
}  # fmt: skip

# Reads: they change nothing, so they record nothing (the export above is the one recorded read).
READS = {
    ("healthz", "GET"),
    ("readyz", "GET"),
    ("metrics", "GET"),
    ("api/schema/", "GET"),
    ("api/docs/", "GET"),
    ("api/v1/models/", "GET"),
    ("api/v1/models/<str:name>/", "GET"),
    ("api/v1/models/<str:name>/permissions/", "GET"),
    ("api/v1/models/<str:name>/versions/", "GET"),
    ("api/v1/models/<str:name>/versions/<str:version>/", "GET"),
    ("api/v1/models/<str:name>/aliases/", "GET"),
    ("api/v1/models/<str:name>/aliases/<str:alias>/", "GET"),
    ("api/v1/events/", "GET"),
    ("api/v1/events/verify/", "GET"),
    ("api/v1/models/<str:name>/history/", "GET"),
    ("api/v1/models/<str:name>/aliases/<str:alias>/history/", "GET"),
    ("api/v1/tokens/", "GET"),
    ("api/v1/tokens/<int:pk>/", "GET"),
    ("api/v1/policies/", "GET"),
    ("api/v1/policies/<int:pk>/", "GET"),
    ("api/v1/transition-requests/", "GET"),
    ("api/v1/transition-requests/<int:pk>/", "GET"),
    ("api/v1/models/<str:name>/versions/<str:version>/comments/", "GET"),
    ("api/v1/models/<str:name>/versions/<str:version>/activity/", "GET"),
    ("api/2.0/mlflow/registered-models/get", "GET"),
    ("api/2.0/mlflow/registered-models/search", "GET"),
    ("api/2.0/mlflow/registered-models/list", "GET"),
    ("api/2.0/mlflow/registered-models/get-latest-versions", "GET"),
    ("api/2.0/mlflow/registered-models/get-latest-versions", "POST"),
    ("api/2.0/mlflow/registered-models/alias", "GET"),
    ("api/2.0/mlflow/model-versions/get", "GET"),
    ("api/2.0/mlflow/model-versions/search", "GET"),
    ("api/2.0/mlflow/model-versions/get-download-uri", "GET"),
    ("api/2.0/mlflow/databricks/registered-models/get", "GET"),
    ("api/2.0/mlflow/transition-requests/list", "GET"),
    ("api/2.0/permissions/registered-models/<str:model_id>", "GET"),
    ("api/2.0/permissions/registered-models/<str:model_id>/permissionLevels", "GET"),
}

# Routes owned by the webhooks work, covered in tests/webhooks (test_api.py, test_mlflow_routes.py,
# test_databricks_routes.py assert the webhook.* events of their writes). Move them into WRITES
# and READS above as their rows are written.
WEBHOOKS_ROUTES = {
    ("api/v1/webhooks/", "GET"),
    ("api/v1/webhooks/", "POST"),
    ("api/v1/webhooks/<str:pk>/", "GET"),
    ("api/v1/webhooks/<str:pk>/", "PATCH"),
    ("api/v1/webhooks/<str:pk>/", "DELETE"),
    ("api/v1/webhooks/<str:pk>/test/", "POST"),
    ("api/v1/webhooks/<str:pk>/deliveries/", "GET"),
    ("api/v1/deliveries/replay/", "POST"),
    ("api/v1/deliveries/<str:pk>/", "GET"),
    ("api/v1/deliveries/<str:pk>/redeliver/", "POST"),
    ("api/2.0/mlflow/webhooks", "GET"),
    ("api/2.0/mlflow/webhooks", "POST"),
    ("api/2.0/mlflow/webhooks/<str:webhook_id>", "GET"),
    ("api/2.0/mlflow/webhooks/<str:webhook_id>", "PATCH"),
    ("api/2.0/mlflow/webhooks/<str:webhook_id>", "DELETE"),
    ("api/2.0/mlflow/webhooks/<str:webhook_id>/test", "POST"),
    ("api/2.0/mlflow/registry-webhooks/create", "POST"),
    ("api/2.0/mlflow/registry-webhooks/list", "GET"),
    ("api/2.0/mlflow/registry-webhooks/update", "PATCH"),
    ("api/2.0/mlflow/registry-webhooks/delete", "DELETE"),
    ("api/2.0/mlflow/registry-webhooks/test", "POST"),
}

# Not API doors: the admin (its doors are enumerated from the admin site below), static assets,
# and the catch-all answering ENDPOINT_NOT_FOUND under the MLflow prefixes.
NOT_API = ("admin/", "static/", "^static/", "^(?:api|ajax-api)/2\\.0/(?:preview/)?mlflow/")
MLFLOW_ALIASES = ("ajax-api/2.0/mlflow/", "api/2.0/preview/mlflow/")
METHODS = ("get", "post", "put", "patch", "delete")


def _patterns(patterns: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found.extend(_patterns(pattern.url_patterns, route))
        elif isinstance(pattern, URLPattern):
            found.append((route, pattern.callback))
    return found


def _methods(callback: Any) -> set[str]:
    """The HTTP methods a view answers: its class's handlers; a plain function view, GET."""
    view = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view is None:
        return {"GET"}
    return {method.upper() for method in METHODS if hasattr(view, method)}


def api_doors() -> set[tuple[str, str]]:
    doors = set()
    for route, callback in _patterns(get_resolver().url_patterns):
        if route.startswith(NOT_API):
            continue
        for alias in MLFLOW_ALIASES:
            if route.startswith(alias):
                route = "api/2.0/mlflow/" + route.removeprefix(alias)
        doors |= {(route, method) for method in _methods(callback)}
    return doors


def test_every_api_door_is_listed():
    doors = api_doors()
    listed = set(WRITES) | READS | WEBHOOKS_ROUTES
    assert not set(WRITES) & READS
    assert doors == listed, (
        f"not listed: {sorted(doors - listed)}; listed but gone: {sorted(listed - doors)}"
    )


# --- the world every door is tried on ---------------------------------------------------------


@dataclass
class World:
    users: dict[str, Any]
    token: IssuedToken  # the owner's, unrestricted
    ids: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def world(django_user_model, settings) -> World:
    """Model `m` (owner's, tag k; v1 with tag k and alias prod, v2, v3), reader's pending
    request v2 → Staging (no policy: one approval), a policy, a comment on v1, the owner's
    tokens; and model `old`."""
    settings.MODELGATE_APPROVE_WAIT_SECONDS = 0  # the apply task runs after the response here
    settings.MODELGATE_AUTH_FAILURES_PER_MINUTE = 10_000
    make = django_user_model.objects.create_user
    users = {name: make(username=name, password=PASSWORD) for name in ("owner", "reader", "gus")}
    users["root"] = django_user_model.objects.create_superuser(
        username="root", password=PASSWORD, email="root@example.com"
    )
    Group.objects.create(name="editors")
    setup = Actor(user=users["owner"], source=Source.SHELL)
    model = services.model_create(name="m", actor=setup, tags={"k": "v"})
    v1 = services.version_create(model=model, source="s3://b/1", actor=setup, tags={"k": "v"})
    v2 = services.version_create(model=model, source="s3://b/2", actor=setup)
    v3 = services.version_create(model=model, source="s3://b/3", actor=setup)
    # The admin deletes only what has no requests or comments (those it does not delete).
    old = services.model_create(name="old", actor=setup)
    services.alias_set(model=model, alias="prod", version=1, actor=setup)
    services.permissions_update(
        model=model, actor=setup, users={"reader": Level.CAN_READ}, groups={}
    )
    policy = policy_create(actor=setup, model=model, target="alias:champion")
    pending = request_create(version=v2, target="Staging", actor=Actor(user=users["reader"]))
    comment = comment_create(version=v1, actor=setup, text="first")
    token = token_create(user=users["owner"], name="pipeline")
    spare = token_create(user=users["owner"], name="spare")
    ids = {
        "model_id": model.pk,
        "policy": policy.pk,
        "request": pending.pk,
        "comment": comment.pk,
        "spare": spare.token.pk,
        "v1": v1.pk,
        "v2": v2.pk,
        "v3": v3.pk,
        "model_old": old.pk,
        "gus": users["gus"].pk,
        "owner": users["owner"].pk,
    }
    return World(users=users, token=token, ids=ids)


def _format(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {key: _format(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_format(item, ids) for item in value]
    return value


def last_seq() -> int:
    return Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


@dataclass(frozen=True)
class Door:
    """Who went through a door, how, and with which request id."""

    actor: Any
    source: str
    request_id: str
    token: str = ""  # the prefix of the token used, if any


def assert_recorded(
    seq: int, until: int, door: Door, expected: tuple[E, ...], ids: dict[str, Any]
) -> None:
    """The events after `seq` up to `until` are exactly `expected`, in order, each complete
    for `door`."""
    events = list(Event.objects.filter(seq__gt=seq, seq__lte=until).order_by("seq"))
    assert [event.type for event in events] == [str(e.type) for e in expected]
    for event, want in zip(events, expected, strict=True):
        where = f"#{event.seq} {event.type}"
        assert (event.actor_id, event.actor_name) == (door.actor.pk, door.actor.username), where
        assert event.actor_token == door.token, where
        assert event.source == door.source, where
        assert event.request_id == door.request_id, where
        assert event.client_ip == CLIENT_IP, where
        assert event_outcome(event.type) == Outcome.DONE, where
        assert_shape(event, want, ids)


def assert_shape(event: Event, want: E, ids: dict[str, Any]) -> None:
    """`before`, `after`, model and comment as `want` says."""
    where = f"#{event.seq} {event.type}"
    for name, present in (("before", want.before), ("after", want.after)):
        value = getattr(event, name)
        if present:
            assert isinstance(value, dict), f"{where}: no {name}"
            assert value, f"{where}: an empty {name}"
        else:
            assert value is None, f"{where}: {name} should be null"
    if want.model is None:
        assert (event.model_id, event.model_name) == (None, ""), where
    else:
        if want.model in ("m", "m2"):  # the world's model, under its name then
            model_id = ids["model_id"]
        else:  # another of the world's, or one the door created
            model_id = (
                ids.get(f"model_{want.model}") or RegisteredModel.objects.get(name=want.model).pk
            )
        assert (event.model_id, event.model_name) == (model_id, want.model), where
    assert event.comment == want.comment.format(**ids), where


def assert_applied(seq: int, expected: tuple[E, ...], ids: dict[str, Any]) -> None:
    """The apply task's events after `seq`: by the system, with the task's id, naming who
    approved."""
    events = list(Event.objects.filter(seq__gt=seq).order_by("seq"))
    assert [event.type for event in events] == [str(e.type) for e in expected]
    for event, want in zip(events, expected, strict=True):
        assert (event.actor_id, event.actor_name, event.actor_token) == (None, "system", "")
        assert (event.source, event.request_id, event.client_ip) == (Source.TASK, TASK_ID, "")
        assert_shape(event, want, ids)


@pytest.fixture
def task_ids(monkeypatch):
    """The apply task queued by an approval runs (eagerly) under a known id."""
    task = workflow_tasks.request_apply
    monkeypatch.setattr(task, "delay", lambda pk: task.apply_async((pk,), task_id=TASK_ID))


def _api_client(world: World, write: Write) -> tuple[APIClient, str]:
    client = APIClient()
    if write.basic:
        raw = base64.b64encode(f"owner:{PASSWORD}".encode()).decode()
        client.credentials(HTTP_AUTHORIZATION=f"Basic {raw}")
        return client, ""
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.token.secret}")
    return client, world.token.token.prefix


@pytest.mark.parametrize("door", [pytest.param(key, id=f"{key[1]} {key[0]}") for key in WRITES])
def test_every_write_route_records_its_events_complete(
    door, world, task_ids, django_capture_on_commit_callbacks
):
    write = WRITES[door]
    client, token = _api_client(world, write)
    request_id = f"write-{abs(hash(door)) % 10**8}"
    path, body = write.path.format(**world.ids), _format(write.body, world.ids)
    seq = last_seq()
    with django_capture_on_commit_callbacks(execute=True):
        headers = {"HTTP_X_REQUEST_ID": request_id, "REMOTE_ADDR": CLIENT_IP}
        if write.method == "GET":
            response = client.get(path, body, **headers)
            content = b"".join(response.streaming_content)
            assert content.count(b"\n") > 1
        else:
            response = client.generic(
                write.method, path, json.dumps(body or {}), "application/json", **headers
            )
        assert 200 <= response.status_code < 300, (response.status_code, response.content[:300])
        assert response["X-Request-ID"] == request_id
        answered = last_seq()
    owner = world.users["owner"]
    door_ = Door(owner, write.source, request_id, token)
    assert_recorded(seq, answered, door_, write.events, world.ids)
    ids = {**world.ids, "approver": "owner"}
    assert_applied(answered, write.applied, ids)
    if write.applied:
        assert TransitionRequest.objects.get(pk=world.ids["request"]).status == "APPLIED"
    assert history_verify().ok


def test_a_token_sent_as_the_basic_password_is_named_too(world):
    """What the mlflow client sends with MLFLOW_TRACKING_USERNAME / _PASSWORD = a token."""
    client = APIClient()
    raw = base64.b64encode(f"owner:{world.token.secret}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {raw}")
    seq = last_seq()
    response = client.post(
        MLF + "registered-models/set-tag",
        {"name": "m", "key": "k", "value": "basic"},
        format="json",
        HTTP_X_REQUEST_ID="basic-token-1",
        REMOTE_ADDR=CLIENT_IP,
    )
    assert response.status_code == 200
    door = Door(world.users["owner"], Source.MLFLOW, "basic-token-1", world.token.token.prefix)
    assert_recorded(seq, last_seq(), door, (changed(EventType.MODEL_TAG_SET),), world.ids)


# --- the admin --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdminWrite:
    """An admin door: what the staff member does there, and what it records."""

    run: Callable[[Client, World, dict[str, Any]], Any]  # (client, world, headers) → response
    events: tuple[E, ...]
    applied: tuple[E, ...] = ()


def _form(path: str, form_id: str, **changes: Any) -> Callable[..., Any]:
    def run(client: Client, world: World, headers: dict[str, Any]) -> Any:
        url = path.format(**world.ids)
        values = {key: _format(value, world.ids) for key, value in changes.items()}
        return client.post(url, form_data(client.get(url), form_id, **values), **headers)

    return run


def _post(path: str, data: dict[str, Any]) -> Callable[..., Any]:
    def run(client: Client, world: World, headers: dict[str, Any]) -> Any:
        return client.post(path.format(**world.ids), _format(data, world.ids), **headers)

    return run


def _action(changelist: str, action: str, selected: str, confirm: bool = False) -> Callable:
    data: dict[str, Any] = {"action": action, "_selected_action": [selected]}
    if confirm:
        data["post"] = "yes"
    return _post(changelist, data)


def _webhook(run: Callable[..., Any]) -> Callable[..., Any]:
    """The door with a subscription of `m` and a failed delivery of it, written straight to the
    database (so they record nothing themselves); disabled, so nothing goes out."""

    def with_subscription(client: Client, world: World, headers: dict[str, Any]) -> Any:
        subscription = Subscription.objects.create(
            name="hook",
            url="https://hooks.example.com/m",
            events=["model_version.created"],
            model_id=world.ids["model_id"],
            model_name="m",
            owner=world.users["owner"],
            status="DISABLED",
            secret_encrypted=crypto.encrypt(crypto.secret_generate()),
        )
        delivery = Delivery.objects.create(
            subscription=subscription, event_type="model_version.created", body="{}",
            state="FAILED",
        )  # fmt: skip
        world.ids.update(subscription=subscription.pk, delivery=delivery.pk)
        return run(client, world, headers)

    return with_subscription


ADMIN = "/admin/"
DELETE = {"post": "yes"}
NEW_PASSWORD = {"password1": "a-new-pw-for-gus-7", "password2": "a-new-pw-for-gus-7"}

# Every admin door: (model label, door) → what it records. Doors are "add", "change" and
# "delete" (the pages), "url:<name>" (a ModelAdmin's own URLs) and "action:<name>".
ADMIN_WRITES: dict[tuple[str, str], AdminWrite] = {
    ("auth.group", "add"): AdminWrite(
        _form(ADMIN + "auth/group/add/", "group_form", name="auditors"),
        (created(AccountEvent.GROUP_CREATED, None),),
    ),
    ("auth.group", "change"): AdminWrite(
        _form(ADMIN + "auth/group/{editors}/change/", "group_form", name="editing"),
        (changed(AccountEvent.GROUP_UPDATED, None),),
    ),
    ("auth.group", "delete"): AdminWrite(
        _post(ADMIN + "auth/group/{editors}/delete/", DELETE),
        (deleted(AccountEvent.GROUP_DELETED, None),),
    ),
    ("auth.group", "action:delete_selected"): AdminWrite(
        _action(ADMIN + "auth/group/", "delete_selected", "{editors}", confirm=True),
        (deleted(AccountEvent.GROUP_DELETED, None),),
    ),
    ("auth.user", "add"): AdminWrite(
        _form(ADMIN + "auth/user/add/", "user_form", username="newcomer", **NEW_PASSWORD),
        (created(AccountEvent.USER_CREATED, None),),
    ),
    ("auth.user", "change"): AdminWrite(
        _form(ADMIN + "auth/user/{gus}/change/", "user_form", is_staff="on"),
        (changed(AccountEvent.USER_UPDATED, None),),
    ),
    ("auth.user", "url:auth_user_password_change"): AdminWrite(
        _form(ADMIN + "auth/user/{gus}/password/", "user_form", **NEW_PASSWORD),
        (changed(AccountEvent.USER_PASSWORD_CHANGED, None),),
    ),
    ("auth.user", "delete"): AdminWrite(
        _post(ADMIN + "auth/user/{gus}/delete/", DELETE),
        (deleted(AccountEvent.USER_DELETED, None),),
    ),
    ("auth.user", "action:delete_selected"): AdminWrite(
        _action(ADMIN + "auth/user/", "delete_selected", "{gus}", confirm=True),
        (deleted(AccountEvent.USER_DELETED, None),),
    ),
    ("accounts.apitoken", "add"): AdminWrite(
        _form(ADMIN + "accounts/apitoken/add/", "apitoken_form", user="{owner}", name="bot",
              models=None),
        (created(AccountEvent.TOKEN_CREATED, None),),
    ),
    ("accounts.apitoken", "change"): AdminWrite(
        _form(ADMIN + "accounts/apitoken/{spare}/change/", "apitoken_form", name="renamed"),
        (changed(AccountEvent.TOKEN_UPDATED, None),),
    ),
    ("accounts.apitoken", "action:revoke_tokens"): AdminWrite(
        _action(ADMIN + "accounts/apitoken/", "revoke_tokens", "{spare}"),
        (changed(AccountEvent.TOKEN_REVOKED, None),),
    ),
    ("registry.registeredmodel", "add"): AdminWrite(
        _form(ADMIN + "registry/registeredmodel/add/", "registeredmodel_form", name="from-admin"),
        (created(EventType.MODEL_CREATED, "from-admin"),),
    ),
    ("registry.registeredmodel", "change"): AdminWrite(
        _form(ADMIN + "registry/registeredmodel/{model_id}/change/", "registeredmodel_form",
              description="said in the admin"),
        (changed(EventType.MODEL_UPDATED),),
    ),
    ("registry.registeredmodel", "delete"): AdminWrite(
        _post(ADMIN + "registry/registeredmodel/{model_old}/delete/", DELETE),
        (deleted(EventType.MODEL_DELETED, "old"),),
    ),
    ("registry.registeredmodel", "action:delete_selected"): AdminWrite(
        _action(ADMIN + "registry/registeredmodel/", "delete_selected", "{model_old}", True),
        (deleted(EventType.MODEL_DELETED, "old"),),
    ),
    ("registry.modelversion", "change"): AdminWrite(
        _form(ADMIN + "registry/modelversion/{v2}/change/", "modelversion_form",
              stage="Archived"),
        (changed(EventType.VERSION_STAGE_TRANSITIONED),),
    ),
    ("registry.modelversion", "delete"): AdminWrite(
        _post(ADMIN + "registry/modelversion/{v3}/delete/", DELETE),
        (deleted(EventType.VERSION_DELETED),),
    ),
    ("registry.modelversion", "action:delete_selected"): AdminWrite(
        _action(ADMIN + "registry/modelversion/", "delete_selected", "{v3}", confirm=True),
        (deleted(EventType.VERSION_DELETED),),
    ),
    ("registry.modelversion", "action:archive_versions"): AdminWrite(
        _action(ADMIN + "registry/modelversion/", "archive_versions", "{v2}"),
        (changed(EventType.VERSION_STAGE_TRANSITIONED),),
    ),
    ("workflows.policy", "add"): AdminWrite(
        _form(ADMIN + "workflows/policy/add/", "policy_form", model="{model_id}",
              target="Production"),
        (created(WorkflowEvent.POLICY_CREATED),),
    ),
    ("workflows.policy", "change"): AdminWrite(
        _form(ADMIN + "workflows/policy/{policy}/change/", "policy_form", required_approvals="2"),
        (changed(WorkflowEvent.POLICY_UPDATED),),
    ),
    ("workflows.policy", "delete"): AdminWrite(
        _post(ADMIN + "workflows/policy/{policy}/delete/", DELETE),
        (deleted(WorkflowEvent.POLICY_DELETED),),
    ),
    ("workflows.policy", "action:delete_selected"): AdminWrite(
        _action(ADMIN + "workflows/policy/", "delete_selected", "{policy}", confirm=True),
        (deleted(WorkflowEvent.POLICY_DELETED),),
    ),
    ("workflows.transitionrequest", "url:workflows_transitionrequest_approve"): AdminWrite(
        _post(ADMIN + "workflows/transitionrequest/{request}/approve/", {"comment": "fine"}),
        (changed(WorkflowEvent.REQUEST_APPROVAL_RECORDED, comment="fine"), APPROVED),
        applied=APPLIED,
    ),
    ("workflows.transitionrequest", "url:workflows_transitionrequest_reject"): AdminWrite(
        _post(ADMIN + "workflows/transitionrequest/{request}/reject/", {"comment": "no"}),
        (changed(WorkflowEvent.REQUEST_REJECTED, comment="no"),),
    ),
    ("workflows.transitionrequest", "action:approve_selected"): AdminWrite(
        _action(ADMIN + "workflows/transitionrequest/?queue=all", "approve_selected", "{request}"),
        (changed(WorkflowEvent.REQUEST_APPROVAL_RECORDED), APPROVED),
        applied=APPLIED,
    ),
    ("workflows.transitionrequest", "action:reject_selected"): AdminWrite(
        _action(ADMIN + "workflows/transitionrequest/?queue=all", "reject_selected", "{request}"),
        (changed(WorkflowEvent.REQUEST_REJECTED),),
    ),
    # webhooks (tests/webhooks/test_admin.py has the rest: the secret once, staff, sending)
    ("webhooks.subscription", "add"): AdminWrite(
        _form(ADMIN + "webhooks/subscription/add/", "subscription_form",
              url="https://hooks.example.com/modelgate", events="model_version.created"),
        (created(WebhookEvent.CREATED, None),),
    ),
    ("webhooks.subscription", "change"): AdminWrite(
        _webhook(_form(ADMIN + "webhooks/subscription/{subscription}/change/",
                       "subscription_form", name="renamed", events="model_version.created")),
        (changed(WebhookEvent.UPDATED),),
    ),
    ("webhooks.subscription", "delete"): AdminWrite(
        _webhook(_post(ADMIN + "webhooks/subscription/{subscription}/delete/", DELETE)),
        (deleted(WebhookEvent.DELETED),),
    ),
    ("webhooks.subscription", "action:delete_selected"): AdminWrite(
        _webhook(_action(ADMIN + "webhooks/subscription/", "delete_selected", "{subscription}",
                         confirm=True)),
        (deleted(WebhookEvent.DELETED),),
    ),
    ("webhooks.subscription", "url:webhooks_subscription_rotate"): AdminWrite(
        _webhook(_post(ADMIN + "webhooks/subscription/{subscription}/rotate/", {})),
        (changed(WebhookEvent.UPDATED, comment="Secret rotated."),),
    ),
    # A test event changes nothing in the registry: a test delivery, no event.
    ("webhooks.subscription", "url:webhooks_subscription_test"): AdminWrite(
        _webhook(_post(ADMIN + "webhooks/subscription/{subscription}/test/", {"event": ""})),
        (),
    ),
    ("webhooks.subscription", "url:webhooks_subscription_replay"): AdminWrite(
        _webhook(_post(ADMIN + "webhooks/subscription/{subscription}/replay/",
                       {"since": "2000-01-01 00:00"})),
        (created(WebhookEvent.REDELIVERED,
                 comment="Replay of the failures since 2000-01-01 00:00 UTC."),),
    ),
    ("webhooks.delivery", "action:redeliver_selected"): AdminWrite(
        _webhook(_action(ADMIN + "webhooks/delivery/", "redeliver_selected", "{delivery}")),
        (created(WebhookEvent.REDELIVERED),),
    ),
}  # fmt: skip

_STANDARD_URLS = ("changelist", "add", "history", "delete", "change")


def admin_doors(superuser: Any) -> set[tuple[str, str]]:
    """Every door the admin site offers a superuser: pages, own URLs and actions."""
    request = RequestFactory().get("/admin/")
    request.user = superuser
    doors = set()
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        standard = {f"{model._meta.app_label}_{model._meta.model_name}_{name}" for name in
                    _STANDARD_URLS}  # fmt: skip
        for url in model_admin.get_urls():
            if url.name and url.name not in standard:
                doors.add((label, f"url:{url.name}"))
        if model_admin.has_add_permission(request):
            doors.add((label, "add"))
        if model_admin.has_change_permission(request):
            doors.add((label, "change"))
        if model_admin.has_delete_permission(request):
            doors.add((label, "delete"))
        doors |= {(label, f"action:{name}") for name in model_admin.get_actions(request)}
    return doors


def test_every_admin_door_is_listed(admin_user):
    doors = admin_doors(admin_user)
    assert doors == set(ADMIN_WRITES), (
        f"not listed: {sorted(doors - set(ADMIN_WRITES))}; "
        f"listed but gone: {sorted(set(ADMIN_WRITES) - doors)}"
    )


@pytest.mark.parametrize(
    "door", [pytest.param(key, id=f"{key[0]} {key[1]}") for key in ADMIN_WRITES]
)
def test_every_admin_door_records_its_events_complete(
    door, world, client, task_ids, django_capture_on_commit_callbacks
):
    row = ADMIN_WRITES[door]
    world.ids["editors"] = Group.objects.get(name="editors").pk
    root = world.users["root"]
    client.force_login(root)
    request_id = f"admin-{abs(hash(door)) % 10**8}"
    seq = last_seq()
    with django_capture_on_commit_callbacks(execute=True):
        response = row.run(
            client, world, {"HTTP_X_REQUEST_ID": request_id, "REMOTE_ADDR": CLIENT_IP}
        )
        assert response.status_code == 302, response.content.decode()[-3000:]
        answered = last_seq()
    assert_recorded(seq, answered, Door(root, Source.ADMIN, request_id), row.events, world.ids)
    assert_applied(answered, row.applied, {**world.ids, "approver": "root"})
    assert history_verify().ok


def test_the_admin_change_my_password_page_is_recorded(world, client):
    """The site's own page (not a ModelAdmin's), where a staff member changes their password."""
    root = world.users["root"]
    client.force_login(root)
    url = ADMIN + "password_change/"
    seq = last_seq()
    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {
            "old_password": PASSWORD,
            "new_password1": "root-new-pw-41",
            "new_password2": "root-new-pw-41",
        },
        HTTP_X_REQUEST_ID="admin-own-password",
        REMOTE_ADDR=CLIENT_IP,
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert_recorded(
        seq,
        last_seq(),
        Door(root, Source.ADMIN, "admin-own-password"),
        (changed(AccountEvent.USER_PASSWORD_CHANGED, None),),
        world.ids,
    )
    root.refresh_from_db()
    assert root.check_password("root-new-pw-41")


# --- tasks and commands -----------------------------------------------------------------------


def _sweep_expires_and_applies(world: World) -> None:
    """requests_sweep: expires an overdue request, applies an approved one whose task never
    ran; all as the system, under the sweep's task id."""
    owner = world.users["owner"]
    request = TransitionRequest.objects.get(pk=world.ids["request"])
    overdue = request_create(
        version=ModelVersion.objects.get(pk=world.ids["v2"]),
        target="Production",
        actor=Actor(user=owner),
    )
    TransitionRequest.objects.filter(pk=overdue.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    request_approve(request=request, actor=Actor(user=owner))  # its task is never queued here
    TransitionRequest.objects.filter(pk=request.pk).update(
        decided_at=timezone.now() - timedelta(minutes=5)
    )
    seq = last_seq()
    result = workflow_tasks.requests_sweep.apply(task_id=TASK_ID).get()
    assert result == {"expired": 1, "applied": 1}
    ids = {**world.ids, "approver": "owner"}
    expires_at = TransitionRequest.objects.get(pk=overdue.pk).expires_at
    expired = changed(
        WorkflowEvent.REQUEST_EXPIRED,
        comment=f"Expired undecided at {expires_at:%Y-%m-%d %H:%M:%S %Z}.",
    )
    assert_applied(seq, (expired, *APPLIED), ids)
    statuses = dict(TransitionRequest.objects.values_list("pk", "status"))
    assert statuses == {request.pk: RequestStatus.APPLIED, overdue.pk: RequestStatus.EXPIRED}


def _apply_runs_once(world: World) -> None:
    """request_apply: applies an approved request (archiving the version in the stage) as the
    system, naming the approvers on every change; run again (a redelivery), records nothing."""
    owner = Actor(user=world.users["owner"])
    services.version_transition(
        version=ModelVersion.objects.get(pk=world.ids["v1"]), stage=Stage.STAGING, actor=owner
    )
    request = TransitionRequest.objects.get(pk=world.ids["request"])
    request_approve(request=request, actor=owner, archive_existing_versions=True)
    seq = last_seq()
    assert workflow_tasks.request_apply.apply((request.pk,), task_id=TASK_ID).get() == "APPLIED"
    archived = changed(
        EventType.VERSION_STAGE_TRANSITIONED,
        comment="Archived because version 2 moved to Staging. " + APPLYING,
    )
    assert_applied(seq, (archived, *APPLIED), {**world.ids, "approver": "owner"})
    assert ModelVersion.objects.get(pk=world.ids["v1"]).stage == Stage.ARCHIVED
    seq = last_seq()
    assert workflow_tasks.request_apply.apply((request.pk,), task_id="again").get() == "APPLIED"
    assert last_seq() == seq


def _records_nothing(call: Callable[[World], Any]) -> Callable[[World], None]:
    def check(world: World) -> None:
        seq = last_seq()
        call(world)
        assert last_seq() == seq

    return check


# Every task of the registry and the workflow: how it is run, and what it must record.
TASKS: dict[str, Callable[[World], None]] = {
    "workflows.tasks.request_apply": _apply_runs_once,
    "workflows.tasks.requests_sweep": _sweep_expires_and_applies,
    # Publishing hands events to consumers and signing a checkpoint adds a checkpoint row:
    # neither changes the registry, neither records an event.
    "registry.tasks.events_publish": _records_nothing(lambda w: tasks.events_publish()),
    "registry.tasks.event_publish": _records_nothing(lambda w: tasks.event_publish(last_seq())),
    "registry.tasks.events_republish_stale": _records_nothing(
        lambda w: tasks.events_republish_stale()
    ),
    "registry.tasks.checkpoint_create": _records_nothing(lambda w: tasks.checkpoint_create()),
}
WEBHOOKS_TASKS = "webhooks.tasks."  # owned by the webhooks work, covered in tests/webhooks


def test_every_task_is_listed():
    celery_app.loader.import_default_modules()
    names = {
        name
        for name in celery_app.tasks
        if name.startswith(("registry.", "workflows.", "accounts."))
    }
    assert names == set(TASKS)
    assert all(not name.startswith(WEBHOOKS_TASKS) for name in TASKS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_records_what_it_must(name, world):
    TASKS[name](world)
    assert history_verify().ok


def _shell_events(seq: int, expected: tuple[E, ...]) -> None:
    """Events of one command run: by the system from the shell, one fresh id for the run."""
    events = list(Event.objects.filter(seq__gt=seq).order_by("seq"))
    assert [event.type for event in events] == [str(e.type) for e in expected]
    for event, want in zip(events, expected, strict=True):
        assert (event.actor_id, event.actor_name, event.actor_token) == (None, "system", "")
        assert (event.source, event.client_ip) == (Source.SHELL, "")
        assert re.fullmatch(r"[0-9a-f]{32}", event.request_id), event.request_id
        assert_shape(event, want, {})
    assert len({event.request_id for event in events}) <= 1


def _create_token(world: World) -> None:
    seq = last_seq()
    call_command(
        "create_token", "reader", "--name", "bot", stdout=io.StringIO(), stderr=io.StringIO()
    )
    _shell_events(seq, (created(AccountEvent.TOKEN_CREATED, None),))


def _ensure_admin(world: World) -> None:
    seq = last_seq()
    call_command("ensure_admin", stdout=io.StringIO())
    _shell_events(seq, (created(AccountEvent.USER_CREATED, None),))
    seq = last_seq()
    call_command("ensure_admin", stdout=io.StringIO())  # up to date: no change, no event
    assert last_seq() == seq


def _export_history(world: World) -> None:
    seq = last_seq()
    with tempfile.TemporaryDirectory() as directory:
        output = os.path.join(directory, "history.jsonl")
        call_command("export_history", "--no-progress", "--output", output, stderr=io.StringIO())
    _shell_events(seq, (created(EventType.HISTORY_EXPORTED, None),))


def _createsuperuser(world: World) -> None:
    seq = last_seq()
    with mock.patch.dict(os.environ, {"DJANGO_SUPERUSER_PASSWORD": "an-ops-password-9"}):
        call_command(
            "createsuperuser",
            "--noinput",
            "--username",
            "ops",
            "--email",
            "ops@example.com",
            stdout=io.StringIO(),
        )
    _shell_events(seq, (created(AccountEvent.USER_CREATED, None),))
    event = Event.objects.get(seq=seq + 1)
    assert (event.after["username"], event.after["is_superuser"]) == ("ops", True)
    assert "password" not in json.dumps(event.after)


def _changepassword(world: World) -> None:
    seq = last_seq()
    with mock.patch.object(changepassword.Command, "_get_pass", return_value="gus-new-pw-93"):
        call_command("changepassword", "gus", stdout=io.StringIO())
    _shell_events(seq, (changed(AccountEvent.USER_PASSWORD_CHANGED, None),))
    world.users["gus"].refresh_from_db()
    assert world.users["gus"].check_password("gus-new-pw-93")


# Every management command of the project's apps, and what it records.
COMMANDS: dict[str, Callable[[World], None]] = {
    # Django's own, overridden in accounts to record what they change.
    "changepassword": _changepassword,
    "createsuperuser": _createsuperuser,
    "create_token": _create_token,
    "ensure_admin": _ensure_admin,
    "export_history": _export_history,
    "verify_history": _records_nothing(
        lambda w: call_command("verify_history", stdout=io.StringIO(), stderr=io.StringIO())
    ),
}
PROJECT_APPS = ("accounts", "registry", "workflows", "webhooks")


def test_every_command_is_listed():
    commands = {name for name, app in get_commands().items() if app in PROJECT_APPS}
    assert commands == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_records_what_it_must(name, world):
    COMMANDS[name](world)
    assert history_verify().ok


# --- refused attempts that matter -------------------------------------------------------------

PROTECTED_STAGE = (
    f"Stage Production of model 'm' is protected by an approval policy: {REQUEST_FLOW}."
)
PROTECTED_ALIAS = f"Alias 'prod' of model 'm' is protected by an approval policy: {REQUEST_FLOW}."
SELF_APPROVAL = "You requested this transition; the policy needs someone else to approve it."
TOO_LOW = "Reviewing this request needs CAN_MANAGE_PRODUCTION_VERSIONS; you have CAN_READ."


@pytest.fixture
def guarded(world) -> World:
    """Production and the alias `prod` (moved to v3 first) guarded by policies; the owner,
    staff now, asks for v1 → Production."""
    setup = Actor(user=world.users["owner"], source=Source.SHELL)
    model = RegisteredModel.objects.get(name="m")
    services.alias_set(model=model, alias="prod", version=3, actor=setup)
    policy_create(actor=setup, model=model, target="Production")
    policy_create(actor=setup, model=model, target="alias:prod")
    owner = world.users["owner"]
    owner.is_staff = True
    owner.save()
    v1 = ModelVersion.objects.get(pk=world.ids["v1"])
    asked = request_create(version=v1, target="Production", actor=Actor(user=owner))
    world.ids["asked"] = asked.pk
    return world


@dataclass(frozen=True)
class Refused:
    """A refused attempt: who tries, through which door, and what the history must keep."""

    who: str  # "owner" (with a token on the API, a session in the admin), "reader", "root"
    via: str  # "api", "basic", "admin"
    method: str
    path: str
    body: dict[str, Any] | None
    status: int  # the answer, the same as before refusals were recorded
    type: str
    refusal: str
    comment: str = ""


APPROVAL_REFUSED = WorkflowEvent.REQUEST_APPROVAL_REFUSED
DBX_ASKED = {"name": "m", "version": "1", "stage": "Production"}

REFUSALS: dict[str, Refused] = {
    "self-approval, api": Refused(
        "owner", "api", "POST", V1 + "transition-requests/{asked}/approve/", {"comment": "mine"},
        403, APPROVAL_REFUSED, SELF_APPROVAL, "mine",
    ),
    "level too low, api": Refused(
        "reader", "basic", "POST", V1 + "transition-requests/{asked}/approve/", {}, 403,
        APPROVAL_REFUSED, TOO_LOW,
    ),
    "level too low to reject, api": Refused(
        "reader", "basic", "POST", V1 + "transition-requests/{asked}/reject/", {"comment": "no"},
        403, WorkflowEvent.REQUEST_REJECTION_REFUSED, TOO_LOW, "no",
    ),
    "self-approval, databricks": Refused(
        "owner", "mlflow", "POST", MLF + "transition-requests/approve",
        {**DBX_ASKED, "archive_existing_versions": False, "comment": "mine"},
        403, APPROVAL_REFUSED, SELF_APPROVAL, "mine",
    ),
    "self-approval, admin page": Refused(
        "owner", "admin", "POST", ADMIN + "workflows/transitionrequest/{asked}/approve/",
        {"comment": "mine"}, 302, APPROVAL_REFUSED, SELF_APPROVAL, "mine",
    ),
    "self-approval, admin bulk action": Refused(
        "owner", "admin", "POST", ADMIN + "workflows/transitionrequest/?queue=all",
        {"action": "approve_selected", "_selected_action": ["{asked}"]},
        302, APPROVAL_REFUSED, SELF_APPROVAL,
    ),
    "direct transition, api": Refused(
        "owner", "api", "POST", V1 + "models/m/versions/1/stage/",
        {"stage": "Production", "comment": "ship"}, 403,
        EventType.VERSION_STAGE_TRANSITION_REFUSED, PROTECTED_STAGE, "ship",
    ),
    "direct transition, mlflow": Refused(
        "owner", "mlflow", "POST", MLF + "model-versions/transition-stage",
        {"name": "m", "version": "1", "stage": "Production", "archive_existing_versions": True},
        403, EventType.VERSION_STAGE_TRANSITION_REFUSED, PROTECTED_STAGE,
    ),
    "direct transition, databricks": Refused(
        "owner", "mlflow", "POST", MLF + "databricks/model-versions/transition-stage",
        {**DBX_ASKED, "archive_existing_versions": False, "comment": "ship"},
        403, EventType.VERSION_STAGE_TRANSITION_REFUSED, PROTECTED_STAGE, "ship",
    ),
    "direct transition, admin form": Refused(
        "root", "admin", "FORM", ADMIN + "registry/modelversion/{v1}/change/",
        {"stage": "Production"}, 302, EventType.VERSION_STAGE_TRANSITION_REFUSED,
        PROTECTED_STAGE,
    ),
    "protected alias moved, api": Refused(
        "owner", "api", "PUT", V1 + "models/m/aliases/prod/", {"version": 2}, 403,
        EventType.ALIAS_SET_REFUSED, PROTECTED_ALIAS,
    ),
    "protected alias removed, api": Refused(
        "owner", "api", "DELETE", V1 + "models/m/aliases/prod/", None, 403,
        EventType.ALIAS_DELETE_REFUSED, PROTECTED_ALIAS,
    ),
    "protected alias moved, mlflow": Refused(
        "owner", "mlflow", "POST", MLF + "registered-models/alias",
        {"name": "m", "alias": "prod", "version": "2"}, 403,
        EventType.ALIAS_SET_REFUSED, PROTECTED_ALIAS,
    ),
    "protected alias removed, mlflow": Refused(
        "owner", "mlflow", "DELETE", MLF + "registered-models/alias",
        {"name": "m", "alias": "prod"}, 403, EventType.ALIAS_DELETE_REFUSED, PROTECTED_ALIAS,
    ),
    "version holding a protected alias deleted, api": Refused(
        "owner", "api", "DELETE", V1 + "models/m/versions/3/", None, 403,
        EventType.VERSION_DELETE_REFUSED, PROTECTED_ALIAS,
    ),
    "version holding a protected alias deleted, admin page": Refused(
        "root", "admin", "POST", ADMIN + "registry/modelversion/{v3}/delete/", DELETE, 302,
        EventType.VERSION_DELETE_REFUSED, PROTECTED_ALIAS,
    ),
    "version holding a protected alias deleted, admin bulk action": Refused(
        "root", "admin", "POST", ADMIN + "registry/modelversion/",
        {"action": "delete_selected", "_selected_action": ["{v3}"], "post": "yes"}, 302,
        EventType.VERSION_DELETE_REFUSED, PROTECTED_ALIAS,
    ),
}  # fmt: skip


def _unchanged(world: World) -> tuple[Any, ...]:
    """What a refused attempt leaves as it was (beside the one event it leaves)."""
    return (
        sorted(ModelVersion.objects.values_list("pk", "stage", "deleted_at")),
        sorted(ModelAlias.objects.values_list("alias", "version_id")),
        sorted(TransitionRequest.objects.values_list("pk", "status")),
        Review.objects.count(),
    )


def _attempt(world: World, case: Refused, request_id: str) -> tuple[Any, Any, str]:
    """Make the attempt as its client would; (response, actor, token prefix)."""
    user = world.users[case.who]
    path, body = case.path.format(**world.ids), _format(case.body, world.ids)
    headers = {"HTTP_X_REQUEST_ID": request_id, "REMOTE_ADDR": CLIENT_IP}
    if case.via == "admin":
        client = Client()
        client.force_login(user)
        if case.method == "FORM":
            response = client.post(path, form_data(client.get(path), "modelversion_form", **body),
                                   **headers)  # fmt: skip
        else:
            response = client.post(path, body, **headers)
        return response, user, ""
    if case.via == "basic":
        client = APIClient()
        raw = base64.b64encode(f"{case.who}:{PASSWORD}".encode()).decode()
        client.credentials(HTTP_AUTHORIZATION=f"Basic {raw}")
        token = ""
    else:
        client, token = _api_client(world, Write("POST", ""))
    response = client.generic(case.method, path, json.dumps(body or {}), "application/json",
                              **headers)  # fmt: skip
    return response, user, token


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_attempt_that_matters_is_recorded_as_refused(
    case, guarded, django_capture_on_commit_callbacks
):
    row = REFUSALS[case]
    before, seq = _unchanged(guarded), last_seq()
    request_id = f"refused-{abs(hash(case)) % 10**8}"
    with django_capture_on_commit_callbacks(execute=True):
        response, user, token = _attempt(guarded, row, request_id)
    assert response.status_code == row.status, response.content[:500]
    assert _unchanged(guarded) == before
    (event,) = Event.objects.filter(seq__gt=seq)
    assert event.type == row.type
    assert event_outcome(event.type) == Outcome.REFUSED
    assert (event.actor_id, event.actor_name, event.actor_token) == (user.pk, user.username, token)
    source = {"basic": Source.API}.get(row.via, row.via)
    assert (event.source, event.request_id, event.client_ip) == (source, request_id, CLIENT_IP)
    assert (event.model_id, event.model_name) == (guarded.ids["model_id"], "m")
    assert isinstance(event.before, dict)
    assert event.before
    assert event.after["refusal"] == row.refusal
    assert event.comment == row.comment
    assert history_verify().ok


def test_what_a_refused_event_says_was_asked_and_what_stayed(
    guarded, django_capture_on_commit_callbacks
):
    client, _ = _api_client(guarded, Write("POST", ""))
    stage = client.post(
        V1 + "models/m/versions/1/stage/",
        {"stage": "Production", "archive_existing_versions": True},
        format="json",
    )
    alias = client.put(V1 + "models/m/aliases/prod/", {"version": 2}, format="json")
    approval = APIClient()
    raw = base64.b64encode(f"reader:{PASSWORD}".encode()).decode()
    approval.credentials(HTTP_AUTHORIZATION=f"Basic {raw}")
    approve = approval.post(V1 + f"transition-requests/{guarded.ids['asked']}/approve/")
    assert (stage.status_code, alias.status_code, approve.status_code) == (403, 403, 403)
    refused = {e.type: e for e in Event.objects.filter(type__endswith="_refused")}
    moved = refused[EventType.VERSION_STAGE_TRANSITION_REFUSED]
    assert (moved.version, moved.before["stage"]) == (1, "None")
    assert moved.after == {
        "stage": "Production",
        "archive_existing_versions": True,
        "refusal": PROTECTED_STAGE,
    }
    pointed = refused[EventType.ALIAS_SET_REFUSED]
    assert (pointed.version, pointed.before) == (2, {"alias": "prod", "version": 3})
    assert pointed.after == {"alias": "prod", "version": 2, "refusal": PROTECTED_ALIAS}
    denied = refused[APPROVAL_REFUSED]
    asked = TransitionRequest.objects.get(pk=guarded.ids["asked"])
    assert (denied.before["id"], denied.before["status"], denied.before["approvals"]) == (
        asked.pk,
        "PENDING",
        [],
    )
    assert denied.after == {
        "id": asked.pk,
        "target": "Production",
        "from_stage": "None",
        "decision": "APPROVE",
        "refusal": TOO_LOW,
    }


@pytest.mark.django_db(transaction=True)
def test_a_refused_attempt_is_kept_although_its_transaction_rolled_back(guarded):
    """Real commits: the refused transition's transaction rolls back, its record stays."""
    client, _ = _api_client(guarded, Write("POST", ""))
    response = client.post(
        V1 + "models/m/versions/1/stage/", {"stage": "Production"}, format="json"
    )
    assert response.status_code == 403
    assert response.json() == {"code": "permission_denied", "message": PROTECTED_STAGE}
    assert ModelVersion.objects.get(pk=guarded.ids["v1"]).stage == Stage.NONE
    kept = Event.objects.get(type=EventType.VERSION_STAGE_TRANSITION_REFUSED)
    assert kept.seq == Event.objects.order_by("-seq").values_list("seq", flat=True).first()
    assert history_verify().ok


PLAIN_ERRORS = {
    # input the rules refuse
    "invalid stage": ("owner", "POST", V1 + "models/m/versions/1/stage/", {"stage": "Nope"}, 400),
    # what the caller cannot see
    "unknown request": ("owner", "POST", V1 + "transition-requests/999999/approve/", {}, 404),
    "unknown model": ("owner", "POST", MLF + "model-versions/transition-stage",
                      {"name": "nope", "version": "1", "stage": "Production"}, 404),
    # a plain permission error: the level to move a version, checked before any policy
    "level to transition": ("reader", "POST", V1 + "models/m/versions/1/stage/",
                            {"stage": "Production"}, 403),
    # a state conflict: deciding a request that is no longer open
    "closed request": ("owner", "POST", V1 + "transition-requests/{request}/approve/", {}, 409),
}  # fmt: skip


@pytest.mark.parametrize("case", list(PLAIN_ERRORS))
def test_plain_errors_leave_no_event(case, guarded):
    who, method, path, body, status = PLAIN_ERRORS[case]
    if case == "closed request":
        pending = TransitionRequest.objects.get(pk=guarded.ids["request"])
        TransitionRequest.objects.filter(pk=pending.pk).update(status=RequestStatus.CANCELLED)
    client = APIClient()
    if who == "owner":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {guarded.token.secret}")
    else:
        client.force_authenticate(user=guarded.users[who])
    seq = last_seq()
    response = client.generic(
        method, path.format(**guarded.ids), json.dumps(body), "application/json"
    )
    assert response.status_code == status, response.content[:300]
    assert last_seq() == seq
