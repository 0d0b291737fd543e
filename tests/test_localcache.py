"""config.localcache.LocalCache: least recently used entries go first, entries expire."""

from __future__ import annotations

import time

from config.localcache import LocalCache


def test_least_recently_used_entries_are_evicted_first():
    cache: LocalCache[int] = LocalCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


def test_entries_expire_after_their_ttl_read_at_put_time():
    ttl = [0.05]
    cache: LocalCache[str] = LocalCache(10, ttl=lambda: ttl[0])
    cache.put("short", "x")
    ttl[0] = 60
    cache.put("long", "y")
    time.sleep(0.08)
    assert cache.get("short") is None
    assert cache.get("long") == "y"
    cache.clear()
    assert cache.get("long") is None
