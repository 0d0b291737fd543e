"""MLflow searches: `order_by`, `max_results`, and opaque keyset page tokens.

The filter is parsed and translated by registry.mlflow.filters. Pages are keyset pages: the token
carries the last row's sort-key values and primary key, so rows added or removed between pages
never make the next page skip or repeat a row. A search is a fixed number of indexed queries,
whatever the page size.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from django.db.models import F, Q, QuerySet
from django.utils.dateparse import parse_datetime

from config.errors import InvalidParameter
from registry.mlflow.filters import Kind, model_filter, parse_filter, version_filter
from registry.mlflow.filters import invalid as _invalid
from registry.models import ModelVersion, RegisteredModel

MODELS_MAX_RESULTS = 1000
MODELS_DEFAULT_MAX_RESULTS = 100
VERSIONS_MAX_RESULTS = 200_000
VERSIONS_DEFAULT_MAX_RESULTS = 200_000


# --- order_by -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ORM field of the sort, its direction, and how its value goes into a page token."""

    field: str
    ascending: bool
    kind: Literal["str", "int", "datetime"]


_MODEL_ORDER_KEYS = {
    "name": SortKey("name", True, "str"),
    "timestamp": SortKey("updated_at", True, "datetime"),
    "last_updated_timestamp": SortKey("updated_at", True, "datetime"),
}
_VERSION_ORDER_KEYS = {
    "name": SortKey("model__name", True, "str"),
    "version_number": SortKey("version", True, "int"),
    "creation_timestamp": SortKey("created_at", True, "datetime"),
    "last_updated_timestamp": SortKey("updated_at", True, "datetime"),
}
_VERSION_DEFAULT_ORDER = ["last_updated_timestamp DESC", "name ASC", "version_number DESC"]
_ORDER_RE = re.compile(
    r"^\s*(?:attribute\.|attributes\.)?(`[^`]+`|[A-Za-z_]\w*)\s*(?:\s(ASC|DESC))?\s*$",
    re.IGNORECASE,
)


def parse_order_by(order_by: list[str], kind: Kind) -> list[SortKey]:
    """Sort keys for `order_by`, with MLflow's defaults and tie-breaks, then the primary key."""
    keys = _MODEL_ORDER_KEYS if kind == "models" else _VERSION_ORDER_KEYS
    clauses = order_by if (order_by or kind == "models") else _VERSION_DEFAULT_ORDER
    sort: list[SortKey] = []
    for clause in clauses:
        if not isinstance(clause, str):
            raise _invalid(f"Invalid order_by clause {clause!r}.", "order_by")
        match = _ORDER_RE.match(clause)
        if match is None:
            raise _invalid(
                f"Invalid order_by clause '{clause}'. Expected '<key> [ASC|DESC]'.", "order_by"
            )
        key = match.group(1).strip("`")
        if key not in keys:
            raise _invalid(
                f"Invalid order by key '{key}' specified. Valid keys are {', '.join(keys)}.",
                "order_by",
            )
        base = keys[key]
        if any(existing.field == base.field for existing in sort):
            raise _invalid(f"`order_by` contains duplicate fields: {order_by}", "order_by")
        ascending = (match.group(2) or "ASC").upper() == "ASC"
        sort.append(SortKey(base.field, ascending, base.kind))
    tiebreaks = [keys["name"]]
    if kind == "versions":
        tiebreaks.append(SortKey("version", False, "int"))
    for tiebreak in tiebreaks:
        if not any(existing.field == tiebreak.field for existing in sort):
            sort.append(tiebreak)
    sort.append(SortKey("pk", True, "int"))
    return sort


def order_fields(sort: list[SortKey]) -> list[Any]:
    return [F(key.field).asc() if key.ascending else F(key.field).desc() for key in sort]


# --- keyset page tokens ---------------------------------------------------------------------


def _signature(sort: list[SortKey]) -> str:
    return ",".join(f"{key.field}:{'a' if key.ascending else 'd'}" for key in sort)


def _encode_value(key: SortKey, value: Any) -> Any:
    if key.kind == "datetime":
        return value.isoformat()
    return value


def _row_value(row: Any, field: str) -> Any:
    if isinstance(row, dict):  # a `.values()` row: related fields under their ORM path
        return row["id" if field == "pk" else field]
    value = row
    for part in field.split("__"):
        value = getattr(value, part)
    return value


