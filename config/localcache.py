"""A small in-process cache: least recently used entries go first, each may expire."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LocalCache(Generic[V]):
    """Thread-safe LRU of at most `size` entries; with `ttl` (seconds, or a callable read at
    each put, so settings can change it) an entry is forgotten that long after it was put."""

    def __init__(self, size: int, ttl: float | Callable[[], float] | None = None) -> None:
        self._size = size
        self._ttl = ttl
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if expires < time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> None:
        ttl = self._ttl() if callable(self._ttl) else self._ttl
        expires = time.monotonic() + ttl if ttl is not None else float("inf")
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
