"""The ASGI application: Django's handler, with a lean lane for the alias poll route.

For every request Django's ASGIHandler makes a thread of the request's own (asgiref's
ThreadSensitiveContext), runs the request_started and request_finished signals on it (they
close that thread's database connections) and closes the response there too: two thread hops
and a thread start and join per request, about as much as the cheapest view costs in all.

The alias poll (`GET`/`HEAD /api/v1/models/<name>/aliases/<alias>/`, registry.api.polling) does
its database work on a pool of its own with persistent connections and needs none of that, so
its requests go through a lean lane: the same request object, the same middleware, URL
resolution, view and error handling (Django's own `get_response_async`), but no per-request
thread and no request signals.

The MLflow routes take a flatter lane still: the same request object, the same view
(registry.mlflow), and the same middleware hooks, called one after the other instead of through
Django's twelve nested layers (MiddlewareLane): each layer costs a coroutine, an exception
wrapper and an await, together more than such a read. The reads clients poll (alias GET,
get-latest-versions, the gets and the searches: the views' `recent_reads`) run on the poll's
pool of threads; everything else (version creation from pipelines above all) on a pool of its
own (MODELGATE_WRITE_THREADS), whose threads hand their database connection back after each
request as Django's request_finished would, so a burst of writes never holds up the reads. The
URL of each route is resolved once. A request whose middleware would answer it before the view
(a disallowed host, an HTTPS redirect, a refused user agent) is handed, body and all, to
Django's handler instead, so it gets exactly Django's answer. Everything else (the native API,
the admin) goes through Django's handler unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable
from time import perf_counter
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

# Imported once Django is set up.
from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.core.handlers.exception import response_for_exception  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import Resolver404, ResolverMatch, resolve, set_script_prefix  # noqa: E402
from django.utils.log import log_response  # noqa: E402

from config import metrics, middleware  # noqa: E402
from config.logs import request_id_var  # noqa: E402
from config.threads import LazyThreadPool  # noqa: E402
from registry.api import polling  # noqa: E402

# The poll route as config/urls.py and registry/api/urls.py spell it (`<str:…>` is `[^/]+`);
# tests/test_asgi.py checks that the two agree.
POLL_ROUTE = re.compile(r"/api/v1/models/[^/]+/aliases/[^/]+/")


def takes_lean_lane(scope: dict[str, Any]) -> bool:
    """A request of the alias poll route, served where its reads have their own thread pool."""
    return (
        scope["type"] == "http"
        and scope["method"] in ("GET", "HEAD")
        and not scope.get("root_path")
        and POLL_ROUTE.fullmatch(scope["path"]) is not None
        and settings.MODELGATE_POLL_LEAN
        and settings.MODELGATE_POLL_THREADS > 0
    )


# The MLflow routes' prefixes, as config/urls.py includes registry.mlflow.urls under them.
MLFLOW_PREFIXES = ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/", "/api/2.0/preview/mlflow/")


def mlflow_routes() -> dict[str, tuple[ResolverMatch, frozenset[str]]]:
    """Path → (its resolved view, the methods it serves as a poll-style read) for every MLflow
    route, resolved through the project's URLconf as Django would resolve each request (so a
    route another app answers first is not in it). Any other method of a route is a write (or
    the view's ENDPOINT_NOT_FOUND)."""
    from registry.mlflow import urls as mlflow_urls
    from registry.mlflow.http import MlflowApi

    routes: dict[str, tuple[ResolverMatch, frozenset[str]]] = {}
    for pattern in mlflow_urls.urlpatterns:
        for prefix in MLFLOW_PREFIXES:
            path = prefix + str(pattern.pattern)
            try:
                match = resolve(path)
            except Resolver404:
                continue
            view_class = getattr(match.func, "view_class", None)
            if not (isinstance(view_class, type) and issubclass(view_class, MlflowApi)):
                continue
            reads = {method.upper() for method in view_class.recent_reads}
            if "GET" in reads:
                reads.add("HEAD")  # MlflowApi answers HEAD as GET
            # Every MLflow view is CSRF-exempt: the lane skips the CSRF view hook.
            if getattr(match.func, "csrf_exempt", False):
                routes[path] = (match, frozenset(reads))
    return routes


_write_pool = LazyThreadPool(lambda: settings.MODELGATE_WRITE_THREADS, "modelgate-write")


def write_pool_close() -> None:
    """Stop the writes' pool (tests; its threads hold no connection between requests)."""
    pool = _write_pool.take()
    if pool is not None:
        pool.shutdown(wait=True)


async def in_write_thread(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run an MLflow write on the writes' pool of threads, in the caller's context (its log
    records carry the request's id), its database connection handed back to the connection pool
    afterwards, as Django's request_finished signal does when CONN_MAX_AGE is 0."""
    return await _write_pool.run(_released_after, func, *args, **kwargs)


def _released_after(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    finally:
        if not connection.in_atomic_block:  # never inside a test's wrapping transaction
            connection.close()


class MiddlewareLane:
    """settings.MIDDLEWARE for the MLflow routes, flattened: every hook the stack would run,
    in its order, without a coroutine and exception wrapper per layer.

    It knows the stack it flattens (STACK); with any other MIDDLEWARE (or ATOMIC_REQUESTS) it is
    off and Django's handler serves these routes. For these routes the project's own layers
    reduce to: the metrics (timing, the in-progress gauge), the request id (set, echoed, in the
    log context); the NUL refusal and the static files answer other paths only. Django's hooks
    run as config.middleware runs them under ASGI, in the event loop, but for the session's
    response hook when the session was used (it may save it), which runs on the poll pool.
    """

    STACK = (
        "config.metrics.MetricsMiddleware",
        "config.middleware.RequestIdMiddleware",
        "config.logs.RequestIdLogMiddleware",
        "config.limits.NulRefusalMiddleware",
        "config.middleware.SecurityMiddleware",
        "config.staticfiles.StaticFilesMiddleware",
        "config.middleware.SessionMiddleware",
        "config.middleware.CommonMiddleware",
        "config.middleware.CsrfViewMiddleware",
        "config.middleware.AuthenticationMiddleware",
        "config.middleware.MessageMiddleware",
        "config.middleware.XFrameOptionsMiddleware",
    )

    def __init__(self) -> None:
        def unused(request: HttpRequest) -> HttpResponse:
            raise AssertionError("the lane calls the hooks, never the next layer")

        self.session = middleware.SessionMiddleware(unused)
        # In the stack's order, outermost first.
        django_layers: list[Any] = [
            middleware.SecurityMiddleware(unused),
            self.session,
            middleware.CommonMiddleware(unused),
            middleware.CsrfViewMiddleware(unused),
            middleware.AuthenticationMiddleware(unused),
            middleware.MessageMiddleware(unused),
            middleware.XFrameOptionsMiddleware(unused),
        ]
        self.request_hooks: list[Callable[[HttpRequest], HttpResponse | None]] = [
            layer.process_request for layer in django_layers if hasattr(layer, "process_request")
        ]
        self.response_hooks: list[Callable[[HttpRequest, HttpResponse], HttpResponse]] = [
            layer.process_response
            for layer in reversed(django_layers)
            if hasattr(layer, "process_response")
        ]
        self._routes: dict[str, tuple[ResolverMatch, frozenset[str]]] | None = None

    @staticmethod
    def applies() -> bool:
        """The stack is the one the lane knows, and views run outside transactions (Django
        would wrap them in one with ATOMIC_REQUESTS)."""
        return tuple(settings.MIDDLEWARE) == MiddlewareLane.STACK and not any(
            database.get("ATOMIC_REQUESTS") for database in settings.DATABASES.values()
        )

    def route(self, scope: dict[str, Any]) -> tuple[ResolverMatch, bool] | None:
        """The resolved view of an MLflow route this lane serves and whether the request is one
        of its reads, else None."""
        if self._routes is None:
            self._routes = mlflow_routes()
        found = self._routes.get(scope["path"])
        if found is None:
            return None
        match, reads = found
        return match, scope["method"] in reads

    async def get_response(
        self, request: HttpRequest, match: ResolverMatch, read: bool
    ) -> HttpResponse | None:
        """The response, as the stack would make it; None when a hook would answer before the
        view (the caller hands the request to Django's handler)."""
        start = perf_counter()
        metrics.IN_PROGRESS.inc()
        try:
            request.request_id = middleware.request_id(request)  # type: ignore[attr-defined]
            token = request_id_var.set(request.request_id)  # type: ignore[attr-defined]
            try:
                response = await self._inner(
                    request, match, polling.in_thread if read else in_write_thread
                )
            finally:
                request_id_var.reset(token)
            if response is None:
                return None
            response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        finally:
            metrics.IN_PROGRESS.dec()
        metrics.observe(request, response, perf_counter() - start)
        if response.status_code >= 400:  # as BaseHandler.get_response_async logs it
            await sync_to_async(log_response, thread_sensitive=False)(
                "%s: %s",
                response.reason_phrase,
                request.path,
                response=response,
                request=request,
            )
        return response

    async def _inner(
        self, request: HttpRequest, match: ResolverMatch, run: Callable[..., Any]
    ) -> HttpResponse | None:
        try:
            for request_hook in self.request_hooks:
                if request_hook(request) is not None:
                    return None
        except Exception:  # a disallowed host, a refused user agent: Django answers it
            return None
        request.resolver_match = match
        try:
            response = await run(match.func, request, *match.args, **match.kwargs)
        except Exception as exc:  # as the innermost layer's exception wrapper does
            response = await sync_to_async(response_for_exception, thread_sensitive=False)(
                request, exc
            )
        for hook in self.response_hooks:
            try:
                if hook.__self__ is self.session and request.session.accessed:  # type: ignore[attr-defined]
                    # It may save the session: a database write, off the event loop.
                    response = await run(hook, request, response)
                else:
                    response = hook(request, response)
            except Exception as exc:
                response = await sync_to_async(response_for_exception, thread_sensitive=False)(
                    request, exc
                )
        return response


class ModelgateASGIHandler(ASGIHandler):
    """Django's ASGIHandler; requests of the alias poll route take the lean lane, the MLflow
    routes the middleware lane."""

    def __init__(self) -> None:
        super().__init__()
        self.middleware_lane = MiddlewareLane()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if takes_lean_lane(scope):
            await self.handle_lean(scope, receive, send)
            return
        found = self.mlflow_route(scope)
        if found is not None:
            await self.handle_mlflow(scope, receive, send, *found)
        else:
            await super().__call__(scope, receive, send)

    def mlflow_route(self, scope: dict[str, Any]) -> tuple[ResolverMatch, bool] | None:
        """The view of an MLflow request that takes the middleware lane and whether it is a
        read (run on the poll's pool) or not (the writes' pool), else None."""
        if (
            scope["type"] != "http"
            or scope.get("root_path")
            or not scope["path"].startswith(MLFLOW_PREFIXES)
            or not settings.MODELGATE_POLL_LEAN
            or not MiddlewareLane.applies()
        ):
            return None
        found = self.middleware_lane.route(scope)
        if found is None:
            return None
        read = found[1]
        if (settings.MODELGATE_POLL_THREADS if read else settings.MODELGATE_WRITE_THREADS) <= 0:
            return None
        return found

    async def handle_mlflow(
        self, scope: dict[str, Any], receive: Any, send: Any, match: ResolverMatch, read: bool
    ) -> None:
        """As handle_lean, the middleware run by MiddlewareLane; what it does not answer goes to
        Django's handler with the body already read."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            request = await self._request(scope, body_file, send)
            if request is None:
                return
            response = await self.middleware_lane.get_response(request, match, read)
            if response is not None:
                await self.send_response(response, send)
                return
            body_file.seek(0)
            body = body_file.read()
        finally:
            body_file.close()
        await super().__call__(scope, _replay(body, receive), send)

    async def handle_lean(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGIHandler.handle without its thread: no request signals, no response.close() on a
        thread (an HttpResponse of this route holds nothing to close; request_finished would
        only close the connections of a per-request thread, and there is none)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            request = await self._request(scope, body_file, send)
            if request is None:
                return
            polling.allow_memory(request)
            if not scope.get("query_string"):  # no `?wait=`: answered at once
                response = await self.run_get_response(request)
                await self.send_response(response, send)
                return
            # Maybe a long-poll: stop waiting when the client goes away, as Django does.
            await self._race_disconnect(request, receive, send)
        finally:
            body_file.close()

    async def _request(self, scope: dict[str, Any], body_file: Any, send: Any) -> Any:
        """The request as Django's handler makes it, or None once its error answer is sent."""
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None  # noqa: S101 (one or the other, always)
            await self.send_response(error_response, send)
        return request

    async def _race_disconnect(self, request: Any, receive: Any, send: Any) -> None:
        async def respond() -> None:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)

        disconnect = asyncio.create_task(self.listen_for_disconnect(receive))
        answer = asyncio.create_task(respond())
        await asyncio.wait([disconnect, answer], return_when=asyncio.FIRST_COMPLETED)
        for task in (disconnect, answer):
            if task.done():
                with contextlib.suppress(RequestAborted):
                    task.result()
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def _replay(body: bytes, receive: Any) -> Callable[[], Any]:
    """A `receive` that gives the body read already, then what the client sends next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Any:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


application = ModelgateASGIHandler()
