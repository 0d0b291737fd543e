"""Writes on webhooks: subscriptions (create, update, rotate, delete), tests and redeliveries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.actors import Actor
from accounts.audit import AccountEvent
from config.errors import InvalidParameter, NotFound, PermissionDenied
from registry.choices import EventType
from registry.events import event_record
from registry.models import RegisteredModel
from registry.permissions import Level, require_level, require_writer
from webhooks import crypto, payloads, sending
from webhooks.choices import DeliveryState, Flavor, SubscriptionStatus, WebhookEvent
from webhooks.models import ALL_EVENTS, Attempt, Delivery, Subscription
from webhooks.ssrf import UrlRefused, url_check
from workflows.choices import WorkflowEvent

MAX_HEADERS = 20
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# Headers the registry sets itself; a subscription cannot replace them.
RESERVED_HEADERS = ("content-type", "content-length", "host", "transfer-encoding", "connection")
RESERVED_HEADER_PREFIXES = ("webhook-", "x-mlflow-", "x-databricks-")


def native_event_types() -> frozenset[str]:
    """Every event type of the history, which native subscriptions may name."""
    return frozenset(
        str(choice)
        for enum in (EventType, WorkflowEvent, WebhookEvent, AccountEvent)
        for choice in enum
    )


# --- Validation ------------------------------------------------------------------------------


def _invalid(field: str, message: str) -> InvalidParameter:
    return InvalidParameter(message, fields={field: [message]})


def validate_url(url: Any) -> str:
    try:
        return url_check(url)
    except UrlRefused as exc:
        raise _invalid("url", str(exc)) from exc


def validate_events(flavor: str, events: Any, *, registry_wide: bool) -> list[str]:
    """The event list in the flavor's vocabulary; native subscriptions may say "*" (all)."""
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise _invalid("events", "events must be a list of event names.")
    if not events:
        raise _invalid("events", "A webhook needs at least one event.")
    if flavor == Flavor.MLFLOW:
        known: frozenset[str] = payloads.MLFLOW_EVENT_NAMES
    elif flavor == Flavor.DATABRICKS:
        known = frozenset(payloads.DATABRICKS_EVENT_NAMES)
    else:
        known = native_event_types() | {ALL_EVENTS}
    unknown = sorted(set(events) - known)
    if unknown:
        raise _invalid(
            "events",
            f"Unknown event(s): {', '.join(unknown)}. Known: {', '.join(sorted(known))}.",
        )
    if flavor == Flavor.DATABRICKS and not registry_wide and "REGISTERED_MODEL_CREATED" in events:
        raise _invalid(
            "events", "REGISTERED_MODEL_CREATED can only be subscribed to registry-wide."
        )
    if ALL_EVENTS in events:
        return [ALL_EVENTS]
    return list(dict.fromkeys(events))


def validate_headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise _invalid("headers", "headers must be an object of header names to string values.")
    if len(headers) > MAX_HEADERS:
        raise _invalid("headers", f"At most {MAX_HEADERS} extra headers.")
    for name, value in headers.items():
        lowered = name.lower()
        if not HEADER_NAME.match(name):
            raise _invalid("headers", f"'{name}' is not a valid header name.")
        if lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_HEADER_PREFIXES):
            raise _invalid("headers", f"The header '{name}' is set by the registry.")
        if len(value) > 4096 or any(c in value for c in "\r\n\x00"):
            raise _invalid("headers", f"The value of '{name}' is too long or has line breaks.")
    return dict(headers)


def validate_secret(secret: Any) -> str:
    if not isinstance(secret, str) or not crypto.secret_is_valid(secret):
        raise _invalid(
            "secret",
            "A secret is either whsec_ and the base64 of at least 24 bytes, or a string of at "
            "least 16 characters.",
        )
    return secret


def validate_status(status: Any) -> str:
    if status not in SubscriptionStatus.values:
        raise _invalid("status", f"status must be one of {', '.join(SubscriptionStatus.values)}.")
    return str(status)


# --- Who may manage ------------------------------------------------------------------------


