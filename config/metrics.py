"""Prometheus metrics at /metrics: request latency by route, and the registry's state.

Two kinds of numbers:

- Recorded by each web process as it serves requests (MetricsMiddleware): latency histograms
  labelled by the route pattern (never the raw path, so a label has a bounded set of values),
  the method and the status class. gunicorn runs several worker processes and any one of them
  answers a scrape, so each records into files in PROMETHEUS_MULTIPROC_DIR (prometheus_client's
  multiprocess mode, set up by deploy/gunicorn.conf.py) and the scrape sums them all. Without
  that variable (runserver, tests, management commands) a process reports only itself.
- Read from the database and the broker when scraped (config.metrics_state): what is pending,
  failing or lagging now. Every web replica reports the same values; aggregate them with max.

Who may scrape: a caller presenting MODELGATE_METRICS_TOKEN as a bearer token, or a direct
client (no proxy headers) from MODELGATE_METRICS_ALLOWED_NETWORKS, loopback by default. Route
names and request counts say a lot about a deployment; they are not for the public.
docs/operations.md describes each metric and gives example alerts.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from functools import cache
from time import perf_counter
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from config import metrics_state

disable_created_metrics()  # no `_created` series beside every counter and histogram

LABELS = ("route", "method", "status")
REQUEST_SECONDS = Histogram(
    "modelgate_http_request_duration_seconds",
    "Time from a request reaching Django to its response, by route pattern, method and status "
    "class; long-polls are apart (modelgate_http_long_poll_duration_seconds).",
    LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LONG_POLL_SECONDS = Histogram(
    "modelgate_http_long_poll_duration_seconds",
    "Time to answer a request that asked to wait for a change (?wait=N, N > 0), wait included.",
    LABELS,
    buckets=(0.01, 0.1, 1, 5, 10, 30, 60, 90),
)
IN_PROGRESS = Gauge(
    "modelgate_http_requests_in_progress",
    "Requests being served now, waiting long-polls included.",
    multiprocess_mode="livesum",
)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"  # no route: 404s, redirects answered before routing
STATIC = "<static>"  # files served by config.staticfiles before routing


def _route(request: HttpRequest) -> str:
    match = request.resolver_match
    if match is not None:
        return match.route
    if request.path_info.startswith("/" + settings.STATIC_URL):
        return STATIC
    return UNMATCHED


def _is_long_poll(request: HttpRequest) -> bool:
    if "wait=" not in request.META.get("QUERY_STRING", ""):  # the cheap test for every request
        return False
    try:
        return float(request.GET.get("wait") or 0) > 0
    except ValueError:  # refused with a 400 by the view: an ordinary request
        return False


# Histogram children by labels: `.labels()` validates and locks on every call; the set of keys
# is bounded by the routes, so the cache is too.
_children: dict[tuple[bool, str, str, str], Any] = {}


def observe(request: HttpRequest, response: HttpResponse, seconds: float) -> None:
    """Record one answered request."""
    method = request.method if request.method in METHODS else "other"
    key = (_is_long_poll(request), _route(request), method, f"{response.status_code // 100}xx")
    child = _children.get(key)
    if child is None:
        histogram = LONG_POLL_SECONDS if key[0] else REQUEST_SECONDS
        child = _children[key] = histogram.labels(*key[1:])
    child.observe(seconds)


class MetricsMiddleware:
    """Time every request, static files and refusals included: keep it first in MIDDLEWARE.

    Under ASGI it runs in the event loop (no thread hop); the cost is a clock read, a dict
    lookup and a histogram update.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        allowed_networks()  # a bad MODELGATE_METRICS_ALLOWED_NETWORKS fails at start, not scrape
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        start = perf_counter()
        IN_PROGRESS.inc()
        try:
            response = self.get_response(request)
        finally:
            IN_PROGRESS.dec()
        observe(request, response, perf_counter() - start)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        start = perf_counter()
        IN_PROGRESS.inc()
        try:
            response = await self.get_response(request)
        finally:
            IN_PROGRESS.dec()
        observe(request, response, perf_counter() - start)
        return response


# --- who may scrape -----------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Set by proxies: a request carrying one came through a proxy, whose own address may well be
# in an allowed network (an ingress in the cluster), so it must present the token.
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED")


def allowed_networks() -> tuple[Network, ...]:
    return _parse_networks(tuple(settings.MODELGATE_METRICS_ALLOWED_NETWORKS))


@cache
def _parse_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)
    except ValueError as exc:
        raise ImproperlyConfigured(f"MODELGATE_METRICS_ALLOWED_NETWORKS: {exc}") from exc


def _from_allowed_network(request: HttpRequest) -> bool:
    if any(header in request.META for header in PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:  # none (a Unix socket) or not an address
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allowed_networks())


def _has_token(request: HttpRequest) -> bool:
    token = settings.MODELGATE_METRICS_TOKEN
    if not token:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def scrape_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the caller may scrape; else the answer (401 when a token would do, else 403).

    Any other Authorization header (a user's API token) is neither required nor checked here.
    """
    if _has_token(request) or _from_allowed_network(request):
        return None
    if settings.MODELGATE_METRICS_TOKEN:
        response = HttpResponse(
            "Metrics need the scrape token (Authorization: Bearer).\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(
        "Metrics are served only to MODELGATE_METRICS_ALLOWED_NETWORKS.\n",
        status=403,
        content_type="text/plain",
    )


# --- the scrape ---------------------------------------------------------------------------------


# Read when prometheus_client was imported, as prometheus_client itself does.
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")


@cache
def recorded() -> Collector:
    """What the web processes recorded: all of them in multiprocess mode, else this one."""
    if not MULTIPROC_DIR:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=MULTIPROC_DIR)
    return registry


class _Scrape(Collector):
    """One exposition of several sources."""

    def __init__(self, sources: Iterable[Collector]) -> None:
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition (or OpenMetrics, when the scraper asks for it)."""
    refusal = scrape_refusal(request)
    if refusal is not None:
        return refusal
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(_Scrape([recorded(), metrics_state.StateCollector()]))
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
