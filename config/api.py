"""API glue shared by every app: the error shape, input checking and pagination."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DataError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, permissions, serializers
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response

from config.errors import DomainError

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
# Both ways a client may authenticate: a bearer API token, or Basic (password or token).
WWW_AUTHENTICATE = 'Bearer realm="modelgate", Basic realm="modelgate"'

_DRF_CODES = {
    exceptions.ParseError: "malformed_request",
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.AuthenticationFailed: "unauthenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ValidationError: "invalid",
}


def error_response(
    status: int, code: str, message: str, fields: dict[str, Any] | None = None
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return Response(body, status=status)


def error_json(
    status: int, code: str, message: str, fields: dict[str, Any] | None = None
) -> JsonResponse:
    """The same error shape for plain Django views (the async poll path)."""
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return JsonResponse(body, status=status)


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = _first_message(value)
            return inner if key == "non_field_errors" else f"{key}: {inner}"
        return "Invalid input."
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else "Invalid input."
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render every error as `{"code", "message", "fields"?}` with a 4xx status."""
    if isinstance(exc, DomainError):
        return error_response(exc.status, exc.code, exc.message, exc.fields or None)
    if isinstance(exc, Http404):
        return error_response(404, "not_found", str(exc) or "Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return error_response(403, "permission_denied", str(exc) or "Permission denied.")
    if isinstance(exc, DataError):
        # The database refused a value the checks let through (on PostgreSQL: a NUL byte in a
        # name or filter). A client mistake; any transaction around it has been rolled back.
        reason = str(exc).splitlines()[0] if str(exc) else "refused by the database"
        return error_response(400, "invalid", f"Invalid value: {reason}.")
    if isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
        fields = exc.detail if isinstance(exc, exceptions.ValidationError) else None
        if isinstance(fields, list):
            fields = {"non_field_errors": fields}
        response = error_response(exc.status_code, code, _first_message(exc.detail), fields)
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            response["WWW-Authenticate"] = WWW_AUTHENTICATE
        if getattr(exc, "wait", None):
            response["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        return response
    # A bug, not a client mistake: log it with its traceback and answer in the API's shape.
    request = context.get("request")
    logger.error("unhandled error in %s", getattr(request, "path", "?"), exc_info=exc)
    return error_response(500, "internal_error", "Internal server error; it has been logged.")


class AuthenticatedOrAnonymousRead(permissions.BasePermission):
    """Signed-in callers pass (the selectors decide per model); anonymous ones only read, and only
    when MODELGATE_ANONYMOUS_READ is on."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if request.user is not None and request.user.is_authenticated:
            return True
        return settings.MODELGATE_ANONYMOUS_READ and request.method in permissions.SAFE_METHODS


class InputSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know, instead of ignoring them."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["Expected a JSON object."]}, code="invalid"
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {name: ["Unknown field."] for name in unknown}, code="invalid"
            )
        return super().to_internal_value(data)


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _page_size(request: Any, default: int, param: str = "page_size") -> int:
    raw = request.query_params.get(param)
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        raise exceptions.ValidationError({param: [f"'{raw}' is not a whole number."]}) from None
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise exceptions.ValidationError({param: [f"Must be between 1 and {MAX_PAGE_SIZE}."]})
    return size


class Pagination(PageNumberPagination):
    """Page-numbered lists; a page size over the limit is a 400, not silently clamped."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request: Any) -> int:
        return _page_size(request, self.page_size)


class SeqCursorPagination(CursorPagination):
    """Keyset pagination on the event sequence: stable while new events are appended."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    ordering = "seq"

    def get_page_size(self, request: Any) -> int:
        return _page_size(request, self.page_size)