def page_token(sort: list[SortKey], last_row: Any) -> str:
    """An opaque token naming the position just after `last_row` in this sort."""
    values = [_encode_value(key, _row_value(last_row, key.field)) for key in sort]
    body = json.dumps({"o": _signature(sort), "k": values}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode()


def _bad_token(token: str) -> InvalidParameter:
    return _invalid(f"Invalid page token '{token[:64]}'.", "page_token")


def _decode_value(key: SortKey, value: Any, token: str) -> Any:
    if key.kind == "datetime":
        try:
            parsed = parse_datetime(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise _bad_token(token)
        return parsed
    if key.kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) > 2**62:
            raise _bad_token(token)
        return value
    if not isinstance(value, str) or "\x00" in value:
        raise _bad_token(token)
    return value


def after_token(sort: list[SortKey], token: str) -> Q:
    """The condition "comes after the token's row" in this sort; INVALID_PARAMETER_VALUE if bad."""
    try:
        padded = token + "=" * (-len(token) % 4)
        raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        body = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad_token(token) from None
    if (
        not isinstance(body, dict)
        or body.get("o") != _signature(sort)
        or not isinstance(body.get("k"), list)
        or len(body["k"]) != len(sort)
    ):
        raise _bad_token(token)
    values = [_decode_value(key, value, token) for key, value in zip(sort, body["k"], strict=True)]
    # (k1 > v1) OR (k1 = v1 AND k2 > v2) OR ... with > flipped to < for descending keys.
    condition = Q()
    equal_so_far = Q()
    for key, value in zip(sort, values, strict=True):
        beyond = Q(**{f"{key.field}__{'gt' if key.ascending else 'lt'}": value})
        condition |= equal_so_far & beyond
        equal_so_far &= Q(**{key.field: value})
    return condition


# --- max_results ----------------------------------------------------------------------------


def parse_max_results(raw: Any, kind: Kind) -> int:
    default = MODELS_DEFAULT_MAX_RESULTS if kind == "models" else VERSIONS_DEFAULT_MAX_RESULTS
    limit = MODELS_MAX_RESULTS if kind == "models" else VERSIONS_MAX_RESULTS
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise _invalid(f"Invalid value {raw!r} for parameter 'max_results'.", "max_results")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise _invalid(
            f"Invalid value {raw!r} for parameter 'max_results': expected an integer.",
            "max_results",
        ) from None
    smallest = 0 if kind == "models" else 1
    if value > limit:
        raise _invalid(
            "Invalid value for request parameter max_results. It must be at most "
            f"{limit}, but got value {value}",
            "max_results",
        )
    if value < smallest:
        raise _invalid(
            f"Invalid value for max_results. It must be at least {smallest}, but got {value}",
            "max_results",
        )
    return value


# --- searches -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Any]
    next_token: str | None


def _page(qs: QuerySet, sort: list[SortKey], max_results: int, token: str | None) -> Page:
    if token:
        qs = qs.filter(after_token(sort, token))
    if max_results == 0:
        return Page([], None)
    rows = list(qs.order_by(*order_fields(sort))[: max_results + 1])
    if len(rows) > max_results:
        rows = rows[:max_results]
        return Page(rows, page_token(sort, rows[-1]))
    return Page(rows, None)


def search_models(
    qs: QuerySet[RegisteredModel],
    *,
    filter_string: str | None,
    order_by: list[str],
    max_results: int,
    token: str | None,
) -> Page:
    """One page of registered models matching an MLflow filter, in MLflow's order."""
    comparisons = parse_filter(filter_string, "models")
    sort = parse_order_by(order_by, "models")
    return _page(qs.filter(model_filter(comparisons)), sort, max_results, token)


def search_versions(
    qs: QuerySet[ModelVersion],
    *,
    filter_string: str | None,
    order_by: list[str],
    max_results: int,
    token: str | None,
) -> Page:
    """One page of live model versions matching an MLflow filter, in MLflow's order."""
    comparisons = parse_filter(filter_string, "versions")
    sort = parse_order_by(order_by, "versions")
    return _page(qs.filter(version_filter(comparisons)), sort, max_results, token)
