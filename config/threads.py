"""A pool of threads made on first use and stopped on demand (the ASGI lanes' pools)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class LazyThreadPool:
    """A ThreadPoolExecutor of `size()` threads, made when first needed (so the size is read
    from settings then, as tests change it), and taken out again to stop it."""

    def __init__(self, size: Callable[[], int], name: str) -> None:
        self._size = size
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._size(), thread_name_prefix=self._name
                )
            return self._pool

    def take(self) -> ThreadPoolExecutor | None:
        """The pool, if one was made, no longer handed out: the next get() makes another. The
        caller stops it (after whatever it must still run on its threads)."""
        with self._lock:
            pool, self._pool = self._pool, None
        return pool

    async def run(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`func(*args, **kwargs)` on one of the pool's threads, awaited, in the caller's
        context as sync_to_async runs code (log records written there carry the request's id)."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(
            self.get(), functools.partial(context.run, func, *args, **kwargs)
        )
