"""Policies: what it takes to reach a stage or move a protected alias, and their validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.actors import Actor
from config.errors import AlreadyExists, InvalidParameter, PermissionDenied
from registry.choices import Stage
from registry.events import event_record
from registry.models import RegisteredModel
from registry.permissions import Level, require_level
from registry.validation import validate_alias, validate_tag
from workflows.choices import WorkflowEvent
from workflows.models import Policy

STAGE_TARGETS = (Stage.STAGING, Stage.PRODUCTION, Stage.ARCHIVED)
ALIAS_PREFIX = "alias:"


def default_approver_level(target: str) -> Level:
    if target == Stage.PRODUCTION or target.startswith(ALIAS_PREFIX):
        return Level.CAN_MANAGE_PRODUCTION_VERSIONS
    return Level.CAN_MANAGE_STAGING_VERSIONS


def parse_target(value: object) -> str:
    """A canonical target: a stage name (any case) or `alias:<valid alias>`."""
    if isinstance(value, str) and value.startswith(ALIAS_PREFIX):
        return ALIAS_PREFIX + validate_alias(value.removeprefix(ALIAS_PREFIX))
    for stage in STAGE_TARGETS:
        if isinstance(value, str) and value.strip().lower() == stage.value.lower():
            return stage.value
    raise InvalidParameter(
        f"Invalid target '{value}': expected Staging, Production, Archived or alias:<name>.",
        fields={"target": ["Staging, Production, Archived or alias:<name>."]},
    )


@dataclass(frozen=True)
class Rules:
    """The rules a request is held to: a policy's, or Databricks' defaults when none applies."""

    required_approvals: int
    approver_level: Level
    allow_self_approval: bool
    required_tags: dict[str, str] = field(default_factory=dict)
    expires_after_hours: int | None = None
    archive_existing_versions: bool = False
    move_alias: str = ""
    policy_id: int | None = None


def policy_effective(model: RegisteredModel, target: str) -> Policy | None:
    """The model's own policy for the target, else the registry-wide one, else None."""
    policies = {
        policy.model_id: policy
        for policy in Policy.objects.filter(Q(model=model) | Q(model__isnull=True), target=target)
    }
    return policies.get(model.pk) or policies.get(None)


def rules_for(model: RegisteredModel, target: str) -> Rules:
    policy = policy_effective(model, target)
    if policy is None:
        # No policy: as on Databricks, one holder of the right level decides, themselves included.
        return Rules(1, default_approver_level(target), allow_self_approval=True)
    return Rules(
        required_approvals=policy.required_approvals,
        approver_level=Level[policy.approver_level],
        allow_self_approval=policy.allow_self_approval,
        required_tags=dict(policy.required_tags),
        expires_after_hours=policy.expires_after_hours,
        archive_existing_versions=policy.archive_existing_versions,
        move_alias=policy.move_alias,
        policy_id=policy.pk,
    )


def policy_snapshot(policy: Policy) -> dict[str, Any]:
    return {
        "id": policy.pk,
        "model": policy.model.name if policy.model is not None else None,
        "target": policy.target,
        "required_approvals": policy.required_approvals,
        "approver_level": policy.approver_level,
        "allow_self_approval": policy.allow_self_approval,
        "required_tags": dict(policy.required_tags),
        "expires_after_hours": policy.expires_after_hours,
        "archive_existing_versions": policy.archive_existing_versions,
        "move_alias": policy.move_alias,
    }


def _require_policy_admin(actor: Actor, model: RegisteredModel | None) -> None:
    if model is None:
        # Superusers (and the system) only: a registry-wide CAN_MANAGE grant manages each
        # model's own policies, not the registry's defaults.
        user = actor.user
        is_superuser = user is not None and user.is_active and user.is_superuser
        if not (actor.is_system or is_superuser) or actor.token is not None:
            raise PermissionDenied("Only superusers change registry-wide policies.")
    else:
        require_level(actor, model, Level.CAN_MANAGE)


