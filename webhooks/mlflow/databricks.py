"""Databricks' registry webhooks (reference §3.3): `/mlflow/registry-webhooks/{create, list,
update, delete, test}`.

- Only HTTP webhooks: `http_url_spec` {url, secret, authorization (sent as the Authorization
  header; "" = none), enable_ssl_verification}. A `job_spec` (a webhook that runs a job) is
  refused with INVALID_PARAMETER_VALUE: Modelgate runs no jobs.
- A webhook for a model needs CAN_MANAGE on it (404 when the caller cannot see the model); a
  registry-wide one (no `model_name`) a superuser. The list shows what the caller manages.
- Ids are the subscription's id as 32 hex digits, the `webhook_id` of the delivered payloads.
- `test` sends the given event (else the webhook's first, where Databricks picks one at random)
  and answers in the current SDK's shape, `{"status_code", "body"}` (SDKs before 2025-07 expected
  it wrapped in `{"webhook": …}`; the docs' example says `status`). When no HTTP answer came
  back, `status_code` is absent and `body` says why.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request

from config.errors import InvalidParameter
from registry import selectors as registry_selectors
from registry.mlflow.http import MlflowApi, Params, invalid, missing
from registry.mlflow.rendering import millis
from registry.models import RegisteredModel
from registry.permissions import Level
from webhooks import crypto, selectors, services
from webhooks.choices import Flavor, SubscriptionStatus
from webhooks.mlflow.common import (
    actor_of,
    newest_first_page,
    parse_max_results,
    subscription_of_flavor,
)
from webhooks.models import Subscription
from webhooks.payloads import DATABRICKS_EVENT_NAMES

AUTHORIZATION = "Authorization"


# --- parsing ---------------------------------------------------------------------------------


def _no_jobs(params: Params) -> None:
    if params.has("job_spec"):
        raise InvalidParameter(
            "Invalid parameter 'job_spec': job webhooks are not supported by Modelgate, which "
            "runs no jobs. Use 'http_url_spec' to have events POSTed to a URL.",
            fields={"job_spec": ["Job webhooks are not supported."]},
        )


def _url_spec(params: Params) -> dict[str, Any] | None:
    spec = params.raw("http_url_spec")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise invalid("http_url_spec", spec, "expected an object with url, secret, ...")
    for name in ("url", "secret", "authorization"):
        value = spec.get(name)
        if value is not None and not isinstance(value, str):
            raise invalid(f"http_url_spec.{name}", value, "expected a string")
    authorization = spec.get("authorization")
    if authorization is not None and (
        len(authorization) > 4096 or any(c in authorization for c in "\r\n\x00")
    ):
        raise InvalidParameter(
            "Invalid value for parameter 'http_url_spec.authorization': at most 4096 characters "
            "on one line.",
            fields={"http_url_spec.authorization": ["One line, at most 4096 characters."]},
        )
    verify = spec.get("enable_ssl_verification")
    if verify is not None and not isinstance(verify, bool):
        raise invalid("http_url_spec.enable_ssl_verification", verify, "expected true or false")
    return spec


def _events(params: Params, *, required: bool) -> list[str] | None:
    events = params.strings("events")
    if not events:
        if required:
            raise missing("events")
        return None
    return events


def _filter_events(params: Params) -> set[str]:
    events = set(params.strings("events"))
    unknown = sorted(events - set(DATABRICKS_EVENT_NAMES))
    if unknown:
        raise InvalidParameter(
            f"Invalid value {', '.join(unknown)} for parameter 'events': known events are "
            f"{', '.join(DATABRICKS_EVENT_NAMES)}.",
            fields={"events": ["Unknown event."]},
        )
    return events


# --- rendering -------------------------------------------------------------------------------


def webhook_json(subscription: Subscription, model_names: dict[int, str]) -> dict[str, Any]:
    """A subscription as Databricks' RegistryWebhook: no secret, no authorization."""
    body: dict[str, Any] = {"id": subscription.id.hex, "events": list(subscription.events)}
    if subscription.description:
        body["description"] = subscription.description
    if subscription.model_id is not None:
        # The model's current name (renames keep its id); the stored one once it is gone.
        body["model_name"] = model_names.get(subscription.model_id, subscription.model_name)
    body["status"] = subscription.status
    body["creation_timestamp"] = millis(subscription.created_at)
    body["last_updated_timestamp"] = millis(subscription.updated_at)
    body["http_url_spec"] = {
        "url": subscription.url,
        "enable_ssl_verification": subscription.verify_tls,
    }
    return body


def _model_names(subscriptions: list[Subscription]) -> dict[int, str]:
    ids = {s.model_id for s in subscriptions if s.model_id is not None}
    if not ids:
        return {}
    return dict(RegisteredModel.objects.filter(pk__in=ids).values_list("pk", "name"))


def _one(subscription: Subscription) -> dict[str, Any]:
    return {"webhook": webhook_json(subscription, _model_names([subscription]))}


