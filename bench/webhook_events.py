"""The Django side of bench/webhooks.py: set up the subscription, commit events, check results.

Run in a subprocess whose environment points at the scratch database and the broker, like
bench/seed.py. Every write goes through the registry and webhook services. Each command prints
one line of JSON:

- `setup --url URL`: a superuser, a model and one registry-wide subscription to model tag sets
  at URL;
- `commit --events N [--one-transaction]`: N model tag sets, each committed on its own (as N API
  calls would) or all in one transaction; prints each event's sequence number with the wall-clock
  time of its commit;
- `check --since SEQ`: the deliveries and attempts of the events after SEQ, by state.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import transaction  # noqa: E402
from django.db.models import Count, Max  # noqa: E402

from accounts.actors import Actor, Source  # noqa: E402
from registry.choices import EventType  # noqa: E402
from registry.models import Event, RegisteredModel  # noqa: E402
from registry.services.models import model_create, model_tag_set  # noqa: E402
from webhooks.models import Attempt, Delivery  # noqa: E402
from webhooks.services import subscription_create  # noqa: E402

USERNAME = "bench-hooks"
MODEL = "bench-hooks-model"


def actor() -> Actor:
    user = get_user_model().objects.get(username=USERNAME)
    return Actor(user=user, source=Source.SHELL)


def setup(url: str) -> dict:
    get_user_model().objects.create_superuser(username=USERNAME, password=os.urandom(16).hex())
    model_create(name=MODEL, actor=actor())
    created = subscription_create(actor=actor(), url=url, events=[EventType.MODEL_TAG_SET])
    return {"subscription": str(created.subscription.pk)}


def commit(events: int, one_transaction: bool) -> dict:
    who = actor()
    model = RegisteredModel.objects.get(name=MODEL)
    start = Event.objects.aggregate(seq=Max("seq"))["seq"] or 0
    times: list[float] = []

    def stamp() -> None:
        times.append(time.time())

    # The commit time is taken by the first callback after the commit: the ones that queue the
    # events for publishing run after it (a service's own transaction would run them first).
    if one_transaction:
        with transaction.atomic():
            transaction.on_commit(stamp)
            for n in range(events):
                model_tag_set(model=model, actor=who, key=f"k{n % 50}", value=str(n))
        times *= events
    else:
        for n in range(events):
            with transaction.atomic():
                transaction.on_commit(stamp)
                model_tag_set(model=model, actor=who, key=f"k{n % 50}", value=str(n))
    seqs = list(
        Event.objects.filter(seq__gt=start, type=EventType.MODEL_TAG_SET)
        .order_by("seq")
        .values_list("seq", flat=True)
    )
    if len(seqs) != events:
        raise SystemExit(f"expected {events} events after #{start}, found {len(seqs)}")
    # One writer, and appends are serialised in commit order: the n-th event is the n-th commit.
    return {"start": start, "commits": list(zip(seqs, times, strict=True))}


def check(since: int) -> dict:
    deliveries = Delivery.objects.filter(event__seq__gt=since)
    states = dict(deliveries.values_list("state").annotate(n=Count("id")).order_by())
    attempts = Attempt.objects.filter(delivery__event__seq__gt=since).count()
    return {"deliveries": states, "attempts": attempts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup").add_argument("--url", required=True)
    committing = commands.add_parser("commit")
    committing.add_argument("--events", type=int, required=True)
    committing.add_argument("--one-transaction", action="store_true")
    commands.add_parser("check").add_argument("--since", type=int, required=True)
    args = parser.parse_args()
    if args.command == "setup":
        result = setup(args.url)
    elif args.command == "commit":
        result = commit(args.events, args.one_transaction)
    else:
        result = check(args.since)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
