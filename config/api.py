"""API glue shared by every app: the error shape, input checking and pagination."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DataError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, permissions, serializers
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response

from config.errors import DomainError

logger = logging.getLogger(__name__)

# Paths whose error pages are JSON (handler400/404/500 below), not Django's HTML pages.
API_PREFIXES = ("/api/", "/ajax-api/")
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
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return error_response(
            413, "too_large", f"The request body is larger than the limit of {limit} bytes."
        )
    if isinstance(exc, SuspiciousOperation):
        # Too many query fields, a malformed multipart body and the like: Django refuses them.
        return error_response(400, "malformed_request", f"Bad request: {exc}")
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


def json_type_error(field: serializers.Field, value: Any) -> Any:
    """The error for a JSON value DRF would coerce into `field`'s type, or None.

    DRF's fields coerce: a CharField takes 12, an IntegerField "12", a BooleanField 1 or "yes".
    The OpenAPI schema promises JSON types, so the API holds clients to them; the messages are
    DRF's own for a value of the wrong type. Other wrong values are DRF's to refuse.
    """
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if value is None:
        return None  # allow_null decides
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else ["Must be a valid boolean."]
    if isinstance(field, serializers.IntegerField):
        return ["A valid integer is required."] if isinstance(value, str | float) else None
    if isinstance(field, serializers.FloatField | serializers.DecimalField):
        return ["A valid number is required."] if isinstance(value, str) else None
    if isinstance(field, serializers.CharField):
        return ["Not a valid string."] if number else None
    if isinstance(field, serializers.ChoiceField):
        return None if isinstance(value, str) else [f'"{value}" is not a valid choice.']
    if isinstance(field, serializers.DictField) and isinstance(value, dict):
        inner = {key: json_type_error(field.child, item) for key, item in value.items()}
        return {key: error for key, error in inner.items() if error} or None
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        listed = {str(i): json_type_error(field.child, item) for i, item in enumerate(value)}
        return {i: error for i, error in listed.items() if error} or None
    return None


class InputSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know, instead of ignoring them, and
    values of another JSON type than the field's (json_type_error). The OpenAPI schema says
    both (`additionalProperties: false`, config.openapi.InputSerializerExtension)."""

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
        wrong = {
            name: json_type_error(field, data[name])
            for name, field in self.fields.items()
            if name in data and not field.read_only
        }
        wrong = {name: error for name, error in wrong.items() if error}
        if wrong:
            raise serializers.ValidationError(wrong, code="invalid")
        return super().to_internal_value(data)


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


_FLAG_VALUES = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def query_flag(request: Any, name: str) -> bool:
    """A yes/no query parameter (`true`/`false`, also `1`/`0`, `yes`/`no`); absent is no.

    Anything else, or the parameter twice, is a 400 rather than a silent "no".
    """
    values = request.query_params.getlist(name)
    if not values:
        return False
    flag = _FLAG_VALUES.get(values[0].strip().lower()) if len(values) == 1 else None
    if flag is None:
        raise exceptions.ValidationError({name: ["Expected true or false, once."]})
    return flag


def max_page_size() -> int:
    """The largest page a list answers (MODELGATE_MAX_PAGE_SIZE)."""
    return int(settings.MODELGATE_MAX_PAGE_SIZE)


def _page_size(request: Any, default: int, param: str = "page_size") -> int:
    raw = request.query_params.get(param)
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        raise exceptions.ValidationError({param: [f"'{raw}' is not a whole number."]}) from None
    limit = max_page_size()
    if not 1 <= size <= limit:
        raise exceptions.ValidationError({param: [f"Must be between 1 and {limit}."]})
    return size


def _documented_page_size(parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The schema of the pagination parameters, with the bounds `_page_size` enforces."""
    for parameter in parameters:
        if parameter["name"] == "page_size":
            parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": max_page_size()}
        elif parameter["name"] == "page":
            parameter["schema"] = {"type": "integer", "minimum": 1}
            parameter["description"] = "A page number (1 is the first); past the last: 404."
    return parameters


class Pagination(PageNumberPagination):
    """Page-numbered lists; a page size over the limit is a 400, not silently clamped."""

    page_size = 50
    page_size_query_param = "page_size"

    def get_page_size(self, request: Any) -> int:
        return _page_size(request, self.page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return _documented_page_size(super().get_schema_operation_parameters(view))


class SeqCursorPagination(CursorPagination):
    """Keyset pagination on the event sequence: stable while new events are appended."""

    page_size = 100
    page_size_query_param = "page_size"
    ordering = "seq"

    def get_page_size(self, request: Any) -> int:
        return _page_size(request, self.page_size)

    def decode_cursor(self, request: Any) -> Any:
        # DRF answers a cursor it cannot read with 404; it is a malformed query, a 400.
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError(
                {self.cursor_query_param: ["Not a cursor from a previous page."]}
            ) from None

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return _documented_page_size(super().get_schema_operation_parameters(view))


# --- error pages for what no view answered -------------------------------------------------


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: a request Django refused before any view (e.g. a body over the limit)."""
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return error_json(
            413, "too_large", f"The request body is larger than the limit of {limit} bytes."
        )
    return error_json(400, "malformed_request", f"Bad request: {exception}")


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: an API path that no route matches."""
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    return error_json(404, "not_found", f"No API endpoint {request.method} {request.path}.")


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a bug outside the views' exception handler, in the API's shape."""
    if not _is_api(request):
        return defaults.server_error(request)
    return error_json(500, "internal_error", "Internal server error; it has been logged.")