def require_manager(actor: Actor, model: RegisteredModel | None) -> None:
    """Model webhooks need CAN_MANAGE on the model; registry-wide ones a superuser."""
    require_writer(actor)
    if model is not None:
        require_level(actor, model, Level.CAN_MANAGE)
        return
    if actor.is_system:
        return
    user = actor.user
    if user is None or not (user.is_active and user.is_superuser):
        raise PermissionDenied("Registry-wide webhooks can only be managed by a superuser.")
    if actor.token is not None and actor.token.models.exists():
        raise PermissionDenied(
            "This API token is limited to some models; registry-wide webhooks need one that is not."
        )


def subscription_model(subscription: Subscription) -> RegisteredModel | None:
    if subscription.model_id is None:
        return None
    return RegisteredModel.objects.filter(pk=subscription.model_id).first()


def require_subscription_manager(actor: Actor, subscription: Subscription) -> None:
    """As require_manager; a model webhook whose model is gone is left to superusers."""
    if subscription.model_id is not None:
        model = subscription_model(subscription)
        if model is None:
            require_manager(actor, None)
            return
        require_manager(actor, model)
        return
    require_manager(actor, None)


# --- Subscriptions -------------------------------------------------------------------------


def _header_names(subscription: Subscription) -> list[str]:
    try:
        return sorted(crypto.decrypt_headers(subscription.headers_encrypted))
    except crypto.SecretUnreadable:
        return ["(unreadable with the current key)"]


def subscription_snapshot(subscription: Subscription) -> dict[str, Any]:
    """What the history records of a subscription: never the secret or header values."""
    return {
        "id": subscription.id.hex,
        "flavor": subscription.flavor,
        "name": subscription.name,
        "description": subscription.description,
        "url": subscription.url,
        "events": list(subscription.events),
        "model": subscription.model_name or None,
        "status": subscription.status,
        "headers": _header_names(subscription),
        "verify_tls": subscription.verify_tls,
    }


@dataclass(frozen=True, slots=True)
class Created:
    subscription: Subscription
    # Shown once: returned here, stored only encrypted.
    secret: str


def _record(type: str, subscription: Subscription, actor: Actor, **kw: Any) -> None:
    model = subscription_model(subscription)
    event_record(
        type=type,
        actor=actor,
        model=model,
        model_name=None if model else (subscription.model_name or None),
        **kw,
    )


@transaction.atomic
def subscription_create(
    *,
    actor: Actor,
    url: str,
    events: list[str],
    model: RegisteredModel | None = None,
    flavor: str = Flavor.NATIVE,
    name: str = "",
    description: str = "",
    status: str = SubscriptionStatus.ACTIVE,
    secret: str | None = None,
    headers: dict[str, str] | None = None,
    verify_tls: bool = True,
) -> Created:
    """Subscribe a URL to events, for one model or the whole registry; effective at once."""
    require_manager(actor, model)
    url = validate_url(url)
    events = validate_events(flavor, events, registry_wide=model is None)
    status = validate_status(status)
    headers = validate_headers(headers)
    if secret:
        secret = validate_secret(secret)
    elif flavor == Flavor.NATIVE:
        secret = crypto.secret_generate()
    if len(name) > 256:
        raise _invalid("name", "name is longer than 256 characters.")
    subscription = Subscription.objects.create(
        flavor=flavor,
        name=name,
        description=description,
        url=url,
        events=events,
        model_id=model.pk if model else None,
        model_name=model.name if model else "",
        owner=actor.user,
        status=status,
        secret_encrypted=crypto.encrypt(secret or ""),
        headers_encrypted=crypto.encrypt_headers(headers),
        verify_tls=verify_tls,
    )
    _record(WebhookEvent.CREATED, subscription, actor, after=subscription_snapshot(subscription))
    return Created(subscription, secret or "")


UNSET: Any = object()


