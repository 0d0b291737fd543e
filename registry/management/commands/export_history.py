"""`manage.py export_history --format jsonl|csv [filters] [--output FILE]`: the API's export.

The rows go to stdout or FILE, a progress bar to stderr. The export is recorded as a
history.exported event, by the user named with --actor (else by `system`, source `shell`).
For CSV the manifest goes to FILE.manifest.json (to stderr when writing to stdout).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, BinaryIO

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from accounts.actors import Actor
from config.errors import DomainError
from registry.history.export import (
    FORMATS,
    ExportFilters,
    export_plan,
    export_record,
    export_stream,
)


def _when(value: str | None, name: str) -> Any:
    if value is None:
        return None
    parsed = parse_datetime(value)
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(f"--{name}: give an ISO 8601 time with a zone, e.g. 2026-03-03T00:00Z")
    return parsed


class _Progress:
    """A one-line bar on a terminal; a line every few seconds otherwise (logs, CI)."""

    def __init__(self, stream: Any, total: int) -> None:
        self.stream, self.total = stream, total
        self.started = self.shown = time.monotonic()
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.shown < (0.2 if self.tty else 5.0):
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        share = done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        line = f"[{bar:<30}] {share:4.0%} {done:,}/{self.total:,} rows, {rate:,.0f} rows/s"
        if self.tty:
            self.stream.write("\r" + line, ending="\n" if final else "")
        else:
            self.stream.write(line)
        self.stream.flush()


class Command(BaseCommand):
    help = "Export the event history as JSON Lines or CSV (recorded as history.exported)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=list(FORMATS), default="jsonl")
        parser.add_argument("--model", help="Events of this model, under every name it had.")
        # (--version is Django's own option: the version number filter is --model-version.)
        parser.add_argument("--model-version", type=int, dest="model_version")
        parser.add_argument("--type", action="append", default=[], help="Event type (repeat).")
        parser.add_argument("--actor", dest="by", help="Events by this user name.")
        parser.add_argument("--since", help="ISO 8601 with a zone, inclusive.")
        parser.add_argument("--until", help="ISO 8601 with a zone, exclusive.")
        parser.add_argument("--through", type=int, help="Cut at this seq (default: the head).")
        parser.add_argument("--output", "-o", help="Write here instead of stdout.")
        parser.add_argument(
            "--as", dest="as_user", help="Who exports (a user name), for the record."
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.shell()
        if options["as_user"]:
            user = get_user_model().objects.filter(username=options["as_user"]).first()
            if user is None:
                raise CommandError(f"No user named '{options['as_user']}'.")
            actor = Actor.shell(user)
        filters = ExportFilters(
            model=options["model"],
            version=options["model_version"],
            types=tuple(t for raw in options["type"] for t in raw.split(",") if t),
            actor=options["by"],
            since=_when(options["since"], "since"),
            until=_when(options["until"], "until"),
        )
        try:
            plan = export_plan(
                viewer=actor, format=options["format"], filters=filters, through=options["through"]
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        export_record(plan=plan, actor=actor)
        progress = None if options["no_progress"] else _Progress(self.stderr, plan.rows)
        output = options["output"]
        target: BinaryIO = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
        written = 0
        try:
            for chunk in export_stream(plan):
                target.write(chunk)
                written += chunk.count(b"\n")
                if progress is not None:
                    progress.update(min(written, plan.rows))
        finally:
            if output:
                target.close()
            else:
                target.flush()
        if progress is not None:
            progress.update(plan.rows, final=True)
        if plan.format == "csv":
            manifest = json.dumps({"_manifest": plan.manifest()}, indent=2)
            if output:
                with open(f"{output}.manifest.json", "w") as handle:
                    handle.write(manifest + "\n")
            else:
                self.stderr.write(manifest)
        self.stderr.write(
            f"exported {plan.rows:,} events (seq {plan.first_seq}..{plan.last_seq}, head "
            f"{plan.through}); recorded as event {plan.event_seq}"
        )
