"""/metrics: the exposition, latency by route, the state gauges, the broker, who may scrape."""

from __future__ import annotations

import base64
import os
import runpy
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from kombu import Connection
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from accounts.tokens import token_create
from config import metrics, metrics_state
from registry.models import Event, EventOutbox
from tests.factories import make_model, make_version
from webhooks.choices import DeliveryState
from webhooks.models import Delivery, Subscription
from workflows.choices import RequestStatus
from workflows.models import TransitionRequest
from workflows.services import request_create

ROOT = Path(__file__).resolve().parent.parent
TRANSPORT = "redis" if settings.REDIS_URL else "filesystem"  # the configured broker
NOW = datetime.fromisoformat("2026-03-03T12:00:00+00:00")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

STATE_GAUGES = {
    "modelgate_transition_requests_pending",
    "modelgate_transition_request_oldest_pending_age_seconds",
    "modelgate_webhook_deliveries_pending",
    "modelgate_webhook_deliveries_retrying",
    "modelgate_webhook_deliveries_failed",
    "modelgate_webhook_deliveries_failed_last_hour",
    "modelgate_webhook_delivery_overdue_seconds",
    "modelgate_event_outbox_length",
    "modelgate_event_publish_lag_seconds",
    "modelgate_event_outbox_failing",
}


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(**extra: Any) -> Samples:
    response = Client().get("/metrics", **extra)
    assert response.status_code == 200, response.content
    return parse(response.content.decode())


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def requests_counted(
    samples: Samples, route: str, status: str, *, long_poll: bool = False
) -> float:
    name = (
        "modelgate_http_long_poll_duration_seconds_count"
        if long_poll
        else ("modelgate_http_request_duration_seconds_count")
    )
    return value(samples, name, route=route, method="GET", status=status) or 0.0


# --- the exposition and the request histogram ----------------------------------------------------


@pytest.mark.django_db
def test_the_exposition_parses_and_names_every_metric():
    response = Client().get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    families = {f.name: f.type for f in text_string_to_metric_families(response.content.decode())}
    assert families["modelgate_http_request_duration_seconds"] == "histogram"
    assert families["modelgate_http_long_poll_duration_seconds"] == "histogram"
    assert families["modelgate_http_requests_in_progress"] == "gauge"
    for name in [*STATE_GAUGES, "modelgate_database_up", "modelgate_broker_up"]:
        assert families[name] == "gauge", name
    samples = parse(response.content.decode())
    assert value(samples, "modelgate_database_up") == 1
    assert value(samples, "modelgate_broker_up", transport=TRANSPORT) == 1
    assert value(samples, "modelgate_http_requests_in_progress") == 1  # the scrape itself


@pytest.mark.django_db
def test_openmetrics_when_the_scraper_asks_for_it():
    response = Client().get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response.content.decode().endswith("# EOF\n")


@pytest.mark.django_db
def test_a_request_is_counted_under_its_route_pattern_not_its_path():
    route = "api/v1/models/<str:name>/"
    before = scrape()

    assert Client().get("/api/v1/models/secret-project-x/").status_code == 401
    assert Client().get("/api/v1/models/another-name/").status_code == 401
    assert Client().get("/healthz").status_code == 200
    after = scrape()

    assert requests_counted(after, route, "4xx") - requests_counted(before, route, "4xx") == 2
    assert (
        requests_counted(after, "healthz", "2xx") - requests_counted(before, "healthz", "2xx") == 1
    )
    assert (
        requests_counted(after, "metrics", "2xx") - requests_counted(before, "metrics", "2xx") == 1
    )
    assert not [key for key in after if "secret-project-x" in str(key)]
    buckets = {
        labels: count
        for (name, labels), count in after.items()
        if name == "modelgate_http_request_duration_seconds_bucket"
        and dict(labels)["route"] == route
        and dict(labels)["status"] == "4xx"
        and dict(labels)["method"] == "GET"  # other tests send other methods to the route
    }
    assert len(buckets) == 15  # 14 bounds and +Inf
    assert buckets[(("le", "+Inf"), ("method", "GET"), ("route", route), ("status", "4xx"))] == (
        requests_counted(after, route, "4xx")
    )


@pytest.mark.django_db
def test_unrouted_paths_share_one_label_and_odd_methods_are_other():
    before = scrape()

    assert Client().get("/no/such/page/1").status_code == 404
    assert Client().get("/no/such/page/2").status_code == 404
    assert Client().generic("PROPFIND", "/healthz").status_code == 200
    after = scrape()

    assert (
        requests_counted(after, "<unmatched>", "4xx")
        - requests_counted(before, "<unmatched>", "4xx")
        == 2
    )
    key = "modelgate_http_request_duration_seconds_count"
    labels = {"route": "healthz", "method": "other", "status": "2xx"}
    assert (value(after, key, **labels) or 0) - (value(before, key, **labels) or 0) == 1


