"""The MLflow wire protocol around the handlers: parsing, authentication and the error shape.

Plain Django views rather than DRF ones: the MLflow routes have their own request conventions
(GET parameters in the query string with repeated keys for lists, DELETE arguments in a JSON body
or the query string) and their own error body, and the poll-heavy reads stay cheap. Authentication
is DRF's configured classes (HTTP Basic with the credential cache, session with CSRF, and any
token class added later), run through a DRF Request so they behave exactly as on the native API.

The read routes that clients poll (a view's `recent_reads`: alias GET, get-latest-versions, the
gets and searches) follow the native alias poll path's rules: who an `Authorization` header
authenticated as, and the caller's level on a model, are trusted for MODELGATE_POLL_AUTH_TTL
seconds (default 2). A revoked token, a deactivated user or a removed grant therefore stops
working on those reads within that time, not at once; every write checks afresh. Recent levels
are trusted to allow, never to refuse: a read they would refuse (404 / 403) is checked again
with fresh levels, so a grant made a moment ago (the model the caller has just created) counts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseBase, QueryDict
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.settings import api_settings

from accounts.actors import Actor, Source
from config.errors import MLFLOW_STATUS, DomainError, InvalidParameter, NotFound, PermissionDenied
from registry.api.polling import recent_auth

logger = logging.getLogger(__name__)

_HANDLED_METHODS = ("get", "post", "put", "patch", "delete")
WWW_AUTHENTICATE = 'Basic realm="modelgate"'


class MlflowError(Exception):
    """An error with an MLflow error code that is not one of the registry's domain errors."""

    def __init__(
        self,
        error_code: str,
        message: str,
        status: int | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.status = status if status is not None else MLFLOW_STATUS.get(error_code, 400)
        self.retry_after = retry_after


_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def json_bytes(body: dict[str, Any]) -> bytes:
    """The compact JSON of a response body, as json_response sends it."""
    return _JSON.encode(body).encode()


def json_response(body: dict[str, Any], status: int = 200) -> HttpResponse:
    return HttpResponse(json_bytes(body), status=status, content_type="application/json")


def error_response(error_code: str, message: str, status: int | None = None) -> HttpResponse:
    if status is None:
        status = MLFLOW_STATUS.get(error_code, 400)
    response = json_response({"error_code": error_code, "message": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


@csrf_exempt
def endpoint_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Unknown routes and wrong methods under the MLflow prefixes."""
    return error_response(
        "ENDPOINT_NOT_FOUND",
        f"No API endpoint {request.method} {request.path}.",
        status=404,
    )


# --- parameters -----------------------------------------------------------------------------


def missing(name: str) -> InvalidParameter:
    return InvalidParameter(
        f"Missing value for required parameter '{name}'.", fields={name: ["Required."]}
    )


def invalid(name: str, value: Any, expected: str) -> InvalidParameter:
    shown = repr(value)
    if len(shown) > 100:
        shown = shown[:100] + "…"
    return InvalidParameter(
        f"Invalid value {shown} for parameter '{name}' supplied: {expected}.",
        fields={name: [expected]},
    )


class Params:
    """A request's arguments, from the query string (GET) or a JSON object (other methods)."""

    def __init__(self, values: dict[str, Any], query: QueryDict | None = None) -> None:
        self._values = values
        self._query = query

    def raw(self, name: str) -> Any:
        return self._values.get(name)

    def has(self, name: str) -> bool:
        return self._values.get(name) is not None

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self._values.get(name)
        if value is None or (required and value == ""):
            if required:
                raise missing(name)
            return None
        if not isinstance(value, str):
            raise invalid(name, value, "expected a string")
        return value

    def required(self, name: str) -> str:
        value = self.string(name, required=True)
        assert value is not None  # noqa: S101 - string() raised otherwise
        return value

    def version(self, name: str = "version") -> str:
        """A version number: a string on the wire; numbers are accepted too."""
        value = self._values.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return self.required(name)

    def strings(self, name: str) -> list[str]:
        """A repeated string field: a list, repeated query keys, or a single value."""
        if self._query is not None:
            values: Any = self._query.getlist(name)
        else:
            values = self._values.get(name)
            if values is None:
                return []
            if not isinstance(values, list):
                values = [values]
        for value in values:
            if not isinstance(value, str):
                raise invalid(name, value, "expected a list of strings")
        return list(values)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self._values.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise invalid(name, value, "expected true or false")

    def objects(self, name: str) -> list[dict[str, Any]] | None:
        """A repeated message field (a list of JSON objects)."""
        value = self._values.get(name)
        if value is None:
            return None
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise invalid(name, value, "expected a list of objects")
        return value


def _query_values(query: QueryDict) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in query:
        items = query.getlist(key)
        values[key] = items[0] if len(items) == 1 else items
    return values


def _json_body(request: HttpRequest) -> dict[str, Any]:
    body = request.body
    if not body.strip():
        return {}
    content_type = request.content_type or ""
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise InvalidParameter(
            "Bad Request. Content-Type must be one of ['application/json'].",
            fields={"Content-Type": ["Must be application/json."]},
        )
    try:
        data = json.loads(body)
        # Older clients post their JSON double-encoded as a string.
        if isinstance(data, str):
            data = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidParameter(
            f"Malformed JSON in the request body: {exc}.", fields={"body": ["Malformed JSON."]}
        ) from None
    if not isinstance(data, dict):
        raise InvalidParameter(
            "The request body must be a JSON object.", fields={"body": ["Expected an object."]}
        )
    return data


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    return False


def read_params(request: HttpRequest) -> Params:
    if request.method in ("GET", "HEAD"):
        params = Params(_query_values(request.GET), request.GET)
    else:
        # DELETE arguments come in the JSON body (mlflow client) or the query string (other
        # clients); the body wins where both name a field.
        values = _query_values(request.GET)
        values.update(_json_body(request))
        params = Params(values)
    # No stored text can hold a NUL (PostgreSQL refuses it), so no argument may.
    if _has_nul(params._values):
        raise InvalidParameter(
            "Parameters may not contain NUL characters.", fields={"body": ["NUL character."]}
        )
    return params


# --- authentication -------------------------------------------------------------------------


def _recent_credentials(request: HttpRequest) -> tuple[bytes | None, Request | None]:
    """The key of the request's Authorization header, and a request authenticated as that
    header was in the last MODELGATE_POLL_AUTH_TTL seconds (None when it was not)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None, None
    key = hashlib.sha256(header.encode()).digest()
    remembered = recent_auth.get(key)
    if remembered is None:
        return key, None
    drf_request = Request(request, authenticators=())
    drf_request.user, drf_request.auth = remembered
    return key, drf_request


def authenticate(request: HttpRequest, *, recent: bool = False) -> Request:
    """Run the configured DRF authentication; the result carries `user` and `auth`.

    With `recent` (poll-style reads), a credential verified in the last MODELGATE_POLL_AUTH_TTL
    seconds is taken as it was then, and the request's actor may use permission levels as
    recent (see the module doc).

    Raises MlflowError UNAUTHENTICATED (401) for missing or wrong credentials and
    PERMISSION_DENIED (403) for a session request without its CSRF token.
    """
    key: bytes | None = None
    if recent:
        key, remembered = _recent_credentials(request)
        if remembered is not None:
            _recent_actor(remembered)
            return remembered
    drf_request = Request(
        request,
        authenticators=[cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES],  # type: ignore[operator]
    )
    try:
        user = drf_request.user
    except (exceptions.AuthenticationFailed, exceptions.NotAuthenticated) as exc:
        raise MlflowError("UNAUTHENTICATED", str(exc.detail), 401) from None
    except exceptions.PermissionDenied as exc:
        raise MlflowError("PERMISSION_DENIED", str(exc.detail), 403) from None
    except exceptions.Throttled as exc:
        raise MlflowError(
            "REQUEST_LIMIT_EXCEEDED", str(exc.detail), 429, retry_after=getattr(exc, "wait", None)
        ) from None
    except exceptions.APIException as exc:
        raise MlflowError("UNAUTHENTICATED", str(exc.detail), 401) from None
    anonymous_read = settings.MODELGATE_ANONYMOUS_READ and request.method in ("GET", "HEAD")
    if (user is None or not user.is_authenticated) and not anonymous_read:
        raise MlflowError(
            "UNAUTHENTICATED",
            "Authentication required: use HTTP Basic (MLFLOW_TRACKING_USERNAME / "
            "MLFLOW_TRACKING_PASSWORD) or a session.",
            401,
        )
    if recent:
        # Only what the header itself proved is remembered under it, never a session's user.
        by_header = not isinstance(drf_request.successful_authenticator, SessionAuthentication)
        if key is not None and by_header and user is not None and user.is_authenticated:
            recent_auth.put(key, (user, drf_request.auth))
        _recent_actor(drf_request)
    return drf_request


def _recent_actor(request: Request) -> None:
    """Make the request's actor one that accepts recent permission levels."""
    request._modelgate_actor = Actor.from_request(  # type: ignore[attr-defined]
        request, Source.MLFLOW, recent_permissions=True
    )


# --- the base view --------------------------------------------------------------------------

Handler = Callable[[Request, Params], "dict[str, Any] | HttpResponse"]


class MlflowApi(View):
    """One MLflow route: `get`/`post`/`patch`/`delete(request, params)` return the response body.

    Any other method is ENDPOINT_NOT_FOUND (404), as MLflow answers; errors are rendered as
    `{"error_code", "message"}` with MLflow's status for the code. The methods named in
    `recent_reads` are reads that may trust recent credentials and levels (see the module doc).
    """

    recent_reads: tuple[str, ...] = ()

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., HttpResponseBase]:
        # Exempt the view function rather than decorate `dispatch` with method_decorator,
        # which re-applies the decorator (and inspects the method) on every request.
        return csrf_exempt(super().as_view(**initkwargs))

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        method = request.method.lower() if request.method else ""
        if method == "head":
            method = "get"
        handler: Handler | None = (
            getattr(self, method, None) if method in _HANDLED_METHODS else None
        )
        if handler is None:
            return endpoint_not_found(request)
        try:
            recent = method in self.recent_reads
            drf_request = authenticate(request, recent=recent)
            params = read_params(request)
            try:
                result = handler(drf_request, params)
            except (NotFound, PermissionDenied):
                if not recent:
                    raise
                # A read may be refused only on fresh levels (see the module doc).
                drf_request._modelgate_actor = Actor.from_request(  # type: ignore[attr-defined]
                    drf_request, Source.MLFLOW
                )
                result = handler(drf_request, params)
        except DomainError as exc:
            return error_response(
                exc.mlflow_code, exc.message, MLFLOW_STATUS.get(exc.mlflow_code, exc.status)
            )
        except SuspiciousOperation as exc:
            # Bodies over DATA_UPLOAD_MAX_MEMORY_SIZE, too many query fields and the like.
            return error_response("INVALID_PARAMETER_VALUE", f"Bad request: {exc}", 400)
        except MlflowError as exc:
            response = error_response(exc.error_code, exc.message, exc.status)
            if exc.retry_after:
                response["Retry-After"] = str(int(exc.retry_after))
            return response
        except Exception:
            # A bug, not a client mistake: log it and answer in MLflow's shape.
            logger.exception("unhandled error in %s %s", request.method, request.path)
            return error_response(
                "INTERNAL_ERROR", "Internal server error; it has been logged.", 500
            )
        if isinstance(result, HttpResponse):
            return result
        return json_response(result)
