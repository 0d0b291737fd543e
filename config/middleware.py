"""Request ids, and Django's middleware made cheap under ASGI."""

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as messages_middleware
from django.contrib.messages.storage import default_storage
from django.contrib.sessions import middleware as sessions_middleware
from django.http import HttpRequest, HttpResponse
from django.middleware import clickjacking, common, csrf, security
from django.utils.functional import SimpleLazyObject, empty

_SANE_ID = re.compile(r"^[\w.\-:]{1,64}$")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def request_id(request: HttpRequest) -> str:
    """The request's id: the client's X-Request-ID when it is sane, else a new one."""
    given = request.headers.get("X-Request-ID", "")
    return given if _SANE_ID.match(given) else uuid.uuid4().hex


class RequestIdMiddleware:
    """Give every request an id, echo it in the response, and let events record it."""

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
        request.request_id = request_id(request)  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        request.request_id = request_id(request)  # type: ignore[attr-defined]
        response = await self.get_response(request)
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        return response


# --- Django's middleware without thread hops under ASGI ---------------------------------------
#
# Under ASGI, Django's MiddlewareMixin runs every process_request / process_response hook through
# sync_to_async: a thread hop each, about a dozen per request for the stack below, which cost
# more than many views do. These hooks do no blocking I/O (they set headers, read cookies, make
# lazy objects), so here they run in the event loop. The exceptions stay on a thread: the
# session's response hook when the session was used (it may save it: a database write), and the
# CSRF check of a form post (it may parse the body). The messages storage is made only when used.
# Under WSGI (tests, management commands) nothing changes but that laziness.


class _InlineHooks:
    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)  # type: ignore[attr-defined]
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class SecurityMiddleware(_InlineHooks, security.SecurityMiddleware):
    pass


class CommonMiddleware(_InlineHooks, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(_InlineHooks, csrf.CsrfViewMiddleware):
    def __init__(self, get_response: Callable) -> None:
        super().__init__(get_response)
        if iscoroutinefunction(get_response):
            # Django runs a sync process_view on a thread under ASGI (load_middleware reads the
            # attribute of the instance): a hop for every request, the cheapest ones included.
            self.process_view = self._aprocess_view  # type: ignore[method-assign,assignment]

    async def _aprocess_view(
        self, request: HttpRequest, callback: Callable, args: Any, kwargs: Any
    ) -> HttpResponse | None:
        process_view = csrf.CsrfViewMiddleware.process_view
        if getattr(callback, "csrf_exempt", False) or request.method in _SAFE_METHODS:
            return process_view(self, request, callback, args, kwargs)  # no body read: inline
        # A form post: the check may parse the body (and read the session with
        # CSRF_USE_SESSIONS), so it stays on a thread.
        return await sync_to_async(process_view)(self, request, callback, args, kwargs)


class AuthenticationMiddleware(_InlineHooks, auth_middleware.AuthenticationMiddleware):
    pass


class MessageMiddleware(_InlineHooks, messages_middleware.MessageMiddleware):
    def process_request(self, request: HttpRequest) -> None:
        # The storage (a cookie and a session backend, a signer) is made when first used: the
        # API never uses it, the admin's views do.
        request._messages = SimpleLazyObject(lambda: default_storage(request))  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        stored = getattr(request, "_messages", None)
        if isinstance(stored, SimpleLazyObject) and stored._wrapped is empty:  # type: ignore[attr-defined]
            return response  # never used: nothing to store, as update() would find
        return super().process_response(request, response)


class XFrameOptionsMiddleware(_InlineHooks, clickjacking.XFrameOptionsMiddleware):
    pass


class SessionMiddleware(sessions_middleware.SessionMiddleware):
    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        self.process_request(request)  # a lazy session store: no I/O yet
        response = await self.get_response(request)  # type: ignore[misc]
        if request.session.accessed:  # it may need saving: a database write, on a thread
            return await sync_to_async(self.process_response)(request, response)
        return self.process_response(request, response)