@pytest.mark.django_db
def test_long_polls_are_timed_apart_from_other_requests(actor, user):
    model = make_model(actor, name="scorer")
    make_version(actor, model)
    from registry import services

    services.alias_set(model=model, alias="prod", version=1, actor=actor)
    client = Client(
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"alice:alice-password-1").decode()
    )
    route = "api/v1/models/<str:name>/aliases/<str:alias>/"
    path = "/api/v1/models/scorer/aliases/prod/"
    before = scrape()

    etag = client.get(path)["ETag"]
    assert client.get(path, {"wait": "0.05"}, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert client.get(path, {"wait": "0"}).status_code == 200
    assert client.get(path, {"wait": "soon"}).status_code == 400
    after = scrape()

    assert requests_counted(after, route, "2xx") - requests_counted(before, route, "2xx") == 2
    assert requests_counted(after, route, "4xx") - requests_counted(before, route, "4xx") == 1
    long_polls = requests_counted(after, route, "3xx", long_poll=True) - requests_counted(
        before, route, "3xx", long_poll=True
    )
    assert long_polls == 1
    assert requests_counted(after, route, "3xx") == requests_counted(before, route, "3xx")


# --- the state gauges --------------------------------------------------------------------------


def _delivery(subscription: Subscription, state: str, **fields: Any) -> Delivery:
    return Delivery.objects.create(
        subscription=subscription, event_type="model_version.created", body="{}", state=state,
        **fields,
    )  # fmt: skip


@pytest.fixture
def registry_rows(actor, django_user_model):
    """3 pending requests (oldest 2 h), 1 cancelled; deliveries in every state; 3 outbox rows."""
    model = make_model(actor, name="scorer")
    versions = [make_version(actor, model, source=f"s3://m/{n}") for n in range(4)]
    requests = [request_create(version=v, target="Staging", actor=actor) for v in versions]
    for request, age in zip(requests, [7200, 60, 30, 99999], strict=True):
        TransitionRequest.objects.filter(pk=request.pk).update(
            created_at=NOW - timedelta(seconds=age)
        )
    TransitionRequest.objects.filter(pk=requests[3].pk).update(status=RequestStatus.CANCELLED)

    hook = Subscription.objects.create(url="https://hooks.example.com/x", events=["*"])
    pending, failed = DeliveryState.PENDING, DeliveryState.FAILED
    _delivery(hook, pending, next_attempt_at=NOW - timedelta(seconds=45))  # first try, overdue
    _delivery(hook, pending, attempts=2, next_attempt_at=NOW + timedelta(minutes=5))  # retrying
    # Redelivered by hand after 3 failures: pending again, not yet retried.
    _delivery(hook, pending, attempts=3, retries_from=3, next_attempt_at=NOW)
    _delivery(hook, failed, attempts=9, finished_at=NOW - timedelta(minutes=10))
    _delivery(hook, failed, attempts=1, finished_at=NOW - timedelta(hours=3))
    _delivery(hook, DeliveryState.SUCCEEDED, attempts=1, finished_at=NOW)
    _delivery(hook, DeliveryState.CANCELLED, finished_at=NOW)
    # Test deliveries are a person poking a receiver: never counted.
    _delivery(hook, pending, is_test=True, next_attempt_at=NOW - timedelta(hours=5))
    _delivery(hook, failed, is_test=True, finished_at=NOW)

    EventOutbox.objects.all().delete()
    events = list(Event.objects.order_by("seq")[:3])
    for event, age, attempts in zip(events, [90, 20, 5], [2, 0, 1], strict=True):
        EventOutbox.objects.create(
            event=event, created_at=NOW - timedelta(seconds=age), attempts=attempts
        )


@pytest.mark.django_db
def test_the_state_gauges_count_the_rows(registry_rows):
    gauges = {m.name: m.samples[0].value for m in metrics_state.database_metrics(NOW)}

    assert gauges == {
        "modelgate_transition_requests_pending": 3,
        "modelgate_transition_request_oldest_pending_age_seconds": 7200,
        "modelgate_webhook_deliveries_pending": 3,
        "modelgate_webhook_deliveries_retrying": 1,
        "modelgate_webhook_deliveries_failed": 2,
        "modelgate_webhook_deliveries_failed_last_hour": 1,
        "modelgate_webhook_delivery_overdue_seconds": 45,
        "modelgate_event_outbox_length": 3,
        "modelgate_event_publish_lag_seconds": 90,
        "modelgate_event_outbox_failing": 2,
    }


@pytest.mark.django_db
def test_the_state_gauges_are_zero_when_nothing_waits():
    gauges = {m.name: m.samples[0].value for m in metrics_state.database_metrics(NOW)}

    assert gauges == dict.fromkeys(STATE_GAUGES, 0)


@pytest.mark.django_db
def test_the_scrape_shows_the_counts(registry_rows):
    samples = scrape()

    assert value(samples, "modelgate_transition_requests_pending") == 3
    assert value(samples, "modelgate_webhook_deliveries_pending") == 3
    assert value(samples, "modelgate_webhook_deliveries_retrying") == 1
    assert value(samples, "modelgate_webhook_deliveries_failed") == 2
    assert value(samples, "modelgate_event_outbox_length") == 3
    assert value(samples, "modelgate_event_outbox_failing") == 2
    assert value(samples, "modelgate_database_up") == 1


@pytest.mark.django_db
def test_a_failing_database_leaves_its_gauges_out(monkeypatch):
    def broken(now: datetime) -> list:
        raise RuntimeError("connection refused")

    monkeypatch.setattr(metrics_state, "database_metrics", broken)
    samples = scrape()

    assert value(samples, "modelgate_database_up") == 0
    assert not [key for key in samples if key[0] in STATE_GAUGES]
    assert value(samples, "modelgate_broker_up", transport=TRANSPORT) == 1


# --- the broker --------------------------------------------------------------------------------


@pytest.fixture
def broker_folder(settings, tmp_path):
    folder = tmp_path / "broker"
    folder.mkdir()
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
    }
    return folder


