"""Refusals made before any view: a NUL character in a native API path or query string.

No stored text can hold a NUL (PostgreSQL refuses it), so no name, filter or key in a URL can
match anything with one. Without this, the answer depended on the database: a filter with a NUL
found nothing on SQLite and was a 400 on PostgreSQL. The MLflow routes refuse NULs in their
arguments themselves (registry.mlflow.http); the OpenAPI schema says so (config.openapi).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from config.api import error_json

NATIVE_PREFIX = "/api/v1/"


def nul_refusal(request: HttpRequest) -> HttpResponse | None:
    """A 400 for a native API request with a NUL in its path or query string, else None."""
    if not request.path_info.startswith(NATIVE_PREFIX):
        return None
    query = request.META.get("QUERY_STRING", "")
    if "\x00" in request.path_info or "%00" in query or "\x00" in query:
        return error_json(
            400,
            "invalid",
            "NUL characters are not allowed in the path or the query string.",
            {"non_field_errors": ["NUL character."]},
        )
    return None


class NulRefusalMiddleware:
    """See the module doc; works in the event loop under ASGI and in a thread under WSGI."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return nul_refusal(request) or self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        refused = nul_refusal(request)
        if refused is not None:
            return refused
        response: Awaitable[HttpResponse] = self.get_response(request)
        return await response
