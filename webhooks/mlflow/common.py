"""What the MLflow and Databricks webhook routes share: the actor, lookups by id, paging."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from rest_framework.request import Request

from accounts.actors import Actor, Source
from config.errors import InvalidParameter, NotFound
from webhooks import selectors
from webhooks.models import Subscription

DEFAULT_MAX_RESULTS = 100
MAX_RESULTS = 1000


def actor_of(request: Request) -> Actor:
    return Actor.of_request(request, Source.MLFLOW)


def subscription_of_flavor(*, actor: Actor, pk: str, flavor: str) -> Subscription:
    """The subscription with id `pk` (hex or hyphenated), if the actor may manage it and it was
    made through this flavor's API; RESOURCE_DOES_NOT_EXIST otherwise (as for a wrong id)."""
    message = f"Webhook with ID {pk} not found."
    try:
        found = selectors.subscription_get(actor=actor, pk=pk)
    except NotFound:
        raise NotFound(message) from None
    if found.flavor != flavor:
        raise NotFound(message)
    return found


def parse_max_results(raw: Any) -> int:
    """`max_results`: absent or 0 mean the default (100), as MLflow's store reads it; 1..1000."""
    if raw is None or raw == "":
        return DEFAULT_MAX_RESULTS
    try:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(raw)
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidParameter(
            f"Invalid value {raw!r} for parameter 'max_results': expected an integer.",
            fields={"max_results": ["Expected an integer."]},
        ) from None
    if value == 0:
        return DEFAULT_MAX_RESULTS
    if not 1 <= value <= MAX_RESULTS:
        raise InvalidParameter(
            f"max_results must be between 1 and {MAX_RESULTS}.",
            fields={"max_results": [f"Between 1 and {MAX_RESULTS}."]},
        )
    return value


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Subscription]
    next_token: str | None


def _sort_key(subscription: Subscription) -> tuple[datetime, str]:
    return (subscription.created_at, subscription.id.hex)


def _bad_token(token: str) -> InvalidParameter:
    return InvalidParameter(
        f"Invalid page token '{token[:64]}'.", fields={"page_token": ["Invalid page token."]}
    )


def _token_position(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad_token(token) from None
    if not isinstance(body, dict):
        raise _bad_token(token)
    created, pk = body.get("c"), body.get("i")
    if not isinstance(created, str) or not isinstance(pk, str):
        raise _bad_token(token)
    try:
        parsed = parse_datetime(created)
    except ValueError:  # well-formed but impossible, such as month 13
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise _bad_token(token)
    return (parsed, pk)


def newest_first_page(
    subscriptions: Sequence[Subscription], *, max_results: int, token: str | None
) -> Page:
    """One page, newest first (MLflow's order), after the opaque keyset `token`: webhooks added
    or removed between pages never make the next page skip or repeat one."""
    rows = sorted(subscriptions, key=_sort_key, reverse=True)
    if token:
        position = _token_position(token)
        rows = [row for row in rows if _sort_key(row) < position]
    if len(rows) <= max_results:
        return Page(rows, None)
    rows = rows[:max_results]
    created, pk = _sort_key(rows[-1])
    body = json.dumps({"c": created.isoformat(), "i": pk}, separators=(",", ":"))
    return Page(rows, base64.urlsafe_b64encode(body.encode()).decode().rstrip("="))
