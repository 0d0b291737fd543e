"""Deliveries survive faults: a worker killed mid-flight, a flushed broker, a broker that is down.

Everything here is real: `celery -A config worker` subprocesses on pytest-django's test database,
a Redis server of the test's own (started on a free port with its own directory, so stopping and
flushing it touches no other Redis), a gunicorn web process for the outage test, and the HTTP
receiver of tests/webhooks/receiver.py. The sweepers run in this process, as beat would run them,
with short settings (a lease and a redispatch delay of seconds instead of a minute) so the whole
module takes about a minute.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import celery
import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection, transaction

from accounts.actors import Actor, Source
from accounts.tokens import token_create
from config.celery import app as celery_app
from registry import publishing
from registry.models import EventOutbox, RegisteredModel
from registry.services.models import model_create, model_tag_set
from tests.webhooks.receiver import Receiver, Reply
from webhooks import sending
from webhooks.choices import DeliveryState
from webhooks.models import Attempt, Delivery, Subscription
from webhooks.services import subscription_create

pytestmark = [
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

EVENT = "registered_model_tag.set"
# The worker holds a delivery this long while sending; the sweepers re-hand a delivery whose
# broker message, and re-publish an event whose publishing, is older than REDISPATCH_AFTER.
# In production: 60 s, 30 s and 30 s.
LEASE_SECONDS = 3
REDISPATCH_AFTER_SECONDS = 5
START_TIMEOUT = 60.0
DELIVER_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server process of the test's own, without persistence: a restart comes back empty,
    as a broker restarted without persistence does."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 (a fixed command line, no shell)
            [
                binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() >= deadline or self.process.poll() is not None:
                    raise
            time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def stop(self) -> None:
        """The server goes away: connections are refused until it is started again."""
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def pause(self) -> None:
        """The server hangs: connections are accepted by the kernel but nothing answers."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)


