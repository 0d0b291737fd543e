"""Static files (the admin's and the API docs' assets) served by the web process, via WhiteNoise.

WhiteNoise's middleware is sync-only: under ASGI Django would run it on a thread, a hop for
every request, the alias polls included. This subclass answers in the event loop: a request
outside the collected files goes straight on, and only a static file is served from a thread,
its content read a block at a time off the loop (Django's ASGI handler would otherwise read a
synchronous file response whole into memory first, warning each process once).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware

logger = logging.getLogger(__name__)
_missing_roots: set[str] = set()


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise for files collected into STATIC_ROOT, cheap under ASGI for everything else."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def add_files(self, root: str, prefix: str | None = None) -> None:
        # Not collected yet (tests, a shell): say so once per process, not once per request
        # handler as WhiteNoise's own warning would.
        if not self.autorefresh and not os.path.isdir(root):
            if str(root) not in _missing_roots:
                _missing_roots.add(str(root))
                logger.warning("No static files at %s: run manage.py collectstatic", root)
            return
        super().add_files(root, prefix)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if self.autorefresh:  # DEBUG: look on disk each time, off the event loop
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(
                request.path_info
            )
        else:
            static_file = self.files.get(request.path_info)
        if static_file is None:
            return await self.get_response(request)
        response = await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        response.streaming_content = _read_off_loop(iter(response.streaming_content))
        return response


def _next_block(blocks: Iterator[bytes]) -> bytes | None:
    return next(blocks, None)


async def _read_off_loop(blocks: Iterator[bytes]) -> AsyncIterator[bytes]:
    read = sync_to_async(_next_block, thread_sensitive=False)
    while (block := await read(blocks)) is not None:
        yield block
