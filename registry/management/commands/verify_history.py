"""`manage.py verify_history`: recompute the hash chain, check the signed checkpoints.

Exit status 0 when the history is intact; 1 when it is not, with the first bad sequence number
and what is wrong (missing, edited, reordered, tail_cut, bad_checkpoint) on stdout. Progress
goes to stderr on long runs.
"""

import json
import os
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from registry.history.verify import RANGE_SIZE, history_verify
from registry.models import EventChainHead


class Command(BaseCommand):
    help = "Verify the event history: every hash, every link, every signed checkpoint."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the verdict as JSON.")
        parser.add_argument(
            "--progress-every",
            type=float,
            default=2.0,
            metavar="SECONDS",
            help="Report progress on stderr at most this often (0: never).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=0,
            metavar="N",
            help="Hash the log in N processes (default: one per two CPUs, up to 4, for logs of "
            f"more than {2 * RANGE_SIZE:,} events; 1: in this process).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        every = options["progress_every"]
        last_report = [time.monotonic()]
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last_report[0] < every:
                return
            last_report[0] = now
            rate = done / max(now - started, 1e-9)
            share = f" ({100 * done / total:.0f}%)" if total else ""
            self.stderr.write(f"verified {done:,} of {total:,} events{share}, {rate:,.0f}/s")

        workers = options["workers"]
        if workers <= 0:
            head = EventChainHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
            # Each process keeps about two CPUs busy: its own hashing, and PostgreSQL formatting
            # the next rows meanwhile (registry.history.rows.pipelined).
            workers = min(max((os.cpu_count() or 1) // 2, 1), 4) if head > 2 * RANGE_SIZE else 1
        verdict = history_verify(progress=progress if every > 0 else None, workers=workers)
        if options["json"]:
            self.stdout.write(json.dumps(verdict.as_dict(), indent=2))
        else:
            self.stdout.write(verdict.summary())
            if verdict.ok:
                rate = verdict.events / max(verdict.seconds, 1e-9)
                self.stdout.write(f"checked in {verdict.seconds:.1f} s ({rate:,.0f} events/s)")
        if not verdict.ok:
            sys.exit(1)
