"""Logs: text for people, JSON lines for machines, every record carrying its request's id.

`MODELGATE_LOG_FORMAT=json` switches the web process, the worker and beat to one JSON object a
line (python-json-logger). The id that config.middleware.RequestIdMiddleware gives each request
(and echoes as X-Request-ID) is put in a context variable by RequestIdLogMiddleware, and
RequestIdFilter copies it onto every record logged while the request is served, in the event
loop or in the threads sync code runs on (asgiref copies the context into them).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from pythonjsonlogger.json import JsonFormatter

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

request_id_var: ContextVar[str | None] = ContextVar("modelgate_request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Set `record.request_id`: the request being served, or None outside requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = request_id_var.get()
            if request_id is None:
                # django.request logs a 4xx/5xx response after the middleware has returned,
                # with the request attached to the record.
                request_id = getattr(getattr(record, "request", None), "request_id", None)
            record.request_id = request_id
        return True


def json_formatter() -> JsonFormatter:
    """One JSON object a line: timestamp (UTC, ISO 8601), level, logger, message, request_id,
    and whatever a caller passed in `extra`."""
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s %(request_id)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )


class RequestIdLogMiddleware:
    """Make the request's id visible to the log records written while it is served.

    Sits right after config.middleware.RequestIdMiddleware, which sets `request.request_id`.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        token = request_id_var.set(getattr(request, "request_id", None))
        try:
            return self.get_response(request)
        finally:
            request_id_var.reset(token)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        token = request_id_var.set(getattr(request, "request_id", None))
        try:
            return await self.get_response(request)
        finally:
            request_id_var.reset(token)


def celery_logging_json(logger: logging.Logger, **kwargs: Any) -> None:
    """Celery replaces the handlers of the root and task loggers with its own text ones; under
    MODELGATE_LOG_FORMAT=json give them the JSON formatter and the request-id filter back."""
    from django.conf import settings

    if settings.MODELGATE_LOG_FORMAT != "json":
        return
    for handler in logger.handlers:
        handler.setFormatter(json_formatter())
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
