"""The native registry API: thin views that parse, call one service or selector, and render."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest, HttpResponse
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.actors import Actor
from config.api import SeqCursorPagination, validated
from registry import selectors, services
from registry.api import polling
from registry.api import serializers as s
from registry.models import ModelVersion, RegisteredModel
from registry.permissions import Level, require_level, transition_level
from registry.validation import parse_version_number

MODEL_ORDERINGS = {"name", "-name", "created_at", "-created_at", "updated_at", "-updated_at"}
# A version number in a query string, as parse_version_number accepts it.
VERSION_NUMBER = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


def _actor(request: Request) -> Actor:
    return Actor.of_request(request)


def _model(request: Request, name: str, level: Level = Level.CAN_READ) -> RegisteredModel:
    return selectors.model_get(actor=_actor(request), name=name, level=level)


def _version(
    request: Request, name: str, version: str, level: Level = Level.CAN_READ
) -> ModelVersion:
    actor = _actor(request)
    model = selectors.model_get(actor=actor, name=name, level=level)
    return selectors.version_get(actor=actor, model=model, version=parse_version_number(version))


class ModelListCreateApi(generics.ListAPIView):
    serializer_class = s.ModelOutSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("name", str, description="Substring of the name, any case."),
            OpenApiParameter("tag", str, description="`key` or `key=value`."),
            OpenApiParameter("ordering", str, enum=sorted(MODEL_ORDERINGS)),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        params = self.request.query_params
        tag = None
        if raw_tag := params.get("tag"):
            key, sep, value = raw_tag.partition("=")
            tag = (key, value if sep else None)
        ordering = params.get("ordering", "name")
        if ordering not in MODEL_ORDERINGS:
            raise exceptions.ValidationError(
                {"ordering": [f"Expected one of {', '.join(sorted(MODEL_ORDERINGS))}."]}
            )
        qs = selectors.model_list(
            actor=_actor(self.request), name_contains=params.get("name", ""), tag=tag
        )
        return qs.order_by(ordering, "pk")

    @extend_schema(request=s.ModelCreateInSerializer, responses={201: s.ModelOutSerializer})
    def post(self, request: Request) -> Response:
        data = validated(s.ModelCreateInSerializer, request.data)
        model = services.model_create(actor=_actor(request), **data)
        model = _model(request, model.name)
        return Response(s.ModelOutSerializer(model).data, status=status.HTTP_201_CREATED)


class ModelDetailApi(APIView):
    @extend_schema(responses=s.ModelOutSerializer)
    def get(self, request: Request, name: str) -> Response:
        return Response(s.ModelOutSerializer(_model(request, name)).data)

    @extend_schema(request=s.ModelUpdateInSerializer, responses=s.ModelOutSerializer)
    def patch(self, request: Request, name: str) -> Response:
        data = validated(s.ModelUpdateInSerializer, request.data)
        model = services.model_update(
            model=_model(request, name, Level.CAN_EDIT), actor=_actor(request), **data
        )
        return Response(s.ModelOutSerializer(_model(request, model.name)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str) -> Response:
        services.model_delete(model=_model(request, name, Level.CAN_MANAGE), actor=_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelRenameApi(APIView):
    @extend_schema(request=s.ModelRenameInSerializer, responses=s.ModelOutSerializer)
    def post(self, request: Request, name: str) -> Response:
        data = validated(s.ModelRenameInSerializer, request.data)
        model = services.model_rename(
            model=_model(request, name, Level.CAN_MANAGE), actor=_actor(request), **data
        )
        return Response(s.ModelOutSerializer(_model(request, model.name)).data)


class ModelTagApi(APIView):
    @extend_schema(request=s.TagSetInSerializer, responses={204: None})
    def put(self, request: Request, name: str, key: str) -> Response:
        data = validated(s.TagSetInSerializer, request.data)
        services.model_tag_set(
            model=_model(request, name, Level.CAN_EDIT), actor=_actor(request), key=key, **data
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str, key: str) -> Response:
        model = _model(request, name, Level.CAN_EDIT)
        if not services.model_tag_delete(model=model, actor=_actor(request), key=key):
            raise exceptions.NotFound(f"Model '{name}' has no tag '{key}'.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionListCreateApi(generics.ListAPIView):
    serializer_class = s.VersionOutSerializer

    def get_queryset(self) -> Any:
        actor = _actor(self.request)
        return selectors.version_list(actor=actor, model=_model(self.request, self.kwargs["name"]))

    @extend_schema(request=s.VersionCreateInSerializer, responses={201: s.VersionOutSerializer})
    def post(self, request: Request, name: str) -> Response:
        data = validated(s.VersionCreateInSerializer, request.data)
        model = _model(request, name, Level.CAN_EDIT)
        version = services.version_create(model=model, actor=_actor(request), **data)
        version = selectors.version_get(actor=_actor(request), model=model, version=version.version)
        return Response(s.VersionOutSerializer(version).data, status=status.HTTP_201_CREATED)


class VersionDetailApi(APIView):
    @extend_schema(responses=s.VersionOutSerializer)
    def get(self, request: Request, name: str, version: str) -> Response:
        return Response(s.VersionOutSerializer(_version(request, name, version)).data)

    @extend_schema(request=s.VersionUpdateInSerializer, responses=s.VersionOutSerializer)
    def patch(self, request: Request, name: str, version: str) -> Response:
        data = validated(s.VersionUpdateInSerializer, request.data)
        updated = services.version_update(
            version=_version(request, name, version, Level.CAN_EDIT), actor=_actor(request), **data
        )
        return Response(s.VersionOutSerializer(_version(request, name, str(updated.version))).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str, version: str) -> Response:
        services.version_delete(
            version=_version(request, name, version, Level.CAN_MANAGE), actor=_actor(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionStageApi(APIView):
    @extend_schema(request=s.VersionStageInSerializer, responses=s.VersionOutSerializer)
    def post(self, request: Request, name: str, version: str) -> Response:
        data = validated(s.VersionStageInSerializer, request.data)
        current = _version(request, name, version)
        require_level(
            _actor(request), current.model, transition_level(current.stage, data["stage"])
        )
        moved = services.version_transition(
            version=current,
            actor=_actor(request),
            stage=data["stage"],
            archive_existing=data["archive_existing_versions"],
            comment=data["comment"],
        )
        return Response(s.VersionOutSerializer(_version(request, name, str(moved.version))).data)


class VersionTagApi(APIView):
    @extend_schema(request=s.TagSetInSerializer, responses={204: None})
    def put(self, request: Request, name: str, version: str, key: str) -> Response:
        data = validated(s.TagSetInSerializer, request.data)
        services.version_tag_set(
            version=_version(request, name, version, Level.CAN_EDIT),
            actor=_actor(request),
            key=key,
            **data,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str, version: str, key: str) -> Response:
        found = services.version_tag_delete(
            version=_version(request, name, version, Level.CAN_EDIT), actor=_actor(request), key=key
        )
        if not found:
            raise exceptions.NotFound(f"Version {version} of '{name}' has no tag '{key}'.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class AliasListApi(generics.ListAPIView):
    serializer_class = s.AliasOutSerializer
    pagination_class = None

    def get_queryset(self) -> Any:
        return selectors.alias_list(model=_model(self.request, self.kwargs["name"]))


class AliasDetailApi(APIView):
    """PUT and DELETE an alias; GET is served by registry.api.polling.alias_poll (async)."""

    @extend_schema(
        responses={200: s.VersionOutSerializer, 304: None},
        parameters=[
            OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER),
            OpenApiParameter(
                "wait",
                {"type": "number", "minimum": 0, "maximum": polling.MAX_WAIT_SECONDS},
                description="With a matching If-None-Match, hold the request up to this many "
                "seconds (at most 60) until the alias moves: 200 when it does, else 304.",
            ),
        ],
        description="The version the alias points at, with an ETag; 304 when it matches.",
    )
    def get(self, request: Request, name: str, alias: str) -> HttpResponse:
        # Only reached through the schema generator and the sync test client's DRF path;
        # the URL routes GET to the async view.
        return async_to_sync(polling.alias_poll)(request._request, name, alias)

    @extend_schema(
        request=s.AliasSetInSerializer,
        responses={200: s.AliasOutSerializer, 201: s.AliasOutSerializer},
    )
    def put(self, request: Request, name: str, alias: str) -> Response:
        data = validated(s.AliasSetInSerializer, request.data)
        model = _model(request, name, Level.CAN_EDIT)
        # Only the status code depends on this read; the move itself is decided under the lock.
        existed = selectors.alias_list(model=model).filter(alias=alias).exists()
        result = services.alias_set(model=model, alias=alias, actor=_actor(request), **data)
        code = status.HTTP_200_OK if existed else status.HTTP_201_CREATED
        return Response(s.AliasOutSerializer(result).data, status=code)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str, alias: str) -> Response:
        model = _model(request, name, Level.CAN_EDIT)
        if not services.alias_delete(model=model, alias=alias, actor=_actor(request)):
            raise exceptions.NotFound(f"Registered model alias {alias} not found on model {name}.")
        return Response(status=status.HTTP_204_NO_CONTENT)


def _datetime_param(request: Request, name: str) -> Any:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = parse_datetime(raw.replace(" ", "+"))
    except ValueError:  # well formed but impossible, e.g. month 13
        value = None
    if value is None:
        raise exceptions.ValidationError({name: [f"'{raw}' is not an ISO 8601 date-time."]})
    if value.tzinfo is None:
        raise exceptions.ValidationError({name: ["Give a time zone, e.g. 2026-03-03T00:00:00Z."]})
    try:
        # In UTC now, where the database compares it: year 1 at +01:00 is before year 1 there.
        return value.astimezone(UTC)
    except OverflowError:
        raise exceptions.ValidationError({name: [f"'{raw}' is out of range."]}) from None


class EventListApi(generics.ListAPIView):
    serializer_class = s.EventOutSerializer
    pagination_class = SeqCursorPagination

    @extend_schema(
        parameters=[
            OpenApiParameter("model", str),
            OpenApiParameter("version", VERSION_NUMBER),
            OpenApiParameter("type", str, many=True),
            OpenApiParameter("actor", str),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="Inclusive."),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="Exclusive."),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        params = self.request.query_params
        version = params.get("version")
        types = [t for raw in params.getlist("type") for t in raw.split(",") if t]
        return selectors.event_list(
            viewer=_actor(self.request),
            model=params.get("model"),
            version=parse_version_number(version) if version is not None else None,
            types=types or None,
            actor=params.get("actor"),
            since=_datetime_param(self.request, "since"),
            until=_datetime_param(self.request, "until"),
        )


_alias_write = AliasDetailApi.as_view()
_alias_write_async = sync_to_async(_alias_write)


@csrf_exempt
async def alias_detail(request: HttpRequest, name: str, alias: str) -> HttpResponse:
    """GET/HEAD go to the async poll path; writes go to the DRF view on a worker thread."""
    if request.method in ("GET", "HEAD"):
        return await polling.guarded(polling.alias_poll, request, name, alias)
    return await _alias_write_async(request, name=name, alias=alias)


# drf-spectacular documents a route by the DRF view behind it.
alias_detail.cls = AliasDetailApi  # type: ignore[attr-defined]
alias_detail.initkwargs = {}  # type: ignore[attr-defined]
