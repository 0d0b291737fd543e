"""Reads the MLflow routes need beyond registry.selectors, each a fixed number of queries.

The busy routes (alias GET, get-latest-versions, the searches) read plain rows with `.values()`
and render them with registry.mlflow.rendering's row renderers: no model instances, no
prefetch machinery, one query per kind of row whatever the page size.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections
from django.db.models import F, Prefetch, QuerySet, Window
from django.db.models.functions import RowNumber

from accounts.actors import Actor
from registry.choices import Stage
from registry.mlflow.rendering import (
    MODEL_COLUMNS,
    VERSION_COLUMNS,
    model_row_json,
    version_row_json,
)
from registry.models import (
    ModelAlias,
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelTag,
)
from registry.permissions import sees_every_model, visible_models

_STAGE_ORDER = {stage.value: index for index, stage in enumerate(Stage)}
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/]+)/(?P<version>\d+)/?$")
_MAX_URI_HOPS = 10
_PREFETCH_CHUNK = 10_000


def _tags_prefetch() -> Prefetch:
    return Prefetch("tags", queryset=ModelVersionTag.objects.order_by("key"))


def version_search_queryset(actor: Actor) -> QuerySet[ModelVersion]:
    """Live versions of the models the actor may see (rendered by `version_messages`)."""
    qs = ModelVersion.objects.live().select_related("model", "created_by")
    if not sees_every_model(actor):
        qs = qs.filter(model__in=visible_models(actor, RegisteredModel.objects.all()))
    return qs


def latest_versions(
    model_ids: Iterable[int], *, stages: Iterable[str] | None = None, with_aliases: bool = False
) -> dict[int, list[ModelVersion]]:
    """The highest live version per stage of each model, in stage order, in one window query."""
    model_ids = list(model_ids)
    if not model_ids:
        return {}
    ranked = ModelVersion.objects.live().filter(model_id__in=model_ids)
    if stages is not None:
        ranked = ranked.filter(stage__in=list(stages))
    ranked = (
        ranked.annotate(
            stage_rank=Window(
                RowNumber(),
                partition_by=[F("model_id"), F("stage")],
                order_by=F("version").desc(),
            )
        )
        .filter(stage_rank=1)
        .select_related("model", "created_by")
    )
    prefetches: list[Prefetch] = [_tags_prefetch()]
    if with_aliases:
        prefetches.append(Prefetch("aliases", queryset=ModelAlias.objects.order_by("alias")))
    found: dict[int, list[ModelVersion]] = defaultdict(list)
    for version in ranked.prefetch_related(*prefetches):
        found[version.model_id].append(version)
    for versions in found.values():
        versions.sort(key=lambda v: _STAGE_ORDER.get(v.stage, len(_STAGE_ORDER)))
    return found


# --- rows -----------------------------------------------------------------------------------


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _PREFETCH_CHUNK):
        yield ids[start : start + _PREFETCH_CHUNK]


def version_values(qs: QuerySet[ModelVersion]) -> QuerySet:
    """Rows of VERSION_COLUMNS plus `creator` (the creator's username, None without one)."""
    username = get_user_model().USERNAME_FIELD
    return qs.values(*VERSION_COLUMNS, creator=F(f"created_by__{username}"))


def _version_tags(version_ids: list[int]) -> dict[int, list[dict[str, str]]]:
    tags: dict[int, list[dict[str, str]]] = defaultdict(list)
    for chunk in _chunks(version_ids):
        rows = (
            ModelVersionTag.objects.filter(version_id__in=chunk)
            .order_by("version_id", "key")
            .values_list("version_id", "key", "value")
        )
        for version_id, key, value in rows:
            tags[version_id].append({"key": key, "value": value})
    return tags


def _version_aliases(version_ids: list[int]) -> dict[int, list[str]]:
    aliases: dict[int, list[str]] = defaultdict(list)
    for chunk in _chunks(version_ids):
        rows = (
            ModelAlias.objects.filter(version_id__in=chunk)
            .order_by("version_id", "alias")
            .values_list("version_id", "alias")
        )
        for version_id, alias in rows:
            aliases[version_id].append(alias)
    return aliases


def version_tags(version_id: int) -> list[dict[str, str]]:
    """One version's tags as `{key, value}` by key."""
    return _version_tags([version_id]).get(version_id, [])


def version_messages(rows: list[dict[str, Any]], *, with_aliases: bool) -> list[dict[str, Any]]:
    """ModelVersion messages for rows of `version_values`: one more query for their tags, and
    one for their aliases when asked (MLflow lists them on single reads only)."""
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    tags = _version_tags(ids)
    aliases = _version_aliases(ids) if with_aliases else None
    return [
        version_row_json(
            row,
            user=row["creator"],
            tags=tags.get(row["id"], []),
            aliases=aliases.get(row["id"], []) if aliases is not None else None,
        )
        for row in rows
    ]


def latest_version_rows(
    model_ids: Iterable[int], *, stages: Iterable[str] | None = None
) -> dict[int, list[dict[str, Any]]]:
    """Rows of `version_values`: the highest live version per stage of each model, in stage
    order, in one query.

    On PostgreSQL a DISTINCT ON over the live-stage index picks the ids, and only those rows
    are joined and read; elsewhere a window ranks the versions of each model and stage.
    """
    model_ids = list(model_ids)
    if not model_ids:
        return {}
    ranked = ModelVersion.objects.live().filter(model_id__in=model_ids)
    if stages is not None:
        ranked = ranked.filter(stage__in=list(stages))
    if connections[ranked.db].vendor == "postgresql":
        newest = (
            ranked.order_by("model_id", "stage", "-version")
            .distinct("model_id", "stage")
            .values("pk")
        )
        latest = ModelVersion.objects.filter(pk__in=newest)
    else:
        latest = ranked.annotate(
            stage_rank=Window(
                RowNumber(),
                partition_by=[F("model_id"), F("stage")],
                order_by=F("version").desc(),
            )
        ).filter(stage_rank=1)
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in version_values(latest.order_by()):
        found[row["model_id"]].append(row)
    for rows in found.values():
        rows.sort(key=lambda row: _STAGE_ORDER.get(row["stage"], len(_STAGE_ORDER)))
    return found


def model_values(qs: QuerySet[RegisteredModel]) -> QuerySet:
    """Rows of MODEL_COLUMNS."""
    return qs.values(*MODEL_COLUMNS)


def model_messages(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RegisteredModel messages for rows of `model_values`, each with its latest version per
    stage: four more queries (tags, aliases, latest versions, their tags) for any page size."""
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    tags: dict[int, list[dict[str, str]]] = defaultdict(list)
    aliases: dict[int, list[dict[str, str]]] = defaultdict(list)
    for chunk in _chunks(ids):
        for model_id, key, value in (
            RegisteredModelTag.objects.filter(model_id__in=chunk)
            .order_by("model_id", "key")
            .values_list("model_id", "key", "value")
        ):
            tags[model_id].append({"key": key, "value": value})
        for model_id, alias, number in (
            ModelAlias.objects.filter(model_id__in=chunk)
            .order_by("model_id", "alias")
            .values_list("model_id", "alias", "version__version")
        ):
            aliases[model_id].append({"alias": alias, "version": str(number)})
    latest = latest_version_rows(ids)
    latest_rows = [row for model_rows in latest.values() for row in model_rows]
    rendered = dict(
        zip(
            (row["id"] for row in latest_rows),
            version_messages(latest_rows, with_aliases=False),
            strict=True,
        )
    )
    return [
        model_row_json(
            row,
            latest=[rendered[version["id"]] for version in latest.get(row["id"], [])],
            tags=tags.get(row["id"], []),
            aliases=aliases.get(row["id"], []),
        )
        for row in rows
    ]


def models_uri_target(source: str) -> tuple[str, int] | None:
    """(model name, version) when `source` is a `models:/<name>/<version>` URI."""
    match = _MODELS_URI.match(source)
    if match is None:
        return None
    return match.group("name"), int(match.group("version"))


def download_uri(version: ModelVersion) -> str:
    """Where the version's artifacts are: its storage location, else its source resolved through
    any `models:/name/N` hops (versions created before the location was recorded)."""
    if version.storage_location:
        return version.storage_location
    source = version.source
    for _ in range(_MAX_URI_HOPS):
        target = models_uri_target(source)
        if target is None:
            return source
        found = (
            ModelVersion.objects.live()
            .filter(model__name=target[0], version=target[1])
            .values_list("storage_location", "source")
            .first()
        )
        if found is None:
            return source
        if found[0]:
            return found[0]
        source = found[1]
    return source
