"""The whole approval flow with a real Celery worker, Redis as the broker and PostgreSQL.

The worker is `celery -A config worker` in a subprocess, pointed at pytest-django's test database;
this process sends it the apply task through Redis (eager mode is switched off for this test).
The approval goes through the API; the worker, not this process, applies it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from accounts.actors import Actor
from config.celery import app as celery_app
from registry.choices import Stage
from registry.models import Event, ModelAlias
from tests.workflows.scenario import World, build_world
from workflows.choices import RequestStatus
from workflows.models import TransitionRequest
from workflows.policies import policy_create

pytestmark = [
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

READY_TIMEOUT = 60.0
APPLY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class CeleryWorker:
    """A `celery worker` subprocess in its own process group, with its log in a file."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        self.log = log
        self.name = f"wfl-test-{uuid.uuid4().hex[:8]}@%h"
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 (a fixed command line, no shell)
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                self.name,
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the Celery worker exited early:\n{self.output()}")
            if " ready." in self.output():
                return
            time.sleep(0.2)
        pytest.fail(f"the Celery worker was not ready after {timeout:.0f} s:\n{self.output()}")

    def wait_for_log(self, pattern: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output()):
            if time.monotonic() >= deadline or self.process.poll() is not None:
                return bool(re.search(pattern, self.output()))
            time.sleep(0.1)
        return True

    def stop(self) -> None:
        """A warm shutdown (SIGTERM), then SIGKILL to the whole group if it hangs."""
        try:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=STOP_TIMEOUT)
        except ProcessLookupError:
            pass  # it had already gone
        finally:
            self._log_file.close()


def worker_database_url() -> str:
    """DATABASE_URL with its database name replaced by pytest-django's test database."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


@pytest.fixture
def worker(transactional_db, tmp_path) -> Iterator[CeleryWorker]:
    """A real worker on the test database; this process stops sending tasks eagerly."""
    env = {
        **os.environ,
        "DATABASE_URL": worker_database_url(),
        "REDIS_URL": os.environ["REDIS_URL"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "MODELGATE_VAR_DIR": str(settings.VAR_DIR),
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "MODELGATE_DB_POOL_MIN": "1",
        "MODELGATE_DB_POOL_MAX": "4",
    }
    env.pop("PYTEST_CURRENT_TEST", None)
    celery_app.conf.task_always_eager = False
    started = CeleryWorker(tmp_path / "worker.log", env)
    try:
        started.wait_ready(READY_TIMEOUT)
        yield started
    finally:
        # Stopped before pytest-django empties the tables (this fixture is torn down first).
        started.stop()
        celery_app.conf.task_always_eager = True


def client(world: World, name: str) -> APIClient:
    api = APIClient()
    api.force_authenticate(user=world.users[name])
    return api


def wait_for_status(pk: int, wanted: str, timeout: float) -> TransitionRequest:
    deadline = time.monotonic() + timeout
    while True:
        request = TransitionRequest.objects.get(pk=pk)
        if request.status == wanted or time.monotonic() >= deadline:
            return request
        time.sleep(0.2)


def test_a_real_worker_applies_the_approved_request(django_user_model, worker, settings):
    assert connection.settings_dict["NAME"].startswith("test_")
    assert celery_app.conf.task_always_eager is False
    settings.MODELGATE_APPROVE_WAIT_SECONDS = 10
    world = build_world(django_user_model)
    policy_create(
        actor=Actor.system(),
        model=None,
        target="Production",
        required_approvals=2,
        required_tags={"validation": "passed"},
        move_alias="production",
    )

    created = client(world, "carol").post(
        "/api/v1/transition-requests/",
        {"model": "fraud", "version": 1, "target": "Production"},
        format="json",
    )
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    first = client(world, "alice").post(f"/api/v1/transition-requests/{pk}/approve/")
    assert (first.status_code, first.json()["status"]) == (200, "PENDING")
    second = client(world, "bob").post(f"/api/v1/transition-requests/{pk}/approve/")
    assert second.status_code == 200
    # The view waits (bounded) for the worker; the worker normally makes it in time.
    assert second.json()["status"] in (RequestStatus.APPROVED, RequestStatus.APPLIED)

    request = wait_for_status(pk, RequestStatus.APPLIED, APPLY_TIMEOUT)
    assert (request.status, request.status_reason) == (RequestStatus.APPLIED, ""), worker.output()
    assert request.applied_at is not None
    assert world.version(1).stage == Stage.PRODUCTION
    assert ModelAlias.objects.get(model=world.model, alias="production").version.version == 1
    applied = Event.objects.filter(
        type__in=["model_version.stage_transitioned", "transition_request.applied"], version=1
    ).order_by("seq")
    assert [(event.type, event.actor_name, event.source) for event in applied] == [
        ("model_version.stage_transitioned", "system", "task"),
        ("transition_request.applied", "system", "task"),
    ]
    # The worker ran the task: its log names it and its result (written just after the commit).
    assert worker.wait_for_log(
        r"Task workflows\.tasks\.request_apply\[[\w-]+\] succeeded in [\d.]+s: 'APPLIED'",
        APPLY_TIMEOUT,
    ), worker.output()
    # The version as a client reads it right after: applied.
    version = client(world, "carol").get("/api/v1/models/fraud/versions/1/").json()
    assert (version["stage"], version["aliases"]) == ("Production", ["production"])