@transaction.atomic
def subscription_update(
    *,
    subscription: Subscription,
    actor: Actor,
    url: Any = UNSET,
    events: Any = UNSET,
    name: Any = UNSET,
    description: Any = UNSET,
    status: Any = UNSET,
    headers: Any = UNSET,
    verify_tls: Any = UNSET,
    secret: Any = UNSET,
) -> Created:
    """Change what was given. A new `secret` (or `secret=None`: generate one) is a rotation:
    the old secret still signs for MODELGATE_WEBHOOK_SECRET_OVERLAP_SECONDS."""
    subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
    require_subscription_manager(actor, subscription)
    before = subscription_snapshot(subscription)
    if url is not UNSET:
        subscription.url = validate_url(url)
    if events is not UNSET:
        subscription.events = validate_events(
            subscription.flavor, events, registry_wide=subscription.model_id is None
        )
    if name is not UNSET:
        if not isinstance(name, str) or len(name) > 256:
            raise _invalid("name", "name must be a string of at most 256 characters.")
        subscription.name = name
    if description is not UNSET:
        subscription.description = description or ""
    if status is not UNSET:
        subscription.status = validate_status(status)
        # A person changing the status takes over from any reason the registry gave.
        subscription.status_reason = ""
        if subscription.status == SubscriptionStatus.ACTIVE:
            subscription.failing_since = None
    if headers is not UNSET:
        subscription.headers_encrypted = crypto.encrypt_headers(validate_headers(headers))
    if verify_tls is not UNSET:
        subscription.verify_tls = bool(verify_tls)
    new_secret = ""
    rotated = secret is not UNSET
    if rotated:
        new_secret = validate_secret(secret) if secret else crypto.secret_generate()
        now = timezone.now()
        if subscription.secret_encrypted:
            subscription.previous_secret_encrypted = subscription.secret_encrypted
            subscription.previous_secret_until = now + timedelta(
                seconds=settings.MODELGATE_WEBHOOK_SECRET_OVERLAP_SECONDS
            )
        subscription.secret_encrypted = crypto.encrypt(new_secret)
    subscription.save()
    if subscription.status == SubscriptionStatus.DISABLED and before["status"] != "DISABLED":
        _pending_cancel(subscription, "The subscription was disabled.")
    after = subscription_snapshot(subscription)
    if after != before or rotated:
        _record(
            WebhookEvent.UPDATED,
            subscription,
            actor,
            before=before,
            after=after,
            comment="Secret rotated." if rotated else "",
        )
    return Created(subscription, new_secret)


def _pending_cancel(subscription: Subscription, reason: str) -> None:
    Delivery.objects.filter(
        subscription=subscription, state=DeliveryState.PENDING, is_test=False
    ).update(
        state=DeliveryState.CANCELLED,
        next_attempt_at=None,
        finished_at=timezone.now(),
        last_error=reason,
    )


@transaction.atomic
def subscription_delete(*, subscription: Subscription, actor: Actor) -> None:
    """Remove the subscription with its deliveries and attempts (the history keeps the event)."""
    subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
    require_subscription_manager(actor, subscription)
    before = subscription_snapshot(subscription)
    _record(WebhookEvent.DELETED, subscription, actor, before=before)
    subscription.delete()


# --- Tests and redeliveries ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestResult:
    delivery: Delivery
    attempt: Attempt | None

    @property
    def success(self) -> bool:
        return self.delivery.state == DeliveryState.SUCCEEDED


def _test_body(subscription: Subscription, event_name: str, now: datetime) -> str:
    model_name = subscription.model_name or "example-model"
    if subscription.flavor == Flavor.MLFLOW:
        entity, _, action = event_name.partition(".")
        data: dict[str, Any] = {"name": model_name}
        if entity.startswith("model_version"):
            data["version"] = "1"
        if entity == "model_version_tag":
            data.update(
                key="example-key", **({"value": "example-value"} if action == "set" else {})
            )
        if entity == "model_version_alias":
            data["alias"] = "example-alias"
        if entity == "model_version":
            data.update(source="models:/example", run_id=None, tags={}, description=None)
        if entity == "registered_model":
            data.update(tags={}, description=None)
        return payloads.mlflow_body(event_name, now, data)
    if subscription.flavor == Flavor.DATABRICKS:
        stages = {"STAGING": "Staging", "PRODUCTION": "Production", "ARCHIVED": "Archived"}
        to_stage = next((v for k, v in stages.items() if f"_{k}" in event_name), None)
        if to_stage is None and "TRANSITION" in event_name:
            to_stage = "Production"
        return payloads.databricks_payload(
            event_name,
            webhook_id=subscription.id.hex,
            when=now,
            model_name=model_name,
            version=None if event_name == "REGISTERED_MODEL_CREATED" else 1,
            from_stage="None" if to_stage else None,
            to_stage=to_stage,
            tags=[{"key": "example-key", "value": "example-value"}]
            if event_name == "MODEL_VERSION_TAG_SET"
            else None,
            comment="Example comment." if event_name == "COMMENT_CREATED" else None,
        )
    data = {
        "test": True,
        "model": {"id": subscription.model_id, "name": model_name},
        "message": "A test delivery from Modelgate: no registry change happened.",
    }
    return payloads.native_body(event_name, None, now, data)