@pytest.mark.django_db
def test_filesystem_queue_depth_counts_the_messages_kombu_wrote(broker_folder, monkeypatch):
    monkeypatch.setattr(metrics_state, "broker_queues", lambda: ["celery", "other"])
    options = {"data_folder_in": str(broker_folder), "data_folder_out": str(broker_folder)}
    with Connection("filesystem://", transport_options=options) as conn:
        queue = conn.SimpleQueue("celery")
        queue.put({"n": 1})
        queue.put({"n": 2})
        queue.close()
    (broker_folder / "notes.txt").write_text("not a message")
    samples = scrape()

    assert len(list(broker_folder.glob("*.celery.msg"))) == 2
    assert value(samples, "modelgate_broker_up", transport="filesystem") == 1
    assert value(samples, "modelgate_celery_queue_length", queue="celery") == 2
    assert value(samples, "modelgate_celery_queue_length", queue="other") == 0


@pytest.mark.django_db
def test_a_missing_broker_folder_is_broker_down_not_an_error(broker_folder, settings):
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(broker_folder / "gone")}
    samples = scrape()

    assert value(samples, "modelgate_broker_up", transport="filesystem") == 0
    assert not [key for key in samples if key[0] == "modelgate_celery_queue_length"]
    assert value(samples, "modelgate_database_up") == 1


@pytest.mark.django_db
def test_an_unreachable_redis_is_broker_down_not_an_error(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    samples = scrape()

    assert value(samples, "modelgate_broker_up", transport="redis") == 0
    assert not [key for key in samples if key[0] == "modelgate_celery_queue_length"]


@pytest.mark.django_db
def test_an_unknown_transport_reports_nothing_about_the_broker(settings):
    settings.CELERY_BROKER_URL = "amqp://guest@127.0.0.1:5672//"
    samples = scrape()

    assert not [key for key in samples if key[0].startswith(("modelgate_broker", "modelgate_cel"))]
    assert value(samples, "modelgate_database_up") == 1


@pytest.mark.redis
@pytest.mark.django_db
def test_redis_queue_depth_counts_every_priority(settings, monkeypatch):
    url = os.environ["REDIS_URL"]
    settings.CELERY_BROKER_URL = url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    name = f"metrics-test-{uuid.uuid4().hex}"
    monkeypatch.setattr(metrics_state, "broker_queues", lambda: [name])
    with Connection(url) as conn:
        queue = conn.SimpleQueue(name)
        try:
            queue.put({"n": 1})
            queue.put({"n": 2})
            queue.put({"n": 3}, priority=9)
            samples = scrape()
            lists = redis.Redis.from_url(url).keys(f"{name}*")
        finally:
            queue.clear()
            queue.close()

    assert len(lists) == 2  # the queue's name, and its priority-9 list
    assert value(samples, "modelgate_broker_up", transport="redis") == 1
    assert value(samples, "modelgate_celery_queue_length", queue=name) == 3


# --- who may scrape ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("remote", "networks", "status"),
    [
        ("127.0.0.1", None, 200),
        ("::1", None, 200),
        ("203.0.113.5", None, 403),
        ("10.1.2.3", None, 403),
        ("10.1.2.3", ["10.0.0.0/8"], 200),
        ("::ffff:10.1.2.3", ["10.0.0.0/8"], 200),
        ("127.0.0.1", ["10.0.0.0/8"], 403),
        ("127.0.0.1", [], 403),
    ],
)
def test_networks_decide_without_a_token(settings, remote, networks, status):
    if networks is not None:
        settings.MODELGATE_METRICS_ALLOWED_NETWORKS = networks
    response = Client(REMOTE_ADDR=remote).get("/metrics")

    assert response.status_code == status
    if status == 403:
        assert b"modelgate_" not in response.content
        assert "WWW-Authenticate" not in response


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED"])
def test_a_request_through_a_proxy_needs_the_token(header):
    response = Client(**{header: "198.51.100.7"}).get("/metrics")

    assert response.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("Bearer scrape-token-1", 200),
        ("bearer scrape-token-1", 200),
        ("Bearer scrape-token-2", 401),
        ("Basic c2NyYXBlOnNjcmFwZS10b2tlbi0x", 401),
        ("", 401),
    ],
)
def test_the_token_opens_metrics_from_anywhere(settings, authorization, status):
    settings.MODELGATE_METRICS_TOKEN = "scrape-token-1"
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = Client(REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="1.2.3.4").get(
        "/metrics", **extra
    )

    assert response.status_code == status
    if status == 401:
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert b"modelgate_" not in response.content


