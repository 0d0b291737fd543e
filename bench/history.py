"""The history at scale: export 1,000,000 events over HTTP, and verify them.

    .venv/bin/python bench/history.py [--events 1000000] [--database-url postgres://…] [--keep]

1. makes scratch storage (a temporary MODELGATE_VAR_DIR; with --database-url, a scratch
   PostgreSQL database beside the one named, dropped afterwards; else SQLite in the var dir);
2. migrates, then seeds N events with bulk inserts that compute the hash chain as event_record
   would (a realistic mix: versions, tags, transition requests and reviews, stage transitions
   with before/after snapshots, alias moves, comments), a signed checkpoint every 100,000
   events, and an auditor (registry-wide CAN_READ, no write right);
3. starts the web server as production does (gunicorn + uvicorn worker, deploy/gunicorn.conf.py)
   with one worker, so "the server process" is one process;
4. streams `GET /api/v1/events/export/?format=jsonl`, then `format=csv`, counting rows and time
   to first byte, while sampling the worker's RSS; the worker's VmHWM gives its peak;
5. runs `manage.py verify_history` in a process of its own (rows/s, its own peak RSS), then
   `GET /api/v1/events/verify/` through the server (rows/s, the worker's peak RSS).

Prints a Markdown report and writes it to bench/results/history.md. Targets (issue 7): export
>= 50,000 rows/s, server peak RSS < 200 MB, verify >= 100,000 rows/s. Missing one is reported,
not a failure; a wrong row count or a failed verification is (exit status 1).

`bench/history.py seed …` and `bench/history.py verify` are the Django halves, run in child
processes so that this orchestrating process never loads Django.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RESULTS = ROOT / "bench" / "results" / "history.md"
USERNAME, PASSWORD = "auditor", "auditor-bench-password"
TARGET_EXPORT, TARGET_VERIFY, TARGET_RSS_MB = 50_000, 100_000, 200


# --- the Django halves ----------------------------------------------------------------------


def _django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()


def seed(events: int, batch: int = 5000) -> dict:
    """N chained events in bulk, checkpoints every 100,000, and the auditor user."""
    _django()
    import hashlib
    from datetime import UTC, datetime, timedelta

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.db import transaction

    from registry.events import GENESIS_HASH, canonical_row
    from registry.history.checkpoints import checkpoint_key_id, checkpoint_sign
    from registry.models import Event, EventChainHead, EventCheckpoint

    auditor = get_user_model().objects.create_user(username=USERNAME, password=PASSWORD)
    auditor.user_permissions.add(
        Permission.objects.get(content_type__app_label="registry", codename="can_read")
    )
    from django.conf import settings

    key = settings.MODELGATE_CHECKPOINT_KEY
    start = datetime(2025, 1, 1, tzinfo=UTC)
    people = ["alice", "bob", "carol", "dave", "erin", "ci-pipeline", "system"]
    prev, rows, checkpoints = GENESIS_HASH, [], []
    versions: dict[int, int] = {}
    started = time.monotonic()

    def snapshot(name: str, number: int, stage: str) -> dict:
        return {
            "name": name,
            "version": number,
            "stage": stage,
            "source": f"s3://models/{name}/{number}/artifacts",
            "run_id": secrets.token_hex(16),
            "run_link": "",
            "description": "trained on the weekly snapshot",
            "status": "READY",
            "tags": {"validation": "passed", "dataset": "2025-w01"},
            "aliases": [],
            "deleted": False,
        }

    def request(rid: int, name: str, number: int, status: str, approvals: list[str]) -> dict:
        return {
            "id": rid,
            "model": name,
            "version": number,
            "target": "Production",
            "from_stage": "Staging",
            "status": status,
            "requester": "alice",
            "required_approvals": 1,
            "approver_level": "CAN_MANAGE_PRODUCTION_VERSIONS",
            "approvals": approvals,
            "reason": "",
        }

    for i in range(events):
        seq = i + 1
        model_id = (i // 10) % 1000 + 1
        name = f"model-{model_id:04d}"
        step = i % 10
        if step == 0:
            versions[model_id] = versions.get(model_id, 0) + 1
        number = versions[model_id]
        rid = i // 10 + 1
        before = after = None
        comment = ""
        kind = "model_version.created"
        if step == 0:
            after = snapshot(name, number, "None")
        elif step == 1:
            kind, after = "model_version_tag.set", {"key": "validation", "value": "passed"}
        elif step == 2:
            kind, after = "transition_request.created", request(rid, name, number, "PENDING", [])
            comment = "please promote: +2% recall on the holdout"
        elif step == 3:
            kind = "transition_request.approval_recorded"
            after = request(rid, name, number, "PENDING", ["bob"])
            comment = "=looks good"  # a formula, for the CSV to neutralise
        elif step == 4:
            kind = "transition_request.approved"
            after = request(rid, name, number, "APPROVED", ["bob"])
        elif step in (5, 9):
            kind = "model_version.stage_transitioned"
            before = snapshot(name, number, "Staging" if step == 5 else "Production")
            after = snapshot(name, number, "Production" if step == 5 else "Archived")
            comment = f"Applying request #{rid}, approved by bob."
        elif step == 6:
            kind = "model_version_alias.set"
            before = {"alias": "production", "version": number - 1} if number > 1 else None
            after = {"alias": "production", "version": number}
        elif step == 7:
            kind = "transition_request.applied"
            after = request(rid, name, number, "APPLIED", ["bob"])
        elif step == 8:
            kind, after = "comment.created", {"id": rid, "author": "carol", "text": "noted"}
        actor = people[i % len(people)]
        values = (
            seq,
            kind,
            start + timedelta(seconds=30 * i, microseconds=i % 1000),
            None if actor == "system" else 1 + i % 6,
            actor,
            "mg_ab12" if actor == "ci-pipeline" else "",
            "task" if actor == "system" else "api",
            "" if actor == "system" else f"10.0.{i % 250}.{i % 200}",
            "" if actor == "system" else secrets.token_hex(16),
            model_id,
            name,
            number,
            before,
            after,
            comment,
            prev,
        )
        digest = hashlib.sha256(canonical_row(values)).hexdigest()
        rows.append(
            Event(
                seq=seq,
                type=kind,
                created_at=values[2],
                actor_id=values[3],
                actor_name=actor,
                actor_token=values[5],
                source=values[6],
                client_ip=values[7],
                request_id=values[8],
                model_id=model_id,
                model_name=name,
                version=number,
                before=before,
                after=after,
                comment=comment,
                prev_hash=prev,
                hash=digest,
            )
        )
        prev = digest
        if seq % 100_000 == 0:
            when = values[2] + timedelta(seconds=1)
            checkpoints.append(
                EventCheckpoint(
                    seq=seq,
                    hash=digest,
                    created_at=when,
                    key_id=checkpoint_key_id(key),
                    signature=checkpoint_sign(seq=seq, hash=digest, created_at=when, key=key),
                )
            )
        if len(rows) >= batch:
            with transaction.atomic():
                Event.objects.bulk_create(rows)
            rows = []
    with transaction.atomic():
        Event.objects.bulk_create(rows)
        EventCheckpoint.objects.bulk_create(checkpoints)
        EventChainHead.objects.update_or_create(pk=1, defaults={"seq": events, "hash": prev})
    from django.db import connection

    with connection.cursor() as cursor:  # what autovacuum would do after such a load
        cursor.execute("ANALYZE")
    return {
        "events": events,
        "checkpoints": len(checkpoints),
        "seconds": time.monotonic() - started,
    }


def verify_in_process(workers: int) -> dict:
    """verify_history's check as the command runs it; peak RSS of this process and of the
    worker processes it spawned (the largest of them)."""
    _django()
    from registry.history.verify import history_verify

    verdict = history_verify(workers=workers)
    return {
        "ok": verdict.ok,
        "events": verdict.events,
        "seconds": verdict.seconds,
        "workers": workers,
        "problem": verdict.as_dict()["problem"],
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "worker_peak_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }


# --- the orchestrator -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***")))


@contextmanager
def scratch_database(url: str | None) -> Iterator[str | None]:
    if not url:
        yield None
        return
    import psycopg

    name = f"modelgate_history_bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def child(env: dict[str, str], *args: str) -> dict:
    """Run `bench/history.py <args>` (a Django half); its last stdout line is JSON."""
    result = subprocess.run(
        [PYTHON, str(Path(__file__)), *args], cwd=ROOT, env=env, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr.decode()[-4000:]}")
    return json.loads(result.stdout.decode().splitlines()[-1])


def proc_kb(pid: int, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def worker_pid(master: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                    return int(entry.name)
        time.sleep(0.1)
    raise SystemExit("no gunicorn worker appeared")


class Sampler(threading.Thread):
    """The worker's RSS every 50 ms while a measurement runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.stopping = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.peak_kb = max(self.peak_kb, proc_kb(self.pid, "VmRSS"))
            time.sleep(0.05)

    def stop(self) -> int:
        self.stopping.set()
        self.join()
        return self.peak_kb


