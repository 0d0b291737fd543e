"""One HTTP POST to a receiver, with the guard on every connection and the timeouts enforced."""

from __future__ import annotations

import os
import ssl
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpcore
from django.conf import settings
from django.utils import timezone

from webhooks.ssrf import GuardedBackend

CONNECT_TIMEOUT = 5.0
TOTAL_TIMEOUT = 15.0
EXCERPT_BYTES = 1024
USER_AGENT = "Modelgate-Webhooks/1"


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back from one attempt: a status, or an error when nothing did."""

    status_code: int | None
    excerpt: str
    error: str
    duration_ms: int
    retry_after: float | None = None


_pools: dict[tuple[int, bool, tuple[str, ...]], httpcore.ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool(verify_tls: bool) -> httpcore.ConnectionPool:
    """A keep-alive pool per process (workers fork) and per TLS verification mode.

    Connections to a receiver's origin are reused for 30 s; each new one passes the guard when
    it is opened (GuardedBackend). The allowed networks are part of the key, so narrowing them
    never lets a request through on a connection the wider setting opened.
    """
    key = (os.getpid(), verify_tls, tuple(settings.MODELGATE_WEBHOOK_ALLOWED_NETWORKS))
    pool = _pools.get(key)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(key)
            if pool is None:
                context = ssl.create_default_context()
                if not verify_tls:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                pool = httpcore.ConnectionPool(
                    ssl_context=context,
                    network_backend=GuardedBackend(),
                    max_connections=100,
                    keepalive_expiry=30.0,
                )
                _pools[key] = pool
    return pool


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from now; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


def post(url: str, headers: dict[str, str], body: bytes, *, verify_tls: bool = True) -> Answer:
    """POST the body; never raises for network trouble (it becomes the answer's error)."""
    started = time.monotonic()
    deadline = started + TOTAL_TIMEOUT

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    def remaining() -> float:
        return max(0.001, deadline - time.monotonic())

    request_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
    request_headers.append((b"content-length", str(len(body)).encode()))
    timeouts = {
        "connect": CONNECT_TIMEOUT,
        "read": TOTAL_TIMEOUT,
        "write": TOTAL_TIMEOUT,
        "pool": CONNECT_TIMEOUT,
    }

    def trace(name: str, info: dict[str, Any]) -> None:
        # httpcore reads the timeouts afresh for every step of the exchange: each step gets
        # what is left of the 15 s, so the whole attempt never takes longer.
        if name.endswith(".started"):
            timeouts["read"] = timeouts["write"] = remaining()

    extensions: dict[str, Any] = {"timeout": timeouts, "trace": trace}
    try:
        with _pool(verify_tls).stream(
            "POST", url, headers=request_headers, content=body, extensions=extensions
        ) as response:
            excerpt = bytearray()
            for chunk in response.iter_stream():
                excerpt.extend(chunk)
                if len(excerpt) >= EXCERPT_BYTES or time.monotonic() >= deadline:
                    break
            if time.monotonic() > deadline:
                return Answer(None, "", "The receiver took longer than 15 s.", elapsed_ms())
            retry_after = None
            for name, value in response.headers:
                if name.lower() == b"retry-after":
                    retry_after = retry_after_seconds(value.decode("latin-1"))
            return Answer(
                status_code=response.status,
                excerpt=bytes(excerpt[:EXCERPT_BYTES]).decode("utf-8", "replace"),
                error="",
                duration_ms=elapsed_ms(),
                retry_after=retry_after,
            )
    except httpcore.TimeoutException as exc:
        kind = "connect" if isinstance(exc, httpcore.ConnectTimeout) else "response"
        return Answer(
            None, "", f"Timed out waiting for the {kind}: {exc or 'no answer'}", elapsed_ms()
        )
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        return Answer(None, "", f"{type(exc).__name__}: {exc}", elapsed_ms())
    except (OSError, ssl.SSLError) as exc:
        return Answer(None, "", f"{type(exc).__name__}: {exc}", elapsed_ms())
