"""`make bench-webhooks`: how fast committed events reach a webhook receiver, and how many
deliveries per second the workers make.

1. A scratch PostgreSQL database next to the one DATABASE_URL names (created, dropped at the
   end), REDIS_URL as the broker (use a Redis database of its own), a scratch MODELGATE_VAR_DIR.
2. A receiver in this process: a small asyncio HTTP/1.1 server on 127.0.0.1 (keep-alive) that
   answers 200 at once and notes when each delivery arrived.
3. migrate, then bench/webhook_events.py: a superuser, a model, one registry-wide subscription
   to model tag sets at the receiver.
4. N `celery -A config worker` processes (2 by default) with the given pool and concurrency; no
   beat (nothing is retried or lost here).
5. A warm-up, then R repetitions of two measurements:
   - stream: E tag sets (1,000), each committed on its own, as fast as one writer can; the
     latency of each event is the time from its commit returning to its delivery arriving;
     throughput is E over the time from the first commit to the last arrival;
   - burst: E tag sets committed in one transaction; throughput is E over the time from the
     commit to the last arrival: how fast the workers drain a backlog.
   After each, every event must have arrived exactly once and every delivery SUCCEEDED.
6. Medians of the repetitions; targets: stream p50 under 1 s, at least 200 deliveries/s.

Exits non-zero when a delivery is missing, duplicated or not SUCCEEDED, or a worker logged an
error; missing a target is reported, not a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from stack import (
    PROBLEM_LINE,
    PYTHON,
    ROOT,
    _cpu_seconds,
    _parent_pids,
    _tree,
    machine_busy_seconds,
    manage,
    postgres_version,
    scratch_database,
)

BENCH = Path(__file__).resolve().parent
EVENTS_SCRIPT = BENCH / "webhook_events.py"
P50_TARGET_MS = 1000.0
RATE_TARGET = 200.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes")
    parser.add_argument("--pool", default="threads", help="worker pool: threads, prefork …")
    parser.add_argument("--concurrency", type=int, default=16, help="per worker process")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait per run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return parser.parse_args(argv)


class Receiver:
    """HTTP/1.1 keep-alive server answering 200 with no body; records (arrival time, body)."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.port = 0

        async def serve() -> None:
            server = await asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024)
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            async with server:
                await server.serve_forever()

        self.thread = threading.Thread(
            target=lambda: self.loop.run_until_complete(serve()), daemon=True
        )
        self.thread.start()
        started.wait(10)
        self.url = f"http://127.0.0.1:{self.port}/hook"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.arrivals.append((time.time(), body))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def take(self) -> list[tuple[float, bytes]]:
        arrivals, self.arrivals = self.arrivals, []
        return arrivals


@dataclass(frozen=True)
class Run:
    kind: str
    events: int
    commit_seconds: float  # first commit to last commit
    p50_ms: float
    p99_ms: float
    max_ms: float
    per_second: float  # deliveries over first commit → last arrival
    worker_cpu_ms: float  # CPU time of the worker processes per delivery
    database_cpu_ms: float  # CPU time of the PostgreSQL backends serving the scratch database
    others_share: float  # share of the machine's CPU time taken by processes not ours meanwhile


