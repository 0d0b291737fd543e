"""A small world for the workflow tests: one model, two versions, people at every level.

Plain functions, not fixtures, so each test module (services, API, concurrency, Celery) builds
the same world with the database access it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Permission

from accounts.actors import Actor, Source
from accounts.tokens import token_create
from registry import services as registry_services
from registry.models import Event, ModelAlias, ModelVersion, RegisteredModel
from registry.permissions import Level
from workflows.models import Comment, Policy, Review, TransitionRequest

# Who holds which level on the model `fraud` (pipeline created it, so it holds CAN_MANAGE).
LEVELS = {
    "alice": Level.CAN_MANAGE_PRODUCTION_VERSIONS,
    "bob": Level.CAN_MANAGE_PRODUCTION_VERSIONS,
    "dave": Level.CAN_MANAGE_PRODUCTION_VERSIONS,
    "stan": Level.CAN_MANAGE_STAGING_VERSIONS,
    "ed": Level.CAN_EDIT,
    "carol": Level.CAN_READ,
    "manager": Level.CAN_MANAGE,
}


@dataclass
class World:
    users: dict[str, Any]
    model: RegisteredModel  # `fraud`: v1 tagged validation=passed, v2 untagged
    hidden: RegisteredModel  # `churn`: created by root, nobody else has a grant

    def actor(self, name: str, source: str = Source.SHELL) -> Actor:
        return Actor(user=self.users[name], source=source)

    def token_actor(self, name: str, *, read_only: bool = False) -> Actor:
        issued = token_create(user=self.users[name], name=f"{name}-token", read_only=read_only)
        return Actor(
            user=self.users[name],
            source=Source.API,
            token=issued.token,
            token_prefix=issued.token.prefix,
        )

    def version(self, number: int, model: RegisteredModel | None = None) -> ModelVersion:
        return ModelVersion.objects.get(model=model or self.model, version=number)


def build_world(django_user_model: Any) -> World:
    make = django_user_model.objects.create_user
    users = {
        name: make(username=name, password=f"{name}-password-1")
        for name in ("pipeline", *LEVELS, "eve", "wide")
    }
    users["root"] = django_user_model.objects.create_superuser(
        username="root", password="root-password-1", email="root@example.com"
    )
    # `wide` holds CAN_MANAGE registry-wide through a grant, without being a superuser.
    users["wide"].user_permissions.add(
        Permission.objects.get(codename="can_manage", content_type__app_label="registry")
    )
    pipeline = Actor(user=users["pipeline"])
    model = registry_services.model_create(name="fraud", actor=pipeline)
    v1 = registry_services.version_create(model=model, source="s3://fraud/1", actor=pipeline)
    registry_services.version_create(model=model, source="s3://fraud/2", actor=pipeline)
    registry_services.version_tag_set(version=v1, key="validation", value="passed", actor=pipeline)
    registry_services.permissions_update(
        model=model, actor=Actor.system(), users=dict(LEVELS), groups={}
    )
    root = Actor(user=users["root"])
    hidden = registry_services.model_create(name="churn", actor=root)
    registry_services.version_create(model=hidden, source="s3://churn/1", actor=root)
    return World(users=users, model=model, hidden=hidden)


def state() -> dict[str, Any]:
    """Everything a workflow write may change: unchanged after a refusal."""
    return {
        "policies": sorted(Policy.objects.values_list("pk", "required_approvals", "updated_at")),
        "requests": sorted(
            TransitionRequest.objects.values_list("pk", "status", "updated_at", "status_reason")
        ),
        "reviews": Review.objects.count(),
        "comments": sorted(Comment.objects.values_list("pk", "text")),
        # Refused attempts that matter are kept as `…_refused` events (tests assert those
        # apart); issuing a test's API token is an accounts event, not a workflow write.
        "events": Event.objects.exclude(type__endswith="_refused")
        .exclude(type__startswith="api_token.")
        .count(),
        "stages": sorted(
            ModelVersion.objects.values_list("model__name", "version", "stage", "deleted_at")
        ),
        "aliases": sorted(
            ModelAlias.objects.values_list("model__name", "alias", "version__version")
        ),
    }


def last_seq() -> int:
    return Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def events_since(seq: int) -> list[tuple[str, str, int | None]]:
    """(type, actor name, version) of each event after `seq`, in order."""
    return list(
        Event.objects.filter(seq__gt=seq)
        .order_by("seq")
        .values_list("type", "actor_name", "version")
    )


def types_since(seq: int) -> list[str]:
    return [event[0] for event in events_since(seq)]
