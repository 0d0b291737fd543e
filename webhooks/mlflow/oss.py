"""MLflow's webhook routes (reference §2.8): `/mlflow/webhooks[/{id}[/test]]`.

On the wire an event is `{"entity": "MODEL_VERSION", "action": "CREATED"}` (proto enum names;
their numbers are accepted too), stored as `model_version.created`. MLflow webhooks are
registry-wide, so, as on an MLflow server with authentication, every route but the list needs a
superuser (PERMISSION_DENIED otherwise, before the id is even looked up); the list shows only
what the caller manages. The status is ACTIVE or DISABLED: a subscription another API put in
TEST_MODE reads as DISABLED here (it fires on no event). The secret is write-only.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework.request import Request

from accounts.actors import Actor
from config.errors import InvalidParameter, PermissionDenied
from registry.mlflow.http import MlflowApi, Params, invalid, missing
from registry.mlflow.rendering import millis
from webhooks import selectors, services
from webhooks.choices import Flavor, SubscriptionStatus
from webhooks.mlflow.common import (
    actor_of,
    newest_first_page,
    parse_max_results,
    subscription_of_flavor,
)
from webhooks.models import Subscription
from webhooks.payloads import MLFLOW_EVENT_NAMES

# Proto enum numbers of webhooks.proto, for clients that send numbers instead of names.
_ENTITIES = (
    "ENTITY_UNSPECIFIED",
    "REGISTERED_MODEL",
    "MODEL_VERSION",
    "MODEL_VERSION_TAG",
    "MODEL_VERSION_ALIAS",
    "PROMPT",
    "PROMPT_VERSION",
    "PROMPT_TAG",
    "PROMPT_VERSION_TAG",
    "PROMPT_ALIAS",
    "BUDGET_POLICY",
)
_ACTIONS = ("ACTION_UNSPECIFIED", "CREATED", "UPDATED", "DELETED", "SET", "EXCEEDED")
_STATUSES = {"ACTIVE": SubscriptionStatus.ACTIVE, "DISABLED": SubscriptionStatus.DISABLED}
_STATUS_NUMBERS = {1: "ACTIVE", 2: "DISABLED"}
# MLflow's rule for webhook names.
_NAME = re.compile(r"^(?=.{1,63}$)[a-z0-9]([a-z0-9._-]*[a-z0-9])?$", re.IGNORECASE)
_SUPPORTED = ", ".join(sorted(MLFLOW_EVENT_NAMES))


# --- parsing ---------------------------------------------------------------------------------


def _enum_name(value: Any, names: tuple[str, ...]) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return names[value] if 0 < value < len(names) else None
    if isinstance(value, str) and value.upper() in names[1:]:
        return value.upper()
    return None


def _event_name(event: dict[str, Any], field: str) -> str:
    """`{"entity": "MODEL_VERSION", "action": "CREATED"}` → `model_version.created`."""
    entity = _enum_name(event.get("entity"), _ENTITIES)
    action = _enum_name(event.get("action"), _ACTIONS)
    if entity is None or action is None:
        raise invalid(
            field,
            event,
            'expected {"entity": <WebhookEntity>, "action": <WebhookAction>} with enum names '
            "such as MODEL_VERSION and CREATED",
        )
    name = f"{entity.lower()}.{action.lower()}"
    if name not in MLFLOW_EVENT_NAMES:
        raise InvalidParameter(
            f"Invalid value {name} in parameter '{field}': Modelgate sends these webhook "
            f"events: {_SUPPORTED}.",
            fields={field: [f"Supported: {_SUPPORTED}."]},
        )
    return name


def _events(params: Params) -> list[str] | None:
    items = params.objects("events")
    if items is None:
        return None
    return [_event_name(item, "events") for item in items]


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise InvalidParameter(
            f"Webhook name {value!r} is invalid. It must start and end with a letter or digit, "
            "be less than 63 characters long, and contain only letters, digits, dots (.), "
            "underscores (_), and hyphens (-).",
            fields={"name": ["Invalid webhook name."]},
        )
    return value


def _status(params: Params) -> str | None:
    value = params.raw("status")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = _STATUS_NUMBERS.get(value, value)
    if not isinstance(value, str) or value.upper() not in _STATUSES:
        raise invalid("status", value, "expected ACTIVE or DISABLED")
    return _STATUSES[value.upper()]


def _secret(params: Params) -> str | None:
    secret = params.string("secret")
    if secret == "":
        raise InvalidParameter(
            "Invalid value '' for parameter 'secret': a webhook's secret cannot be removed; "
            "give a new one (at least 16 characters) to rotate it.",
            fields={"secret": ["Cannot be empty."]},
        )
    return secret


# --- rendering -------------------------------------------------------------------------------


def event_json(name: str) -> dict[str, str]:
    entity, _, action = name.partition(".")
    return {"entity": entity.upper(), "action": action.upper()}


def webhook_json(subscription: Subscription) -> dict[str, Any]:
    """A subscription as MLflow's Webhook message (no secret, unset fields omitted)."""
    body: dict[str, Any] = {"webhook_id": subscription.id.hex, "name": subscription.name}
    if subscription.description:
        body["description"] = subscription.description
    body["url"] = subscription.url
    body["events"] = [event_json(e) for e in subscription.events if "." in e]
    body["status"] = "ACTIVE" if subscription.status == SubscriptionStatus.ACTIVE else "DISABLED"
    body["creation_timestamp"] = millis(subscription.created_at)
    body["last_updated_timestamp"] = millis(subscription.updated_at)
    return body