@pytest.mark.django_db
def test_a_users_credentials_do_not_open_metrics(user):
    secret = token_create(user=user).secret
    for authorization in (
        f"Bearer {secret}",
        "Basic " + base64.b64encode(b"alice:alice-password-1").decode(),
    ):
        response = Client(REMOTE_ADDR="203.0.113.5").get(
            "/metrics", HTTP_AUTHORIZATION=authorization
        )
        assert response.status_code == 403


@pytest.mark.django_db
def test_metrics_are_read_only():
    assert Client().post("/metrics").status_code == 405
    assert Client().head("/metrics").status_code == 200


def test_a_bad_network_is_a_configuration_error(settings):
    settings.MODELGATE_METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "not-a-network"]

    with pytest.raises(ImproperlyConfigured, match="not-a-network"):
        metrics.MetricsMiddleware(lambda request: None)


# --- several processes (gunicorn's workers) ------------------------------------------------------

WORKER = """
import sys

import django

django.setup()
from django.test import Client

client = Client()
for _ in range(int(sys.argv[1])):
    assert client.get("/healthz").status_code == 200
if sys.argv[2:] == ["scrape"]:
    sys.stdout.write(client.get("/metrics").content.decode())
"""


def test_worker_processes_are_summed_and_dead_ones_dropped(tmp_path, monkeypatch):
    folder = tmp_path / "metrics"
    folder.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"}
    }
    env.update(
        PROMETHEUS_MULTIPROC_DIR=str(folder),
        MODELGATE_VAR_DIR=str(tmp_path / "var"),  # an empty SQLite database: no tables
        DJANGO_SETTINGS_MODULE="config.settings",
    )

    def run(*args: str) -> subprocess.Popen:
        return subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", WORKER, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    first, second = run("3"), run("4")
    assert first.wait(timeout=120) == 0
    assert second.wait(timeout=120) == 0
    third = run("2", "scrape")
    output, _ = third.communicate(timeout=120)
    assert third.returncode == 0
    samples = parse(output)

    assert requests_counted(samples, "healthz", "2xx") == 9
    assert value(samples, "modelgate_http_requests_in_progress") == 1  # the scraping request
    assert value(samples, "modelgate_database_up") == 0  # no tables, and still an answer

    # gunicorn's master drops each dead worker's live gauges (deploy/gunicorn.conf.py).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    monkeypatch.delenv("MODELGATE_METRICS_DIR_MADE", raising=False)
    conf = runpy.run_path(str(ROOT / "deploy/gunicorn.conf.py"))
    live = sorted(folder.glob("gauge_livesum_*.db"))
    assert len(live) == 3
    for path in live:
        conf["child_exit"](None, SimpleNamespace(pid=int(path.stem.rpartition("_")[2])))
    assert list(folder.glob("gauge_livesum_*.db")) == []
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    samples = parse(generate_latest(registry).decode())
    assert requests_counted(samples, "healthz", "2xx") == 9
    assert value(samples, "modelgate_http_requests_in_progress") is None

    conf["on_starting"](None)  # a new run starts from zero in a folder it was given
    assert list(folder.iterdir()) == []
    conf["on_exit"](None)  # and leaves a folder it did not make where it was
    assert folder.is_dir()


def test_gunicorn_makes_a_folder_for_the_run_and_removes_it(monkeypatch):
    # Empty counts as unset; monkeypatch puts back what was there before the config set them.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.setenv("MODELGATE_METRICS_DIR_MADE", "")
    conf = runpy.run_path(str(ROOT / "deploy/gunicorn.conf.py"))
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

    assert folder.is_dir()
    assert folder.name.startswith("modelgate-metrics-")
    conf["on_exit"](None)
    assert not folder.exists()
