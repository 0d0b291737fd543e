"""The MLflow Model Registry REST routes: parse, call one service or selector, render.

Each view answers one route of the MLflow protocol (reference §2.3) with the same services and
selectors as the native API, so everything written here is in the native API, the admin and the
event log, recorded with the `mlflow` source.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from django.http import HttpResponse
from rest_framework.request import Request

from accounts.actors import Actor, Source
from config.errors import InvalidParameter, NotFound
from config.localcache import LocalCache
from registry import selectors, services
from registry.api.polling import alias_etag, if_none_match
from registry.choices import Stage
from registry.mlflow import answers, reads, search
from registry.mlflow.http import MlflowApi, Params, invalid, json_bytes
from registry.mlflow.rendering import model_json, version_json, version_row, version_row_json
from registry.models import ModelVersion, RegisteredModel
from registry.permissions import (
    Level,
    model_level,
    require_level,
    require_level_named,
    transition_level,
    visible_models,
)
from registry.validation import parse_stage, parse_version_number

_DEPLOYMENT_JOB_STATES = ("NOT_SET_UP", "CONNECTED", "NOT_FOUND", "REQUIRED_PARAMETERS_CHANGED")
_READS = ("get",)

# Rendered alias answers (ETag, body) by model, its update time and the alias: every change to
# a model's versions, their tags or its aliases moves the model's update time (the alias ETag
# relies on the same), so an entry never goes stale.
_alias_bodies: LocalCache[tuple[str, bytes]] = LocalCache(4096)
# Rendered get-latest-versions answers by model, its update time and the stages asked for: every
# change to a model's versions, their tags or its aliases moves the model's update time (the
# alias ETag relies on the same), so an entry never goes stale either.
_latest_bodies: LocalCache[bytes] = LocalCache(4096)


def _actor(request: Request) -> Actor:
    return Actor.of_request(request, Source.MLFLOW)


def _model(request: Request, params: Params, level: Level = Level.CAN_READ) -> RegisteredModel:
    return selectors.model_get(actor=_actor(request), name=params.required("name"), level=level)


def _version(request: Request, params: Params, level: Level = Level.CAN_READ) -> ModelVersion:
    model = _model(request, params, level)
    number = parse_version_number(params.version("version"))
    return selectors.version_get(actor=_actor(request), model=model, version=number)


def _model_body(request: Request, model: RegisteredModel) -> dict[str, Any]:
    """A freshly read model with its latest versions, as `{"registered_model": …}`."""
    model = selectors.model_get(actor=_actor(request), name=model.name)
    latest = reads.latest_versions([model.pk]).get(model.pk, [])
    return {"registered_model": model_json(model, latest)}


def _version_body(request: Request, version: ModelVersion) -> dict[str, Any]:
    version = selectors.version_get(
        actor=_actor(request), model=version.model, version=version.version
    )
    return {"model_version": version_json(version, with_aliases=True)}


def _bounded(params: Params, name: str, limit: int) -> str | None:
    """An optional string that must fit its column."""
    value = params.string(name)
    if value is not None and len(value) > limit:
        raise invalid(name, value, f"at most {limit} characters")
    return value


def _deployment_job_state(params: Params) -> str | None:
    state = params.string("deployment_job_state")
    if state is None:
        return None
    if state not in (*_DEPLOYMENT_JOB_STATES, ""):
        raise invalid("deployment_job_state", state, f"expected one of {_DEPLOYMENT_JOB_STATES}")
    return state


# --- registered models ----------------------------------------------------------------------


class RegisteredModelCreateApi(MlflowApi):
    def post(self, request: Request, params: Params) -> dict[str, Any]:
        model = services.model_create(
            name=params.required("name"),
            actor=_actor(request),
            description=params.string("description") or "",
            tags=params.objects("tags"),
            deployment_job_id=_bounded(params, "deployment_job_id", 255) or "",
            deployment_job_state=_deployment_job_state(params) or "",
        )
        return _model_body(request, model)


class RegisteredModelGetApi(MlflowApi):
    recent_reads = _READS

    def get(self, request: Request, params: Params) -> dict[str, Any]:
        model = _model(request, params)
        latest = reads.latest_versions([model.pk]).get(model.pk, [])
        return {"registered_model": model_json(model, latest)}


class RegisteredModelUpdateApi(MlflowApi):
    def patch(self, request: Request, params: Params) -> dict[str, Any]:
        model = _model(request, params, Level.CAN_EDIT)
        deployment_job_id = _bounded(params, "deployment_job_id", 255)
        deployment_job_state = _deployment_job_state(params)
        description = params.string("description")
        if description is None and deployment_job_id is None and deployment_job_state is None:
            # MLflow's update sets the description it is given, an absent one clearing it.
            description = ""
        model = services.model_update(
            model=model,
            actor=_actor(request),
            description=description,
            deployment_job_id=deployment_job_id,
            deployment_job_state=deployment_job_state,
        )
        return _model_body(request, model)


class RegisteredModelRenameApi(MlflowApi):
    def post(self, request: Request, params: Params) -> dict[str, Any]:
        model = _model(request, params, Level.CAN_MANAGE)
        new_name = params.required("new_name")
        model = services.model_rename(model=model, actor=_actor(request), new_name=new_name)
        return _model_body(request, model)


class RegisteredModelDeleteApi(MlflowApi):
    def delete(self, request: Request, params: Params) -> dict[str, Any]:
        services.model_delete(
            model=_model(request, params, Level.CAN_MANAGE), actor=_actor(request)
        )
        return {}


def _models_page(request: Request, params: Params, *, filter_string: str | None) -> dict[str, Any]:
    page = search.search_models(
        reads.model_values(visible_models(_actor(request), RegisteredModel.objects.all())),
        filter_string=filter_string,
        order_by=params.strings("order_by"),
        max_results=search.parse_max_results(params.raw("max_results"), "models"),
        token=params.string("page_token") or None,
    )
    body: dict[str, Any] = {}
    if page.rows:
        body["registered_models"] = reads.model_messages(page.rows)
    if page.next_token:
        body["next_page_token"] = page.next_token
    return body


def _kept(
    request: Request, key: tuple[Any, ...], compute: Callable[[], dict[str, Any]]
) -> HttpResponse:
    """A read answer as a response, kept until the registry changes (registry.mlflow.answers)."""
    _, body = answers.answer(_actor(request), key, lambda: ("", json_bytes(compute())))
    return HttpResponse(body, content_type="application/json")


def _search_key(kind: str, params: Params, filter_string: str | None) -> tuple[Any, ...]:
    raw = params.raw("max_results")
    return (
        kind,
        filter_string,
        tuple(params.strings("order_by")),
        raw if isinstance(raw, (str, int)) else repr(raw),
        params.string("page_token"),
    )


class RegisteredModelSearchApi(MlflowApi):
    recent_reads = _READS

    def get(self, request: Request, params: Params) -> HttpResponse:
        filter_string = params.string("filter")
        return _kept(
            request,
            _search_key("models", params, filter_string),
            lambda: _models_page(request, params, filter_string=filter_string),
        )


class RegisteredModelListApi(MlflowApi):
    """The legacy `registered-models/list` of older protos: a search without a filter."""

    recent_reads = _READS

    def get(self, request: Request, params: Params) -> dict[str, Any]:
        return _models_page(request, params, filter_string=None)


class LatestVersionsApi(MlflowApi):
    """`get-latest-versions`: POST first (what the client sends), GET as well."""

    recent_reads = ("get", "post")

    def post(self, request: Request, params: Params) -> HttpResponse:
        name = params.required("name")
        model_id, updated_at = _readable_model_state(_actor(request), name)
        stages = [parse_stage(stage, "stages") for stage in params.strings("stages")]
        wanted = tuple(stage.value for stage in stages or Stage)
        key = (model_id, updated_at, wanted)
        body = _latest_bodies.get(key)
        if body is None:
            rows = reads.latest_version_rows([model_id], stages=wanted).get(model_id, [])
            latest = reads.version_messages(rows, with_aliases=True)
            body = json_bytes({"model_versions": latest} if latest else {})
            _latest_bodies.put(key, body)
        return HttpResponse(body, content_type="application/json")

    get = post


# Unsaved stand-ins (id and name) for the permission checks of the reads and the model a version
# is created in (never changed: the services read their own copy): making a model instance costs
# more than the rest of a kept read.
_stand_ins: LocalCache[RegisteredModel] = LocalCache(4096)


def _stand_in(model_id: int, name: str) -> RegisteredModel:
    model = _stand_ins.get((model_id, name))
    if model is None:
        model = RegisteredModel(pk=model_id, name=name)
        _stand_ins.put((model_id, name), model)
    return model


def _readable_model_state(actor: Actor, name: str) -> tuple[int, Any]:
    """(id, update time) of the named model, if the caller may read it; one query
    (selectors.model_get's NotFound / PermissionDenied rules)."""
    found = selectors.model_state(name=name)
    if found is None:
        raise NotFound(f"Registered Model with name={name} not found")
    require_level(actor, _stand_in(found[0], name), Level.CAN_READ)
    return found


def _visible_model_id(request: Request, name: str, level: Level = Level.CAN_READ) -> int:
    """The id of the named model, if the caller may do something needing `level` on it
    (selectors.model_get's NotFound / PermissionDenied rules); one query with the check."""
    return require_level_named(_actor(request), name, level)


class RegisteredModelSetTagApi(MlflowApi):
    def post(self, request: Request, params: Params) -> dict[str, Any]:
        model = _model(request, params, Level.CAN_EDIT)
        services.model_tag_set(
            model=model,
            actor=_actor(request),
            key=params.required("key"),
            value=params.string("value") or "",
        )
        return {}


class RegisteredModelDeleteTagApi(MlflowApi):
    def delete(self, request: Request, params: Params) -> dict[str, Any]:
        model = _model(request, params, Level.CAN_EDIT)
        # Deleting a tag that is not there succeeds, as on MLflow.
        services.model_tag_delete(model=model, actor=_actor(request), key=params.required("key"))
        return {}


class RegisteredModelAliasApi(MlflowApi):
    """Set (POST), delete (DELETE) and read (GET, with ETag / If-None-Match) an alias."""

    recent_reads = _READS

    def post(self, request: Request, params: Params) -> dict[str, Any]:
        model = _model(request, params, Level.CAN_EDIT)
        alias = params.required("alias")
        version = parse_version_number(params.version("version"))
        services.alias_set(model=model, alias=alias, version=version, actor=_actor(request))
        return {}

    def delete(self, request: Request, params: Params) -> dict[str, Any]:
        model = _model(request, params, Level.CAN_EDIT)
        # Deleting an alias that is not there succeeds, as on MLflow.
        services.alias_delete(model=model, alias=params.required("alias"), actor=_actor(request))
        return {}

    def get(self, request: Request, params: Params) -> HttpResponse:
        name = params.required("name")
        alias = params.required("alias")
        # Not kept in registry.mlflow.answers: the alias state is one indexed query, as cheap as
        # reading the chain head, and its ETag already names the rendered answer.
        etag, body = _alias_answer(_actor(request), name, alias)
        if etag in if_none_match(request):
            response = HttpResponse(status=304)
        else:
            response = HttpResponse(body, content_type="application/json")
        response["ETag"] = etag
        response["Cache-Control"] = "no-cache"
        return response


def _alias_answer(actor: Actor, name: str, alias: str) -> tuple[str, bytes]:
    """(ETag, body) of an alias read: one query for the model's state while the answer for it
    is kept, else the alias's state and the version are read and the answer rendered."""
    model_id, updated_at = _readable_model_state(actor, name)
    kept = _alias_bodies.get((model_id, updated_at, alias))
    if kept is not None:
        return kept
    state = selectors.alias_state(actor=actor, model_name=name, alias=alias)
    if state is None:
        # MLflow answers an unknown alias of a known model with INVALID_PARAMETER_VALUE.
        raise InvalidParameter(
            f"Registered model alias {alias} not found.", fields={"alias": ["Not found."]}
        )
    # The same ETag as the native alias read: the answer changes exactly when it does.
    etag = alias_etag(*state[:3])
    rows = list(reads.version_values(ModelVersion.objects.filter(pk=state[0])))
    (message,) = reads.version_messages(rows, with_aliases=True)
    answer = (etag, json_bytes({"model_version": message}))
    # Kept under the model's state as this read saw it (a change since moved it on).
    _alias_bodies.put((state[3], state[2], alias), answer)
    return answer


# --- model versions -------------------------------------------------------------------------

_TRAVERSAL = re.compile(r"(^|[/\\])\.\.([/\\]|$)")


def _check_source(source: str) -> None:
    """Refuse sources that hide `..` behind percent-encoding (plain ones the service refuses)."""
    decoded = source
    for _ in range(3):
        decoded = unquote(decoded)
    if _TRAVERSAL.search(decoded) or "\x00" in decoded:
        raise invalid("source", source, "'..' path segments and NUL characters are not allowed")


def _storage_location(actor: Actor, source: str) -> str:
    """For a `models:/name/N` source (copy_model_version), where that version's artifacts are.

    The caller must be able to read the source model; one it may not see is "not found".
    """
    target = reads.models_uri_target(source)
    if target is None:
        return ""
    found = ModelVersion.objects.live().filter(model__name=target[0], version=target[1]).first()
    if found is not None and model_level(actor, found.model) < Level.CAN_READ:
        found = None
    if found is None:
        raise InvalidParameter(
            f"Unable to fetch model from model URI source artifact location '{source}': "
            f"Model Version (name={target[0]}, version={target[1]}) not found.",
            fields={"source": ["Unknown model version."]},
        )
    return reads.download_uri(found)


def _model_params(params: Params) -> list[dict[str, Any]] | None:
    items = params.objects("model_params")
    if items is None:
        return None
    for item in items:
        if not isinstance(item.get("name"), str):
            raise invalid("model_params", item, "each param needs a string 'name'")
    return [{"name": item["name"], "value": item.get("value")} for item in items]


def _model_metrics(params: Params) -> list[dict[str, Any]] | None:
    items = params.objects("model_metrics")
    if items is None:
        return None
    for item in items:
        if not isinstance(item.get("key"), str):
            raise invalid("model_metrics", item, "each metric needs a string 'key'")
    return items


class ModelVersionCreateApi(MlflowApi):
    def post(self, request: Request, params: Params) -> dict[str, Any]:
        name = params.required("name")
        source = params.required("source")
        model_id = _visible_model_id(request, name, Level.CAN_EDIT)
        _check_source(source)
        tags = params.objects("tags")
        version = services.version_create(
            model=_stand_in(model_id, name),  # the service locks and re-reads it
            actor=_actor(request),
            source=source,
            storage_location=_storage_location(_actor(request), source),
            run_id=params.string("run_id") or "",
            run_link=params.string("run_link") or "",
            description=params.string("description") or "",
            tags=tags,
            mlflow_model_id=_bounded(params, "model_id", 64) or "",
            params=_model_params(params),
            metrics=_model_metrics(params),
        )
        # The version as written: the service returns its row; a new version has no alias yet.
        message = version_row_json(
            version_row(version),
            user=version.created_by.get_username() if version.created_by else None,
            tags=reads.version_tags(version.pk) if tags else [],
            aliases=None,
        )
        return {"model_version": message}


class ModelVersionGetApi(MlflowApi):
    recent_reads = _READS

    def get(self, request: Request, params: Params) -> dict[str, Any]:
        return {"model_version": version_json(_version(request, params), with_aliases=True)}


class ModelVersionUpdateApi(MlflowApi):
    def patch(self, request: Request, params: Params) -> dict[str, Any]:
        version = _version(request, params, Level.CAN_EDIT)
        # MLflow sets the description it is given; an absent one clears it.
        version = services.version_update(
            version=version, actor=_actor(request), description=params.string("description") or ""
        )
        return _version_body(request, version)


class ModelVersionTransitionStageApi(MlflowApi):
    def post(self, request: Request, params: Params) -> dict[str, Any]:
        version = _version(request, params)
        stage = parse_stage(params.required("stage"))
        require_level(_actor(request), version.model, transition_level(version.stage, stage))
        version = services.version_transition(
            version=version,
            stage=stage,
            actor=_actor(request),
            archive_existing=params.boolean("archive_existing_versions"),
        )
        return _version_body(request, version)


class ModelVersionDeleteApi(MlflowApi):
    def delete(self, request: Request, params: Params) -> dict[str, Any]:
        services.version_delete(
            version=_version(request, params, Level.CAN_MANAGE), actor=_actor(request)
        )
        return {}


class ModelVersionSearchApi(MlflowApi):
    recent_reads = _READS

    def get(self, request: Request, params: Params) -> HttpResponse:
        filter_string = params.string("filter")
        return _kept(
            request,
            _search_key("versions", params, filter_string),
            lambda: self._page(request, params, filter_string),
        )

    def _page(self, request: Request, params: Params, filter_string: str | None) -> dict[str, Any]:
        page = search.search_versions(
            reads.version_values(reads.version_search_queryset(_actor(request))),
            filter_string=filter_string,
            order_by=params.strings("order_by"),
            max_results=search.parse_max_results(params.raw("max_results"), "versions"),
            token=params.string("page_token") or None,
        )
        body: dict[str, Any] = {}
        if page.rows:
            body["model_versions"] = reads.version_messages(page.rows, with_aliases=False)
        if page.next_token:
            body["next_page_token"] = page.next_token
        return body


class ModelVersionDownloadUriApi(MlflowApi):
    def get(self, request: Request, params: Params) -> dict[str, Any]:
        return {"artifact_uri": reads.download_uri(_version(request, params))}


class ModelVersionSetTagApi(MlflowApi):
    def post(self, request: Request, params: Params) -> dict[str, Any]:
        version = _version(request, params, Level.CAN_EDIT)
        services.version_tag_set(
            version=version,
            actor=_actor(request),
            key=params.required("key"),
            value=params.string("value") or "",
        )
        return {}


class ModelVersionDeleteTagApi(MlflowApi):
    def delete(self, request: Request, params: Params) -> dict[str, Any]:
        version = _version(request, params, Level.CAN_EDIT)
        # Deleting a tag that is not there succeeds, as on MLflow.
        services.version_tag_delete(
            version=version, actor=_actor(request), key=params.required("key")
        )
        return {}