def events_command(env: dict[str, str], log: Path, *args: str) -> dict:
    with log.open("ab") as err:
        result = subprocess.run(
            [PYTHON, str(EVENTS_SCRIPT), *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"webhook_events.py {args[0]} failed:\n{log.read_text()[-4000:]}")
    return json.loads(result.stdout.decode().splitlines()[-1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def workers_cpu(workers: list[subprocess.Popen[bytes]]) -> float:
    parents = _parent_pids()
    return sum(_cpu_seconds(pid) for w in workers for pid in _tree(w.pid, parents))


def own_cpu() -> float:
    """CPU time of this process (the receiver) and its finished children (the committer)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def database_cpu(database: str) -> float:
    """CPU time of the PostgreSQL backends connected to `database` (a local server): their
    command lines read `postgres: <cluster>: <user> <database> <client> …`."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if args.startswith("postgres: ") and f" {database} " in args:
            total += _cpu_seconds(int(entry.name))
    return total


def measure(
    kind: str,
    env: dict[str, str],
    log: Path,
    receiver: Receiver,
    args: argparse.Namespace,
    workers: list[subprocess.Popen[bytes]],
) -> Run:
    receiver.take()
    database = urlsplit(env["DATABASE_URL"]).path.lstrip("/")
    cpu_before, busy_before, started = workers_cpu(workers), machine_busy_seconds(), time.time()
    database_before = database_cpu(database)
    own_before = own_cpu()
    extra = ["--one-transaction"] if kind == "burst" else []
    committed = events_command(env, log, "commit", "--events", str(args.events), *extra)
    commits = {seq: at for seq, at in committed["commits"]}
    if not receiver.wait_for(len(commits), args.timeout):
        raise SystemExit(
            f"{kind}: {len(receiver.arrivals)} of {len(commits)} deliveries arrived in "
            f"{args.timeout:.0f} s; see {log.parent}"
        )
    cpu = workers_cpu(workers) - cpu_before
    database_seconds = database_cpu(database) - database_before
    available = (time.time() - started) * (os.cpu_count() or 1)
    ours = cpu + database_seconds + own_cpu() - own_before
    others = max(0.0, machine_busy_seconds() - busy_before - ours) / available
    time.sleep(0.5)  # any duplicate would arrive now
    arrivals = receiver.take()
    ids = [json.loads(body)["id"] for _, body in arrivals]
    if sorted(ids) != sorted(commits):
        raise SystemExit(f"{kind}: received {len(ids)} deliveries, {len(set(ids))} distinct")
    checked = events_command(env, log, "check", "--since", str(committed["start"]))
    if checked["deliveries"] != {"SUCCEEDED": args.events} or checked["attempts"] != args.events:
        raise SystemExit(f"{kind}: unexpected delivery states {checked}")
    latencies = [(at - commits[json.loads(body)["id"]]) * 1000 for at, body in arrivals]
    first_commit = min(commits.values())
    last_arrival = max(at for at, _ in arrivals)
    return Run(
        kind=kind,
        events=args.events,
        commit_seconds=max(commits.values()) - first_commit,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        max_ms=max(latencies),
        per_second=args.events / (last_arrival - first_commit),
        worker_cpu_ms=cpu * 1000 / args.events,
        database_cpu_ms=database_seconds * 1000 / args.events,
        others_share=others,
    )


def start_workers(
    env: dict[str, str], var_dir: Path, args: argparse.Namespace
) -> list[subprocess.Popen[bytes]]:
    workers = []
    for n in range(args.workers):
        command = [
            PYTHON, "-m", "celery", "-A", "config", "worker",
            f"--pool={args.pool}", f"--concurrency={args.concurrency}",
            "--loglevel=INFO", "-n", f"bench-{n}-{uuid.uuid4().hex[:6]}@%h",
        ]  # fmt: skip
        with (var_dir / f"worker-{n}.log").open("wb") as log:
            workers.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
                )
            )
    deadline = time.monotonic() + 60
    for n, worker in enumerate(workers):
        while " ready." not in (var_dir / f"worker-{n}.log").read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() >= deadline:
                raise SystemExit(f"worker {n} did not start; see {var_dir}/worker-{n}.log")
            time.sleep(0.2)
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, 9)
            worker.wait()