def _clean(target: str, values: dict[str, Any]) -> dict[str, Any]:
    cleaned = dict(values)
    if "approver_level" in cleaned:
        try:
            cleaned["approver_level"] = Level.parse(cleaned["approver_level"]).name
        except ValueError:
            raise InvalidParameter(
                f"Invalid approver_level '{cleaned['approver_level']}'.",
                fields={"approver_level": ["A permission level such as CAN_MANAGE."]},
            ) from None
    if "required_approvals" in cleaned and not 1 <= int(cleaned["required_approvals"]) <= 100:
        raise InvalidParameter(
            "required_approvals must be between 1 and 100.",
            fields={"required_approvals": ["Between 1 and 100."]},
        )
    if "required_tags" in cleaned:
        tags = cleaned["required_tags"] or {}
        if not isinstance(tags, dict):
            raise InvalidParameter(
                "required_tags must be an object of tag key to value.",
                fields={"required_tags": ["An object."]},
            )
        cleaned["required_tags"] = dict(validate_tag(k, v) for k, v in tags.items())
    hours = cleaned.get("expires_after_hours")
    if hours is not None and not 1 <= int(hours) <= 24 * 365:
        raise InvalidParameter(
            "expires_after_hours must be between 1 and 8760, or null for never.",
            fields={"expires_after_hours": ["Between 1 and 8760, or null."]},
        )
    is_alias = target.startswith(ALIAS_PREFIX)
    if cleaned.get("archive_existing_versions") and target not in (
        Stage.STAGING,
        Stage.PRODUCTION,
    ):
        raise InvalidParameter(
            "archive_existing_versions applies to Staging and Production targets only.",
            fields={"archive_existing_versions": ["Staging or Production targets only."]},
        )
    if cleaned.get("move_alias"):
        if is_alias:
            raise InvalidParameter(
                "move_alias applies to stage targets only.",
                fields={"move_alias": ["Stage targets only."]},
            )
        cleaned["move_alias"] = validate_alias(cleaned["move_alias"])
    return cleaned


@transaction.atomic
def policy_create(
    *, actor: Actor, model: RegisteredModel | None, target: str, **values: Any
) -> Policy:
    """Add a policy for a target of one model, or registry-wide when `model` is None."""
    target = parse_target(target)
    _require_policy_admin(actor, model)
    values.setdefault("approver_level", default_approver_level(target).name)
    cleaned = _clean(target, values)
    now = timezone.now()
    try:
        with transaction.atomic():
            policy = Policy.objects.create(
                model=model, target=target, created_at=now, updated_at=now, **cleaned
            )
    except IntegrityError:
        scope = f"model '{model.name}'" if model else "the registry"
        raise AlreadyExists(f"A policy for {target} of {scope} already exists.") from None
    event_record(
        type=WorkflowEvent.POLICY_CREATED,
        actor=actor,
        model=model,
        after=policy_snapshot(policy),
    )
    return policy


@transaction.atomic
def policy_update(*, actor: Actor, policy: Policy, **values: Any) -> Policy:
    """Change a policy; requests already made keep the rules they were made under."""
    policy = (
        Policy.objects.select_for_update(of=("self",)).select_related("model").get(pk=policy.pk)
    )
    _require_policy_admin(actor, policy.model)
    before = policy_snapshot(policy)
    for key, value in _clean(policy.target, values).items():
        setattr(policy, key, value)
    policy.updated_at = timezone.now()
    policy.save()
    event_record(
        type=WorkflowEvent.POLICY_UPDATED,
        actor=actor,
        model=policy.model,
        before=before,
        after=policy_snapshot(policy),
    )
    return policy


@transaction.atomic
def policy_delete(*, actor: Actor, policy: Policy) -> None:
    policy = (
        Policy.objects.select_for_update(of=("self",)).select_related("model").get(pk=policy.pk)
    )
    _require_policy_admin(actor, policy.model)
    event_record(
        type=WorkflowEvent.POLICY_DELETED,
        actor=actor,
        model=policy.model,
        before=policy_snapshot(policy),
    )
    policy.delete()