class Process:
    """A subprocess in its own session (so a kill reaches everything it forked), logging to a
    file."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(  # noqa: S603 (a fixed command line, no shell)
                command,
                cwd=settings.BASE_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if self.process.poll() is not None:
                pytest.fail(f"{what} exited early:\n{self.output()[-4000:]}")
            if time.monotonic() >= deadline:
                pytest.fail(f"{what} was not ready in {START_TIMEOUT:.0f} s:\n{self.output()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL to the whole session: no warm shutdown, no acknowledgement, nothing."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


class Stack:
    """Workers and web processes on the test database and the test's Redis."""

    def __init__(self, broker: RedisServer, directory: Path) -> None:
        self.broker = broker
        self.directory = directory
        self.processes: list[Process] = []
        parts = urlsplit(os.environ["DATABASE_URL"])
        database_url = urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": broker.url,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "MODELGATE_VAR_DIR": str(settings.VAR_DIR),
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "MODELGATE_DB_POOL_MIN": "1",
            "MODELGATE_DB_POOL_MAX": "6",
            "MODELGATE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "MODELGATE_WEBHOOK_LEASE_SECONDS": str(LEASE_SECONDS),
            "MODELGATE_HTTPS": "0",
        }
        self.env.pop("PYTEST_CURRENT_TEST", None)

    def worker(self) -> Process:
        """`celery worker` with the thread pool `make run` uses; returns once it consumes."""
        name = f"faults-{uuid.uuid4().hex[:8]}"
        worker = Process(
            [
                sys.executable, "-m", "celery", "-A", "config", "worker",
                "--pool=threads", "--concurrency=4", "--loglevel=INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-n", f"{name}@%h",
            ],
            self.env,
            self.directory / f"{name}.log",
        )  # fmt: skip
        self.processes.append(worker)
        worker.wait_until(lambda: " ready." in worker.output(), "the Celery worker")
        return worker

    def web(self) -> tuple[Process, str]:
        """gunicorn with one uvicorn worker, as deployed; returns it and its base URL."""
        port = free_port()
        env = {**self.env, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1"}
        web = Process(
            [
                sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
                "config.asgi:application",
            ],
            env,
            self.directory / "web.log",
        )  # fmt: skip
        self.processes.append(web)
        base_url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        web.wait_until(healthy, "the web process")
        return web, base_url

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def repoint_broker(url: str) -> None:
    """Send this process's tasks to `url`. Celery keeps its connection and producer pools, so
    its references to them are dropped (the reset Celery does after a fork); the pools stay in
    kombu's registry, keyed by URL, for when the URL is switched back."""
    celery_app.conf.broker_url = url
    celery_app._after_fork()


@pytest.fixture
def broker(tmp_path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server program to start a Redis of the test's own")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    saved = celery_app.conf.broker_url
    repoint_broker(server.url)
    celery_app.conf.task_always_eager = False
    try:
        yield server
    finally:
        repoint_broker(saved)
        celery_app.conf.task_always_eager = True
        server.stop()


@pytest.fixture
def stack(transactional_db, broker, tmp_path, settings) -> Iterator[Stack]:
    """Processes on the test database; stopped before pytest-django empties its tables."""
    settings.MODELGATE_WEBHOOK_REDISPATCH_AFTER_SECONDS = REDISPATCH_AFTER_SECONDS
    settings.MODELGATE_EVENT_REPUBLISH_AFTER_SECONDS = REDISPATCH_AFTER_SECONDS
    started = Stack(broker, tmp_path)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def hooked(admin_user, receiver) -> tuple[Actor, RegisteredModel, Subscription]:
    """A model and a registry-wide subscription to its tag changes."""
    actor = Actor(user=admin_user, source=Source.SHELL)
    model = model_create(name="fraud", actor=actor)
    subscription = subscription_create(actor=actor, url=receiver.url, events=[EVENT]).subscription
    return actor, model, subscription


def sweep_until_delivered(expected: int, *, workers: list[Process]) -> None:
    """Run both sweepers every second, as beat does, until `expected` deliveries succeeded;
    fail at once if one of the `workers` exits."""
    deadline = time.monotonic() + DELIVER_TIMEOUT
    while Delivery.objects.filter(state=DeliveryState.SUCCEEDED).count() < expected:
        exited = [worker for worker in workers if worker.process.poll() is not None]
        if exited or time.monotonic() >= deadline:
            logs = "\n".join(worker.output()[-4000:] for worker in exited or workers)
            states = list(Delivery.objects.values_list("state", "attempts", "last_error"))
            what = "a worker exited" if exited else f"not delivered in {DELIVER_TIMEOUT:.0f} s"
            pytest.fail(f"{what}: {states[:20]}\n{logs}")
        publishing.events_republish_stale()
        sending.deliveries_sweep()
        time.sleep(1)


def received_ids(receiver: Receiver) -> list[str]:
    return [hit.headers["webhook-id"] for hit in receiver.received]


def assert_all_delivered(receiver: Receiver, count: int) -> None:
    """`count` deliveries, each succeeded with exactly one recorded attempt, each received."""
    uids = {str(uid) for uid in Delivery.objects.values_list("uid", flat=True)}
    assert len(uids) == count
    assert Delivery.objects.filter(state=DeliveryState.SUCCEEDED, attempts=1).count() == count
    assert Attempt.objects.count() == count
    assert Attempt.objects.filter(status_code=200).count() == count
    assert set(received_ids(receiver)) == uids
    assert EventOutbox.objects.count() == 0


def test_a_worker_killed_mid_flight_loses_no_delivery(stack, hooked, receiver):
    actor, model, _ = hooked
    receiver.default = Reply(delay=0.02)  # a few seconds for 500, so the kill lands mid-flight
    worker = stack.worker()
    with transaction.atomic():  # one commit: the 500 events reach the broker together
        for n in range(500):
            model_tag_set(model=model, actor=actor, key=f"k{n}", value="v")

    deadline = time.monotonic() + DELIVER_TIMEOUT
    while len(receiver.received) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.kill()
    succeeded = Delivery.objects.filter(state=DeliveryState.SUCCEEDED).count()
    assert 0 < succeeded < 500, worker.output()[-3000:]

    replacement = stack.worker()
    sweep_until_delivered(500, workers=[replacement])

    assert Delivery.objects.count() == 500
    assert Delivery.objects.filter(state=DeliveryState.SUCCEEDED).count() == 500
    ids = received_ids(receiver)
    assert len(set(ids)) == 500
    # At least once: what the dead worker had posted without recording it is posted again.
    assert set(ids) == {str(uid) for uid in Delivery.objects.values_list("uid", flat=True)}
    # Only the attempts that came back are recorded: one success per delivery.
    assert Attempt.objects.count() == 500
    assert Attempt.objects.filter(status_code=200).count() == 500
    assert EventOutbox.objects.count() == 0


def test_a_flushed_broker_loses_no_delivery(stack, hooked, receiver, broker):
    actor, model, _ = hooked
    queued = broker.client().llen("celery")
    for n in range(30):
        model_tag_set(model=model, actor=actor, key=f"k{n}", value="v")
    # 20 events fanned out (their deliveries queued), 10 still waiting in the outbox; all of
    # their messages are in the broker when it loses everything.
    tagged = EventOutbox.objects.filter(event__type=EVENT).order_by("pk")
    for seq in tagged.values_list("pk", flat=True)[:20]:
        assert publishing.event_publish(seq=seq) is True
    assert Delivery.objects.filter(state=DeliveryState.PENDING).count() == 20
    assert broker.client().llen("celery") == queued + 30 + 20
    broker.client().flushall()
    assert broker.client().dbsize() == 0

    worker = stack.worker()
    sweep_until_delivered(30, workers=[worker])

    assert_all_delivered(receiver, 30)
    assert len(receiver.received) == 30


def test_the_api_answers_while_the_broker_is_down(stack, hooked, receiver, broker, admin_user):
    _, model, _ = hooked
    token = token_create(user=admin_user).secret
    _, base_url = stack.web()
    worker = stack.worker()
    api = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def tag(n: int) -> int:
        return api.put(f"/api/v1/models/{model.name}/tags/k{n}/", json={"value": "v"}).status_code

    assert tag(0) == 204
    assert len(receiver.wait_for(1, timeout=DELIVER_TIMEOUT)) == 1
    # The worker is idle (nothing unacknowledged) when the broker goes: see the next test.
    wait_for_no_unacknowledged(broker)

    # Stopped: connections refused.
    broker.stop()
    assert [tag(n) for n in (1, 2, 3)] == [204, 204, 204]
    assert api.get(f"/api/v1/models/{model.name}/").status_code == 200
    ready = api.get("/readyz")
    assert (ready.status_code, ready.json()["broker"].startswith("error")) == (503, True)

    # Hung: connections accepted, nothing answers; the socket timeouts bound each wait.
    broker.start()
    broker.pause()
    try:
        assert [tag(n) for n in (4, 5)] == [204, 204]
    finally:
        broker.resume()

    sweep_until_delivered(6, workers=[worker])
    assert_all_delivered(receiver, 6)
    assert len(receiver.received) == 6
    assert api.get("/readyz").status_code == 200
    api.close()


@pytest.mark.xfail(
    celery.__version__ == "5.7.0",
    # Not strict: whether the worker still holds the unacknowledged message when Redis goes
    # depends on timing, and when it does not the worker survives and the test passes.
    strict=False,
    reason=(
        "Celery 5.7.0 closes the lost connection again after collecting it; the Redis channel "
        "then restores the unacknowledged messages through a transport already detached "
        "(AttributeError: 'NoneType' object has no attribute 'hostname') and the worker exits "
        "with 'Unrecoverable error'. Celery 5.6.3 (with kombu 5.7.0) reconnects."
    ),
)
def test_a_worker_busy_when_the_broker_goes_keeps_running(stack, hooked, receiver, broker):
    actor, model, _ = hooked
    receiver.replies = [Reply(delay=3)]
    worker = stack.worker()
    model_tag_set(model=model, actor=actor, key="k0", value="v")
    receiver.wait_for(1, timeout=DELIVER_TIMEOUT)  # the worker is inside that POST
    broker.stop()
    broker.start()
    model_tag_set(model=model, actor=actor, key="k1", value="v")
    sweep_until_delivered(2, workers=[worker])
    assert_all_delivered(receiver, 2)


def wait_for_no_unacknowledged(broker: RedisServer) -> None:
    """Until the worker has acknowledged every message it took (kombu's `unacked` hash)."""
    deadline = time.monotonic() + DELIVER_TIMEOUT
    while broker.client().hlen("unacked") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broker.client().hlen("unacked") == 0