def summary(runs: list[Run], kind: str) -> str:
    chosen = [run for run in runs if run.kind == kind]

    def med(name: str) -> float:
        return statistics.median(getattr(run, name) for run in chosen)

    def each(name: str, fmt: str) -> str:
        return ", ".join(format(getattr(run, name), fmt) for run in chosen)

    return (
        f"{kind:6}  p50 {med('p50_ms'):7.0f} ms  p99 {med('p99_ms'):7.0f} ms  "
        f"max {med('max_ms'):7.0f} ms  {med('per_second'):6.0f} deliveries/s  "
        f"CPU/delivery: workers {med('worker_cpu_ms'):.1f} ms, database "
        f"{med('database_cpu_ms'):.1f} ms  (commits took "
        f"{med('commit_seconds'):.2f} s; others took {med('others_share'):.0%} of the CPUs; "
        "runs: p50 "
        f"{each('p50_ms', '.0f')} ms, {each('per_second', '.0f')}/s)"
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not database_url or not redis_url:
        raise SystemExit(
            "set DATABASE_URL (PostgreSQL) and REDIS_URL (a Redis database of its own)"
        )
    var_dir = Path(tempfile.mkdtemp(prefix="modelgate-webhooks-"))
    log = var_dir / "events.log"
    ok = False
    with ExitStack() as stack:
        scratch = stack.enter_context(scratch_database(database_url))
        env = {
            **os.environ,
            "DATABASE_URL": scratch,
            "MODELGATE_VAR_DIR": str(var_dir),
            "MODELGATE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "MODELGATE_DB_POOL_MAX": str(max(20, args.concurrency + 4)),
        }
        receiver = Receiver()
        manage(env, log, "migrate", "--no-input", "-v", "0")
        events_command(env, log, "setup", "--url", receiver.url)
        workers = start_workers(env, var_dir, args)
        stack.callback(stop_workers, workers)
        print(
            f"{args.workers} workers --pool={args.pool} --concurrency={args.concurrency}; "
            f"{postgres_version(database_url)}; {os.cpu_count()} CPUs; "
            f"{args.events} events per run",
            flush=True,
        )
        warm = argparse.Namespace(**{**vars(args), "events": 200})
        measure("stream", env, log, receiver, warm, workers)
        runs = []
        for repetition in range(args.repetitions):
            for kind in ("stream", "burst"):
                time.sleep(1)
                run = measure(kind, env, log, receiver, args, workers)
                runs.append(run)
                print(
                    f"  {repetition + 1}. {kind:6}  p50 {run.p50_ms:6.0f} ms  p99 "
                    f"{run.p99_ms:6.0f} ms  {run.per_second:5.0f} deliveries/s  (commits "
                    f"{run.commit_seconds:.2f} s; CPU per delivery: workers "
                    f"{run.worker_cpu_ms:.1f} ms, database {run.database_cpu_ms:.1f} ms; others "
                    f"took {run.others_share:.0%} of the CPUs)",
                    flush=True,
                )
        problems = [
            f"worker-{n}: {line}"
            for n in range(args.workers)
            for line in (var_dir / f"worker-{n}.log").read_text(errors="replace").splitlines()
            if PROBLEM_LINE.search(line)
        ]
        ok = not problems
    print(f"\nmedians of {args.repetitions} runs of {args.events} events:")
    print("  " + summary(runs, "stream"))
    print("  " + summary(runs, "burst"))
    stream = [run for run in runs if run.kind == "stream"]
    p50 = statistics.median(run.p50_ms for run in stream)
    rate = statistics.median(run.per_second for run in runs if run.kind == "burst")
    burst = [run for run in runs if run.kind == "burst"]
    per_delivery = statistics.median(run.worker_cpu_ms + run.database_cpu_ms for run in burst)
    print(
        f"  workers + database: {per_delivery:.1f} ms of CPU per delivery, so at most about "
        f"{1000 / per_delivery:.0f} deliveries/s per CPU they have to themselves"
    )
    p50_met = "met" if p50 < P50_TARGET_MS else "NOT met"
    rate_met = "met" if rate >= RATE_TARGET else "NOT met"
    print(
        f"  targets: stream p50 < {P50_TARGET_MS:.0f} ms: {p50_met}; "
        f"≥ {RATE_TARGET:.0f} deliveries/s (burst): {rate_met}"
    )
    for line in problems[:20]:
        print("   ", line)
    if ok and not args.keep:
        shutil.rmtree(var_dir, ignore_errors=True)
    else:
        print(f"logs kept in {var_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