def _webhook(request: Request, params: Params) -> Subscription:
    raw = params.raw("id")
    if raw is None or raw == "":
        raise missing("id")
    if not isinstance(raw, str):
        raise invalid("id", raw, "expected a webhook id")
    return subscription_of_flavor(actor=actor_of(request), pk=raw, flavor=Flavor.DATABRICKS)


# --- views -----------------------------------------------------------------------------------


class RegistryWebhookCreateApi(MlflowApi):
    def post(self, request: Request, params: Params) -> dict[str, Any]:
        actor = actor_of(request)
        model = None
        if model_name := params.string("model_name"):
            model = registry_selectors.model_get(
                actor=actor, name=model_name, level=Level.CAN_MANAGE
            )
        services.require_manager(actor, model)
        _no_jobs(params)
        spec = _url_spec(params)
        if spec is None:
            raise missing("http_url_spec")
        if not spec.get("url"):
            raise missing("http_url_spec.url")
        events = _events(params, required=True)
        authorization = spec.get("authorization")
        created = services.subscription_create(
            actor=actor,
            flavor=Flavor.DATABRICKS,
            model=model,
            url=spec["url"],
            events=events or [],
            description=params.string("description") or "",
            status=params.string("status") or SubscriptionStatus.ACTIVE,
            secret=spec.get("secret") or None,
            headers={AUTHORIZATION: authorization} if authorization else None,
            verify_tls=spec.get("enable_ssl_verification", True),
        )
        return _one(created.subscription)


class RegistryWebhookListApi(MlflowApi):
    """The webhooks the caller manages, newest first: with any of `events`, of `model_name`."""

    def get(self, request: Request, params: Params) -> dict[str, Any]:
        actor = actor_of(request)
        events = _filter_events(params)
        max_results = parse_max_results(params.raw("max_results"))
        token = params.string("page_token") or None
        model = None
        if model_name := params.string("model_name"):
            model = registry_selectors.model_get(actor=actor, name=model_name)
        mine = selectors.subscription_list(actor=actor, model=model, flavor=Flavor.DATABRICKS)
        if events:
            mine = [s for s in mine if events & set(s.events)]
        page = newest_first_page(mine, max_results=max_results, token=token)
        body: dict[str, Any] = {}
        if page.rows:
            names = _model_names(page.rows)
            body["webhooks"] = [webhook_json(s, names) for s in page.rows]
        if page.next_token:
            body["next_page_token"] = page.next_token
        return body


class RegistryWebhookUpdateApi(MlflowApi):
    """Change what is given; in `http_url_spec` too (a new `secret` rotates it, `authorization`
    "" removes the header)."""

    def patch(self, request: Request, params: Params) -> dict[str, Any]:
        subscription = _webhook(request, params)
        _no_jobs(params)
        changes: dict[str, Any] = {}
        if params.has("description"):
            changes["description"] = params.string("description")
        if (events := _events(params, required=False)) is not None:
            changes["events"] = events
        if (status := params.string("status")) is not None:
            changes["status"] = status
        spec = _url_spec(params) or {}
        if spec.get("url"):
            changes["url"] = spec["url"]
        if "enable_ssl_verification" in spec:
            changes["verify_tls"] = spec["enable_ssl_verification"]
        if (secret := spec.get("secret")) is not None:
            if secret == "":
                raise InvalidParameter(
                    "Invalid value '' for parameter 'http_url_spec.secret': a webhook's secret "
                    "cannot be removed; give a new one (at least 16 characters) to rotate it.",
                    fields={"http_url_spec.secret": ["Cannot be empty."]},
                )
            changes["secret"] = secret
        if (authorization := spec.get("authorization")) is not None:
            headers = crypto.decrypt_headers(subscription.headers_encrypted)
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if authorization:
                headers[AUTHORIZATION] = authorization
            changes["headers"] = headers
        updated = services.subscription_update(
            subscription=subscription, actor=actor_of(request), **changes
        )
        return _one(updated.subscription)


class RegistryWebhookDeleteApi(MlflowApi):
    """`id` in the query string (the Databricks SDK) or the JSON body."""

    def delete(self, request: Request, params: Params) -> dict[str, Any]:
        subscription = _webhook(request, params)
        services.subscription_delete(subscription=subscription, actor=actor_of(request))
        return {}


class RegistryWebhookTestApi(MlflowApi):
    def post(self, request: Request, params: Params) -> dict[str, Any]:
        subscription = _webhook(request, params)
        event = params.string("event") or None
        if event is not None and event not in DATABRICKS_EVENT_NAMES:
            raise InvalidParameter(
                f"Invalid value {event} for parameter 'event': known events are "
                f"{', '.join(DATABRICKS_EVENT_NAMES)}.",
                fields={"event": ["Unknown event."]},
            )
        result = services.subscription_test(
            subscription=subscription, actor=actor_of(request), event_name=event
        )
        attempt = result.attempt
        if attempt is None or attempt.status_code is None:
            return {"body": result.delivery.last_error or "No answer from the receiver."}
        return {"status_code": attempt.status_code, "body": attempt.response_excerpt}
