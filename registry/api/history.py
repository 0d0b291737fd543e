"""The auditor's routes: verify the chain, export the history, read a model as it was."""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import SeqCursorPagination, max_page_size, query_flag
from registry.api.views import VERSION_NUMBER, _actor, _datetime_param
from registry.history import timeline
from registry.history.export import (
    FORMATS,
    ExportFilters,
    export_plan,
    export_record,
    export_stream,
    export_stream_async,
)
from registry.history.verify import history_verify
from registry.permissions import require_auditor
from registry.validation import parse_version_number

FILTER_PARAMETERS = [
    OpenApiParameter("model", str, description="Events of this model, under every name it had."),
    OpenApiParameter("version", VERSION_NUMBER),
    OpenApiParameter("type", str, many=True, description="Event types (repeat, or commas)."),
    OpenApiParameter("actor", str, description="User name (`system` for tasks)."),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="Inclusive."),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="Exclusive."),
]


class EventVerifyApi(APIView):
    """The verify_history check, for auditors (registry-wide CAN_READ) and superusers."""

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT},
        description="Recompute every hash and link of the history and check the signed "
        "checkpoints. `ok` is false when it is not intact; `problem` then names the first bad "
        "sequence number and its kind (missing, edited, reordered, tail_cut, bad_checkpoint).",
    )
    def get(self, request: Request) -> Response:
        require_auditor(_actor(request), "Verifying the history")
        return Response(history_verify().as_dict())


class _FormatIsTheExports(BaseContentNegotiation):
    """`?format=` picks the export's format here, not DRF's renderer (errors stay JSON)."""

    def select_parser(self, request: Any, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        return renderers[0], renderers[0].media_type


def _filters(request: Request) -> ExportFilters:
    params = request.query_params
    version = params.get("version")
    return ExportFilters(
        model=params.get("model") or None,
        version=parse_version_number(version) if version is not None else None,
        types=tuple(t for raw in params.getlist("type") for t in raw.split(",") if t),
        actor=params.get("actor") or None,
        since=_datetime_param(request, "since"),
        until=_datetime_param(request, "until"),
    )


def _through(request: Request) -> int | None:
    raw = request.query_params.get("through")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise exceptions.ValidationError({"through": ["A sequence number."]}) from None


class EventExportApi(APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _FormatIsTheExports

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=list(FORMATS), default="jsonl"),
            *FILTER_PARAMETERS,
            OpenApiParameter(
                "through",
                {"type": "integer", "minimum": 0},
                description="Cut the export at this seq (default: the chain head now).",
            ),
            OpenApiParameter(
                "manifest",
                bool,
                description="Answer the export's manifest (JSON) instead of its rows: with "
                "`through` from an earlier export's X-Modelgate-Export-Through header, the "
                "companion of a CSV export.",
            ),
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="One event a line; the last is {'_manifest': …}."
            ),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="One event a row."),
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="With manifest=true: {'_manifest': …}."
            ),
        },
        description="The history the caller may see, streamed as JSON Lines or CSV; every "
        "export is itself recorded (history.exported). See docs/auditing.md.",
    )
    def get(self, request: Request) -> Any:
        actor = _actor(request)
        plan = export_plan(
            viewer=actor,
            format=request.query_params.get("format", "jsonl"),
            filters=_filters(request),
            through=_through(request),
        )
        if query_flag(request, "manifest"):
            return Response({"_manifest": plan.manifest()})
        export_record(plan=plan, actor=actor)
        # Under ASGI only an async iterator streams (Django buffers a sync one whole first);
        # under WSGI only a sync one does. Both fetch the same chunks.
        if isinstance(request._request, ASGIRequest):
            stream: Any = export_stream_async(plan)
        else:
            stream = export_stream(plan)
        response = StreamingHttpResponse(stream, content_type=FORMATS[plan.format])
        response["Content-Disposition"] = f'attachment; filename="{plan.filename()}"'
        response["Cache-Control"] = "no-store"
        response["X-Modelgate-Export-Through"] = str(plan.through)
        response["X-Modelgate-Export-Rows"] = str(plan.rows)
        response["X-Modelgate-Export-Event"] = str(plan.event_seq)
        return response


class ModelHistoryApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("at", OpenApiTypes.DATETIME, description="Default: now. Inclusive.")
        ],
        responses={200: OpenApiTypes.OBJECT},
        description="The model as it was at `at`, reconstructed from the history: its versions "
        "with their stages, and its aliases with the version each pointed at. The name is the "
        "one the model bore then, or bears now.",
    )
    def get(self, request: Request, name: str) -> Response:
        at = _datetime_param(request, "at") or timezone.now()
        return Response(timeline.model_state_at(viewer=_actor(request), name=name, at=at))


class AliasHistoryApi(generics.GenericAPIView):
    pagination_class = SeqCursorPagination

    @extend_schema(
        # A list by hand (not a ListAPIView): the paginator's parameters, said here.
        parameters=[
            OpenApiParameter("cursor", str, description="From the previous page's `next`."),
            OpenApiParameter(
                "page_size", {"type": "integer", "minimum": 1, "maximum": max_page_size()}
            ),
        ],
        responses={200: OpenApiTypes.OBJECT},
        description="Every move of the alias, oldest first: from and to which version, who, "
        "when, from which request, and the transition request (requester, approvers, "
        "comments) when it moved by applying one.",
    )
    def get(self, request: Request, name: str, alias: str) -> Response:
        events = timeline.alias_events(viewer=_actor(request), name=name, alias=alias)
        page = self.paginate_queryset(events) or []
        return self.get_paginated_response(timeline.alias_moves(list(page)))
