"""Gauges read from the database and the broker at scrape time (see config.metrics).

Each scrape costs three indexed aggregate queries and one broker round trip (Redis: LLEN of
each queue's lists, in one pipeline; the filesystem broker: one directory listing). Neither an
unreachable database nor an unreachable broker fails the scrape: modelgate_database_up or
modelgate_broker_up says 0 and the gauges that needed it are left out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db.models import Count, F, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 1.0
# kombu's Redis transport keeps a queue as one list per priority step: the queue's name for
# priority 0, then name + separator + step (kombu.transport.redis: PRIORITY_STEPS, Channel.sep).
REDIS_PRIORITY_STEPS = (0, 3, 6, 9)
REDIS_PRIORITY_SEP = "\x06\x16"


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _age(now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0


def database_metrics(now: datetime) -> list[Metric]:
    """Transition requests, webhook deliveries and the event outbox, as they are now."""
    from registry.models import EventOutbox
    from webhooks.choices import DeliveryState
    from webhooks.models import Delivery
    from workflows.choices import RequestStatus
    from workflows.models import TransitionRequest

    requests = TransitionRequest.objects.filter(status=RequestStatus.PENDING).aggregate(
        pending=Count("pk"), oldest=Min("created_at")
    )
    pending, failed = DeliveryState.PENDING, DeliveryState.FAILED
    deliveries = (
        Delivery.objects.filter(state__in=[pending, failed], is_test=False)
        .order_by()
        .aggregate(
            pending=Count("pk", filter=Q(state=pending)),
            # Failed at least once since it was (re)started, and due to be tried again.
            retrying=Count("pk", filter=Q(state=pending, attempts__gt=F("retries_from"))),
            failed=Count("pk", filter=Q(state=failed)),
            failed_hour=Count(
                "pk", filter=Q(state=failed, finished_at__gte=now - timedelta(hours=1))
            ),
            first_due=Min("next_attempt_at", filter=Q(state=pending)),
        )
    )
    outbox = EventOutbox.objects.order_by().aggregate(
        length=Count("pk"), oldest=Min("created_at"), failing=Count("pk", filter=Q(attempts__gt=0))
    )
    return [
        _gauge(
            "modelgate_transition_requests_pending",
            "Transition requests waiting for reviewers.",
            requests["pending"],
        ),
        _gauge(
            "modelgate_transition_request_oldest_pending_age_seconds",
            "Age of the oldest transition request still waiting for reviewers; 0 when none.",
            _age(now, requests["oldest"]),
        ),
        _gauge(
            "modelgate_webhook_deliveries_pending",
            "Webhook deliveries not yet delivered nor given up (test deliveries aside).",
            deliveries["pending"],
        ),
        _gauge(
            "modelgate_webhook_deliveries_retrying",
            "Pending webhook deliveries whose last attempt failed, waiting for a retry.",
            deliveries["retrying"],
        ),
        _gauge(
            "modelgate_webhook_deliveries_failed",
            "Webhook deliveries given up on (not retryable, or retries used up) and not "
            "redelivered since.",
            deliveries["failed"],
        ),
        _gauge(
            "modelgate_webhook_deliveries_failed_last_hour",
            "Webhook deliveries given up on in the last hour.",
            deliveries["failed_hour"],
        ),
        _gauge(
            "modelgate_webhook_delivery_overdue_seconds",
            "How long the most overdue pending delivery has been due without being sent; "
            "0 when none is due. Grows when no worker sends deliveries.",
            _age(now, deliveries["first_due"]),
        ),
        _gauge(
            "modelgate_event_outbox_length",
            "Committed events not yet handed to every consumer (webhook fan-out).",
            outbox["length"],
        ),
        _gauge(
            "modelgate_event_publish_lag_seconds",
            "Age of the oldest event not yet published; 0 when the outbox is empty.",
            _age(now, outbox["oldest"]),
        ),
        _gauge(
            "modelgate_event_outbox_failing",
            "Unpublished events whose publishing has failed at least once.",
            outbox["failing"],
        ),
    ]


# --- the broker -----------------------------------------------------------------------------


def broker_queues() -> list[str]:
    """The Celery queues workers consume: the default one and any configured."""
    from config.celery import app

    names = [app.conf.task_default_queue]
    for queue in app.conf.task_queues or ():
        if queue.name not in names:
            names.append(queue.name)
    return names


@cache
def _redis_client(url: str) -> redis.Redis:
    # A pool per process, reused by every scrape; short timeouts, so a broker that does not
    # answer costs a scrape about a second, not the scraper's whole timeout.
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=BROKER_TIMEOUT_SECONDS,
        socket_timeout=BROKER_TIMEOUT_SECONDS,
        retry_on_timeout=False,
    )


def redis_queue_lengths(url: str, queues: list[str], options: dict[str, Any]) -> dict[str, int]:
    prefix = options.get("global_keyprefix", "")
    sep = options.get("sep", REDIS_PRIORITY_SEP)
    steps = options.get("priority_steps", REDIS_PRIORITY_STEPS)
    pipe = _redis_client(url).pipeline(transaction=False)
    for queue in queues:
        for step in steps:
            pipe.llen(f"{prefix}{queue}{sep}{step}" if step else f"{prefix}{queue}")
    lengths = iter(pipe.execute())
    return {queue: sum(next(lengths) for _ in steps) for queue in queues}


def folder_queue_lengths(folder: str, queues: list[str]) -> dict[str, int]:
    """kombu's filesystem transport: one file a message, named `<time>_<uuid>.<queue>.msg`."""
    counts = dict.fromkeys(queues, 0)
    with os.scandir(folder) as entries:
        for entry in entries:
            queue = entry.name.partition(".")[2].removesuffix(".msg")
            if queue in counts and entry.name.endswith(".msg"):
                counts[queue] += 1
    return counts


def broker_metrics() -> list[Metric]:
    """modelgate_broker_up and each queue's length; nothing for a transport not known here."""
    url = settings.CELERY_BROKER_URL
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    transport = urlsplit(url).scheme.partition("+")[0]
    queues = broker_queues()
    try:
        if transport in ("redis", "rediss"):
            lengths = redis_queue_lengths(url, queues, options)
        elif transport == "filesystem" and options.get("data_folder_in"):
            lengths = folder_queue_lengths(options["data_folder_in"], queues)
        else:
            return []
    except Exception as exc:  # down, refusing, misconfigured: the scrape goes on without it
        logger.warning("metrics: the broker (%s) did not answer: %r", transport, exc)
        lengths = None
    up = GaugeMetricFamily(
        "modelgate_broker_up",
        "1 when the Celery broker answered this scrape, else 0 (queue lengths left out).",
        labels=["transport"],
    )
    up.add_metric([transport], 0 if lengths is None else 1)
    if lengths is None:
        return [up]
    depth = GaugeMetricFamily(
        "modelgate_celery_queue_length",
        "Celery messages waiting in the broker, by queue (taken by no worker yet).",
        labels=["queue"],
    )
    for queue, length in lengths.items():
        depth.add_metric([queue], length)
    return [up, depth]


class StateCollector(Collector):
    """A prometheus_client collector for one scrape: the database's state, then the broker's."""

    def collect(self) -> Iterator[Metric]:
        database_up = 1
        try:
            yield from database_metrics(timezone.now())
        except Exception as exc:
            logger.warning("metrics: the database queries failed: %r", exc)
            database_up = 0
        yield _gauge(
            "modelgate_database_up",
            "1 when this scrape's database queries succeeded, else 0 (their gauges left out).",
            database_up,
        )
        yield from broker_metrics()
