"""Seed a scratch Modelgate database for the benchmark: one user, models, versions and aliases.

Run by bench/run.py in a subprocess whose environment (MODELGATE_VAR_DIR, DATABASE_URL) points at
scratch storage. Every write goes through the registry services, so the rows and the event log
are what the API would have made. Events are published in-process (CELERY_TASK_ALWAYS_EAGER), so
the outbox is empty and the Celery worker starts idle instead of draining the seed's events
while it is being measured. Prints a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "1"
os.environ["LOG_LEVEL"] = "WARNING"  # one INFO line per published event otherwise

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Permission  # noqa: E402
from django.db import transaction  # noqa: E402
from django.urls import reverse  # noqa: E402

from accounts.actors import Actor, Source  # noqa: E402
from registry import services  # noqa: E402
from registry.models import Event, EventOutbox  # noqa: E402

MODEL_NAME = "bench-model-{:03d}"
ALIASES = ("production", "staging")


def seed(*, models: int, versions: int, username: str, password: str) -> dict[str, object]:
    """Create the user, then `models` models of `versions` versions each with both aliases.

    `production` points at the next-to-last version and `staging` at the last one, as after a
    typical promotion. One transaction per model keeps SQLite fast without one huge transaction.
    Returns counts and the URL path of every alias, for the load generator.
    """
    user = get_user_model().objects.create_user(username=username, password=password)
    # An ordinary user allowed to create models, not a superuser: reads then go through the
    # per-model permission check (as the models' creator it holds a grant on each), as a
    # deployment bot's do.
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="registry", codename="add_registeredmodel")
    )
    actor = Actor(user=user, source=Source.SHELL)
    paths = []
    for index in range(models):
        name = MODEL_NAME.format(index)
        with transaction.atomic():
            model = services.model_create(
                name=name, actor=actor, description=f"Benchmark model {index}."
            )
            for number in range(1, versions + 1):
                services.version_create(
                    model=model,
                    actor=actor,
                    source=f"s3://bench-artifacts/{name}/{number}",
                    run_id=f"{index:04d}{number:028d}",
                    description=f"Training run {number}.",
                    tags={"validation": "passed", "framework": "sklearn"},
                )
            for alias, number in zip(ALIASES, (versions - 1, versions), strict=True):
                services.alias_set(model=model, alias=alias, version=number, actor=actor)
                paths.append(reverse("alias-detail", kwargs={"name": name, "alias": alias}))
    return {
        "events": Event.objects.count(),
        "unpublished": EventOutbox.objects.count(),
        "paths": paths,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, required=True)
    parser.add_argument("--versions", type=int, required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    if args.versions < 2:
        parser.error("--versions must be at least 2 (production and staging differ)")

    summary = seed(
        models=args.models,
        versions=args.versions,
        username=args.username,
        password=args.password,
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