def fetch(url: str, authorization: str) -> tuple[int, int, float, float, bytes]:
    """(rows, bytes, seconds to the first byte, seconds in all, last line) of a streamed GET."""
    request = urllib.request.Request(url, headers={"Authorization": authorization})
    started = time.monotonic()
    rows = size = 0
    first = None
    tail = b""
    with urllib.request.urlopen(request, timeout=600) as response:
        while chunk := response.read(1 << 16):
            if first is None:
                first = time.monotonic() - started
            rows += chunk.count(b"\n")
            size += len(chunk)
            tail = (tail + chunk)[-4096:]
    return rows, size, first or 0.0, time.monotonic() - started, tail.splitlines()[-1]


def mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def run(args: argparse.Namespace) -> int:
    var_dir = Path(tempfile.mkdtemp(prefix="modelgate-history-bench-"))
    failed = False
    lines: list[str] = []
    with scratch_database(args.database_url) as database_url:
        env = {
            **os.environ,
            "MODELGATE_VAR_DIR": str(var_dir),
            "SECRET_KEY": secrets.token_urlsafe(40),
            # Plain HTTP on 127.0.0.1: no redirect to HTTPS (a SECRET_KEY turns it on).
            "MODELGATE_HTTPS": "0",
            "WEB_CONCURRENCY": "1",
            "LOG_LEVEL": "WARNING",
        }
        env.pop("DATABASE_URL", None)
        if database_url:
            env["DATABASE_URL"] = database_url
        backend = "PostgreSQL" if database_url else "SQLite"
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        seeded = child(env, "seed", "--events", str(args.events))
        print(f"seeded {seeded['events']:,} events in {seeded['seconds']:.0f} s", flush=True)
        port = free_port()
        log = (var_dir / "web.log").open("wb")
        web = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "config.asgi:application"],
            cwd=ROOT,
            env={**env, "HOST": "127.0.0.1", "PORT": str(port)},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline or web.poll() is not None:
                        raise SystemExit(f"no server: see {var_dir}/web.log") from None
                    time.sleep(0.2)
            pid = worker_pid(web.pid)
            auth = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
            fetch(f"{base}/api/v1/events/?page_size=1", auth)  # warm: auth cache, imports
            idle_kb = proc_kb(pid, "VmRSS")
            load_start = os.getloadavg()[0]
            results = []
            for fmt in ("jsonl", "csv"):
                sampler = Sampler(pid)
                sampler.start()
                rows, size, first, seconds, last = fetch(
                    f"{base}/api/v1/events/export/?format={fmt}", auth
                )
                peak = sampler.stop()
                data_rows = rows - 1  # JSONL: the manifest line; CSV: the header
                if data_rows != seeded["events"] + len(results):  # each export adds an event
                    print(f"{fmt}: {data_rows} rows, expected more", file=sys.stderr)
                    failed = True
                if fmt == "jsonl" and not last.startswith(b'{"_manifest"'):
                    failed = True
                results.append((fmt, data_rows, size, first, seconds, peak))
                print(f"{fmt}: {data_rows:,} rows in {seconds:.1f} s", flush=True)
            verifies = [child(env, "verify", "--workers", str(n)) for n in (1, args.workers)]
            for verify in verifies:
                failed |= not verify["ok"]
                print(
                    f"verify_history, {verify['workers']} process(es): {verify['events']:,} in "
                    f"{verify['seconds']:.1f} s",
                    flush=True,
                )
            sampler = Sampler(pid)
            sampler.start()
            started = time.monotonic()
            with urllib.request.urlopen(
                urllib.request.Request(
                    f"{base}/api/v1/events/verify/", headers={"Authorization": auth}
                ),
                timeout=600,
            ) as response:
                http_verdict = json.loads(response.read())
            http_seconds = time.monotonic() - started
            http_peak = sampler.stop()
            failed |= not http_verdict["ok"]
            hwm_kb = proc_kb(pid, "VmHWM")
        finally:
            web.send_signal(signal.SIGTERM)
            try:
                web.wait(timeout=25)
            except subprocess.TimeoutExpired:
                os.killpg(web.pid, signal.SIGKILL)
                web.wait()
            log.close()

    def mark(ok: bool) -> str:
        return "yes" if ok else "**no**"

    lines += [
        "# History benchmark",
        "",
        f"`{' '.join(['.venv/bin/python', 'bench/history.py', *sys.argv[1:]])}`",
        "",
        f"{backend}, {seeded['events']:,} events seeded in {seeded['seconds']:.0f} s; "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; gunicorn + uvicorn worker, 1 worker process "
        f"(idle RSS {mb(idle_kb)} after a warm-up request).",
        f"Load average {load_start:.2f} when the exports began, {os.getloadavg()[0]:.2f} at "
        "the end (rows/s are absolute figures: on a busy machine they fall with it).",
        "",
        "| what | rows | bytes | first byte | time | rows/s | peak RSS (worker) | target met |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for fmt, rows, size, first, seconds, peak in results:
        rate = rows / seconds
        ok = rate >= TARGET_EXPORT and peak < TARGET_RSS_MB * 1024
        lines.append(
            f"| export {fmt} (HTTP) | {rows:,} | {size / 1e6:,.0f} MB | {first * 1000:.0f} ms "
            f"| {seconds:.1f} s | {rate:,.0f} | {mb(peak)} | {mark(ok)} |"
        )
    for verify in verifies:
        rate = verify["events"] / verify["seconds"]
        rss = mb(verify["peak_rss_kb"])
        if verify["workers"] > 1:
            rss += f" + {verify['workers']} workers of {mb(verify['worker_peak_rss_kb'])}"
        lines.append(
            f"| verify_history (command, --workers {verify['workers']}) | {verify['events']:,} "
            f"| | | {verify['seconds']:.1f} s | {rate:,.0f} | {rss} (its own processes) "
            f"| {mark(rate >= TARGET_VERIFY and verify['ok'])} |"
        )
    rate = http_verdict["events"] / http_seconds
    lines.append(
        f"| verify (HTTP `/api/v1/events/verify/`) | {http_verdict['events']:,} | | "
        f"| {http_seconds:.1f} s | {rate:,.0f} | {mb(http_peak)} "
        f"| {mark(rate >= TARGET_VERIFY and http_peak < TARGET_RSS_MB * 1024)} |"
    )
    lines += [
        "",
        f"Worker VmHWM (peak RSS over its whole life, all runs): {mb(hwm_kb)}. Targets: export "
        f">= {TARGET_EXPORT:,} rows/s, server peak RSS < {TARGET_RSS_MB} MB, verify >= "
        f"{TARGET_VERIFY:,} rows/s.",
    ]
    report = "\n".join(lines) + "\n"
    print()
    print(report)
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(report)
    if args.keep or failed:
        print(f"scratch files kept in {var_dir}", file=sys.stderr)
    else:
        shutil.rmtree(var_dir, ignore_errors=True)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    seed_parser = sub.add_parser("seed")
    seed_parser.add_argument("--events", type=int, required=True)
    verify_parser = sub.add_parser("verify")
    verify_parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL"), help="PostgreSQL server to use"
    )
    parser.add_argument(
        "--workers", type=int, default=min(os.cpu_count() or 1, 4), help="verify_history workers"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--no-write", dest="write", action="store_false")
    args = parser.parse_args(argv)
    if args.command == "seed":
        print(json.dumps(seed(args.events)))
        return 0
    if args.command == "verify":
        print(json.dumps(verify_in_process(args.workers)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
