"""Reads the MLflow routes need beyond registry.selectors, each a fixed number of queries."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from django.db.models import F, Prefetch, QuerySet, Window, prefetch_related_objects
from django.db.models.functions import RowNumber

from accounts.actors import Actor
from registry.choices import Stage
from registry.models import ModelAlias, ModelVersion, ModelVersionTag, RegisteredModel
from registry.permissions import sees_every_model, visible_models

_STAGE_ORDER = {stage.value: index for index, stage in enumerate(Stage)}
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/]+)/(?P<version>\d+)/?$")
_MAX_URI_HOPS = 10
_PREFETCH_CHUNK = 10_000


def _tags_prefetch() -> Prefetch:
    return Prefetch("tags", queryset=ModelVersionTag.objects.order_by("key"))


def version_search_queryset(actor: Actor) -> QuerySet[ModelVersion]:
    """Live versions of the models the actor may see; tags come from `with_tags`."""
    qs = ModelVersion.objects.live().select_related("model", "created_by")
    if not sees_every_model(actor):
        qs = qs.filter(model__in=visible_models(actor, RegisteredModel.objects.all()))
    return qs


def with_tags(versions: list[ModelVersion]) -> list[ModelVersion]:
    """Fetch the tags of a page of versions: one query per 10,000 versions (a version search
    page may hold 200,000, more than SQLite accepts as parameters of one query)."""
    for start in range(0, len(versions), _PREFETCH_CHUNK):
        prefetch_related_objects(versions[start : start + _PREFETCH_CHUNK], _tags_prefetch())
    return versions


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