def subscription_test(
    *, subscription: Subscription, actor: Actor, event_name: str | None = None
) -> TestResult:
    """Send a signed test event now (also in TEST_MODE) and report the receiver's answer."""
    require_subscription_manager(actor, subscription)
    if event_name:
        validate_events(subscription.flavor, [event_name], registry_wide=True)
        if event_name == ALL_EVENTS:
            event_name = None
    if not event_name:
        events = [e for e in subscription.events if e != ALL_EVENTS]
        event_name = events[0] if events else "webhook.test"
    now = timezone.now()
    delivery = Delivery.objects.create(
        subscription=subscription,
        event=None,
        event_type=event_name,
        body=_test_body(subscription, event_name, now),
        is_test=True,
        next_attempt_at=now,
        dispatched_at=now,
    )
    sending.delivery_send(pk=delivery.pk, force=True)
    delivery.refresh_from_db()
    return TestResult(delivery, delivery.attempt_set.order_by("-number").first())


@transaction.atomic
def deliveries_redeliver(*, deliveries: list[Delivery], actor: Actor, comment: str = "") -> int:
    """Send finished deliveries again with their id and body unchanged (receivers
    de-duplicate by webhook-id); the retry schedule starts over."""
    if not deliveries:
        return 0
    subscriptions = {d.subscription_id: d.subscription for d in deliveries}
    for subscription in subscriptions.values():
        require_subscription_manager(actor, subscription)
    now = timezone.now()
    ids = [d.pk for d in deliveries if d.state != DeliveryState.PENDING and not d.is_test]
    pending = list(
        Delivery.objects.select_for_update()
        .filter(pk__in=ids)
        .exclude(state=DeliveryState.PENDING)
        .values_list("pk", "attempts")
    )
    for pk, attempts in pending:
        Delivery.objects.filter(pk=pk).update(
            state=DeliveryState.PENDING,
            retries_from=attempts,
            next_attempt_at=now,
            dispatched_at=now,
            lease_until=None,
            finished_at=None,
        )
    redelivered = [pk for pk, _ in pending]
    for subscription in subscriptions.values():
        mine = [d.pk for d in deliveries if d.subscription_id == subscription.pk]
        if set(mine) & set(redelivered):
            _record(
                WebhookEvent.REDELIVERED,
                subscription,
                actor,
                after={
                    "subscription": subscription.id.hex,
                    "deliveries": sorted(set(mine) & set(redelivered)),
                },
                comment=comment,
            )
    sending.delivery_dispatch_on_commit(redelivered)
    return len(redelivered)


def deliveries_failed_since(
    *, actor: Actor, since: datetime, subscription: Subscription | None = None
) -> list[Delivery]:
    """Failed or cancelled deliveries made since `since`, of subscriptions the actor manages."""
    queryset = Delivery.objects.select_related("subscription").filter(
        state__in=[DeliveryState.FAILED, DeliveryState.CANCELLED],
        is_test=False,
        created_at__gte=since,
    )
    if subscription is not None:
        queryset = queryset.filter(subscription=subscription)
    deliveries = list(queryset.order_by("pk")[:10_000])
    allowed: dict[Any, bool] = {}
    result = []
    for delivery in deliveries:
        sub = delivery.subscription
        if sub.pk not in allowed:
            try:
                require_subscription_manager(actor, sub)
                allowed[sub.pk] = True
            except (PermissionDenied, NotFound):
                allowed[sub.pk] = False
        if allowed[sub.pk]:
            result.append(delivery)
    return result