# --- permissions -----------------------------------------------------------------------------


def _require_superuser(actor: Actor, *, write: bool) -> None:
    """MLflow webhooks are registry-wide: only a superuser manages them (writes not with a
    read-only token)."""
    if write:
        services.require_manager(actor, None)
        return
    user = actor.user
    if not (actor.is_system or (user is not None and user.is_active and user.is_superuser)):
        raise PermissionDenied("Registry-wide webhooks can only be managed by a superuser.")


def _webhook(request: Request, view: MlflowApi, *, write: bool) -> Subscription:
    actor = actor_of(request)
    _require_superuser(actor, write=write)
    return subscription_of_flavor(actor=actor, pk=view.kwargs["webhook_id"], flavor=Flavor.MLFLOW)


# --- views -----------------------------------------------------------------------------------


class WebhookCreateListApi(MlflowApi):
    """POST creates a webhook; GET lists them, newest first, `max_results` (default 100) at a
    time with an opaque `page_token`."""

    def post(self, request: Request, params: Params) -> dict[str, Any]:
        actor = actor_of(request)
        _require_superuser(actor, write=True)
        name = _name(params.required("name"))
        url = params.required("url")
        events = _events(params)
        if not events:
            raise missing("events")
        created = services.subscription_create(
            actor=actor,
            flavor=Flavor.MLFLOW,
            name=name,
            url=url,
            events=events,
            description=params.string("description") or "",
            status=_status(params) or SubscriptionStatus.ACTIVE,
            secret=_secret(params),
        )
        return {"webhook": webhook_json(created.subscription)}

    def get(self, request: Request, params: Params) -> dict[str, Any]:
        max_results = parse_max_results(params.raw("max_results"))
        token = params.string("page_token") or None
        mine = selectors.subscription_list(actor=actor_of(request), flavor=Flavor.MLFLOW)
        page = newest_first_page(mine, max_results=max_results, token=token)
        body: dict[str, Any] = {}
        if page.rows:
            body["webhooks"] = [webhook_json(s) for s in page.rows]
        if page.next_token:
            body["next_page_token"] = page.next_token
        return body


class WebhookDetailApi(MlflowApi):
    """GET, PATCH (what is given; an empty name, URL or event list changes nothing, as on
    MLflow) and DELETE one webhook."""

    def get(self, request: Request, params: Params) -> dict[str, Any]:
        return {"webhook": webhook_json(_webhook(request, self, write=False))}

    def patch(self, request: Request, params: Params) -> dict[str, Any]:
        subscription = _webhook(request, self, write=True)
        changes: dict[str, Any] = {}
        if name := params.string("name"):
            changes["name"] = _name(name)
        if params.has("description"):
            changes["description"] = params.string("description")
        if url := params.string("url"):
            changes["url"] = url
        if events := _events(params):
            changes["events"] = events
        if (secret := _secret(params)) is not None:
            changes["secret"] = secret
        if (status := _status(params)) is not None:
            changes["status"] = status
        updated = services.subscription_update(
            subscription=subscription, actor=actor_of(request), **changes
        )
        return {"webhook": webhook_json(updated.subscription)}

    def delete(self, request: Request, params: Params) -> dict[str, Any]:
        subscription = _webhook(request, self, write=True)
        services.subscription_delete(subscription=subscription, actor=actor_of(request))
        return {}


class WebhookTestApi(MlflowApi):
    """Send a test event now (`event`, else the webhook's first) and report the answer as
    MLflow's WebhookTestResult: `error_message` only when no HTTP answer came back (or it was a
    redirect, which is not followed)."""

    def post(self, request: Request, params: Params) -> dict[str, Any]:
        subscription = _webhook(request, self, write=True)
        event = params.raw("event")
        if event is not None and not isinstance(event, dict):
            raise invalid("event", event, "expected an object with entity and action")
        result = services.subscription_test(
            subscription=subscription,
            actor=actor_of(request),
            event_name=_event_name(event, "event") if event else None,
        )
        attempt = result.attempt
        code = attempt.status_code if attempt is not None else None
        body: dict[str, Any] = {"success": result.success}
        if code is not None:
            body["response_status"] = code
            if attempt is not None and attempt.response_excerpt:
                body["response_body"] = attempt.response_excerpt
        if code is None or 300 <= code < 400:
            body["error_message"] = result.delivery.last_error or "No answer from the receiver."
        return {"result": body}
