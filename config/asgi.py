"""The ASGI application: Django's handler, with a lean lane for the alias poll route.

For every request Django's ASGIHandler makes a thread of the request's own (asgiref's
ThreadSensitiveContext), runs the request_started and request_finished signals on it (they
close that thread's database connections) and closes the response there too: two thread hops
and a thread start and join per request, about as much as the cheapest view costs in all.

The alias poll (`GET`/`HEAD /api/v1/models/<name>/aliases/<alias>/`, registry.api.polling) does
its database work on a pool of its own with persistent connections and needs none of that, so
its requests go through a lean lane: the same request object, the same middleware, URL
resolution, view and error handling (Django's own `get_response_async`), but no per-request
thread and no request signals. Everything else goes through Django's handler unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

# Imported once Django is set up.
from django.conf import settings  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.urls import set_script_prefix  # noqa: E402

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


class ModelgateASGIHandler(ASGIHandler):
    """Django's ASGIHandler; requests of the alias poll route take the lean lane."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if takes_lean_lane(scope):
            await self.handle_lean(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def handle_lean(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGIHandler.handle without its thread: no request signals, no response.close() on a
        thread (an HttpResponse of this route holds nothing to close; request_finished would
        only close the connections of a per-request thread, and there is none)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                assert error_response is not None  # noqa: S101 (one or the other, always)
                await self.send_response(error_response, send)
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


application = ModelgateASGIHandler()
