"""`make bench`: how fast the alias read is, next to the floor of the same server stack.

1. Scratch storage: a temporary MODELGATE_VAR_DIR (SQLite database, filesystem broker, logs).
   With DATABASE_URL set (PostgreSQL), a scratch database is created next to the one it names
   (needs CREATEDB) and dropped at the end; REDIS_URL, if set, is used as the broker as is.
2. migrate, then bench/seed.py: a user and N models x M versions with `production` and
   `staging` aliases, written through the registry services.
3. Web (gunicorn + uvicorn workers, deploy/gunicorn.conf.py), Celery worker and beat, started as
   deploy/run.py starts them, on a free port; then wait for /healthz.
4. wrk with bench/alias.lua: alias GET answered 200, alias GET answered 304 (If-None-Match), and
   the floor (/healthz), at each connection count, R repetitions, the three endpoints
   interleaved within each repetition so drifting noise hits them alike; each run starts once
   the services are idle, after a warm-up that verified the password in every web worker.
5. Medians, ratios against the targets, idle memory of web + worker + beat; printed, written to
   bench/results/latest.md and, with --write-docs, into docs/benchmarks.md.

Exits non-zero when wrk saw errors or non-2xx/3xx answers, or the server logged errors; missing
a target is reported, not a failure: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from report import ENDPOINTS, Report, WrkRun, update_docs
from stack import (
    PYTHON,
    ROOT,
    CpuMeter,
    Stack,
    free_port,
    manage,
    postgres_version,
    redact_url,
    scratch_database,
)

BENCH = Path(__file__).resolve().parent
LUA_SCRIPT = BENCH / "alias.lua"
RESULTS = BENCH / "results" / "latest.md"
DOCS = ROOT / "docs" / "benchmarks.md"
USERNAME = "bench"
# --before: the alias route served as before the lean lane (see --help).
BEFORE_ENV = {"MODELGATE_POLL_LEAN": "0"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", type=int, default=200, help="models to seed (200)")
    parser.add_argument("--versions", type=int, default=20, help="versions per model (20)")
    parser.add_argument(
        "--connections",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 8, 32],
        help="comma-separated wrk connection counts (1,8,32)",
    )
    parser.add_argument("--repetitions", type=int, default=3, help="runs per point (3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per endpoint")
    parser.add_argument("--idle", type=int, default=5, help="seconds idle before memory is read")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"update {DOCS.relative_to(ROOT)}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory and logs")
    parser.add_argument(
        "--before",
        action="store_true",
        help="also measure, interleaved, a second web server on the same data that serves the\n"
        "alias route as before the lean lane: through Django's ASGI handler, no 304s from\n"
        "memory, and on SQLite a database connection per request (MODELGATE_POLL_LEAN=0,\n"
        "MODELGATE_POLL_THREADS=0)",
    )
    return parser.parse_args(argv)


def wrk_version() -> str:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH; install it with:\n    apt-get install -y wrk")
    # `wrk -v` prints its version line and exits non-zero.
    output = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    first = output.splitlines()[0] if output else "wrk"
    return " ".join(first.split()[:2])


def machine(wrk: str) -> str:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (
        f"{len(os.sched_getaffinity(0))} CPUs{f' ({cpu})' if cpu else ''}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, {wrk}"
    )


def code_revision() -> str:
    """The commit measured, and whether the work tree differed from it."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    return commit + (" with uncommitted changes" if git("status", "--porcelain") else "")


def command_line(argv: list[str]) -> str:
    """The command as the user typed it, near enough: `make bench …` when make ran us."""
    if os.environ.get("MAKELEVEL"):
        command = "make bench" + (f" BENCH_ARGS={shlex.quote(shlex.join(argv))}" if argv else "")
    else:
        command = shlex.join([".venv/bin/python", "bench/run.py", *argv])
    if url := os.environ.get("DATABASE_URL"):
        command = f"DATABASE_URL={redact_url(url)} {command}"
    return command


def seed(env: dict[str, str], var_dir: Path, args: argparse.Namespace, password: str) -> dict:
    log = var_dir / "seed.log"
    manage(env, log, "migrate", "--no-input", "-v", "0")
    started = time.monotonic()
    with log.open("ab") as err:
        result = subprocess.run(
            [PYTHON, str(BENCH / "seed.py"), "--models", str(args.models),
             "--versions", str(args.versions), "--username", USERNAME, "--password", password],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"seeding failed:\n{log.read_text()[-4000:]}")
    summary = json.loads(result.stdout.decode().splitlines()[-1])
    summary["seconds"] = round(time.monotonic() - started, 1)
    return summary


def write_targets(base_url: str, authorization: str, paths: list[str], file: Path) -> None:
    """Fetch every alias's ETag, check it answers 304, and write the wrk targets file."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    lines = []
    for path in paths:
        conn.request("GET", path, headers={"Authorization": authorization})
        response = conn.getresponse()
        response.read()
        etag = response.getheader("ETag")
        if response.status != 200 or not etag:
            raise SystemExit(f"GET {path}: {response.status}, ETag {etag!r}; expected 200 + ETag")
        conn.request("GET", path, headers={"Authorization": authorization, "If-None-Match": etag})
        response = conn.getresponse()
        response.read()
        if response.status != 304:
            raise SystemExit(f"GET {path} with If-None-Match {etag}: {response.status}, not 304")
        lines.append(f"{path}\t{etag}\n")
    conn.close()
    file.write_text("".join(lines))


def warm_credentials(base_url: str, authorization: str, path: str, requests: int = 30) -> None:
    """Let every web worker verify the password once, one request at a time.

    A worker checks a Basic password (about a second of PBKDF2) on its first request and
    caches the result; 32 connections arriving at a cold worker would each check it at once
    and slow the runs after the warm-up. Fresh connections spread these requests over the
    workers.
    """
    url = urlsplit(base_url)
    for _ in range(requests):
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
        conn.request("GET", path, headers={"Authorization": authorization})
        conn.getresponse().read()
        conn.close()


def wrk(
    base_url: str,
    endpoint: str,
    connections: int,
    duration: int,
    targets: Path,
    authorization: str,
    server: Stack | None = None,
) -> WrkRun:
    """One wrk run; with `server`, also the CPU time its web processes spent per request."""
    command = [
        "wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{duration}s",
        "--timeout", "10s", "-s", str(LUA_SCRIPT), base_url,
        "--", endpoint, str(targets), authorization,
    ]  # fmt: skip
    cpu_before = server.cpu_seconds(only=("web",)) if server is not None else 0.0
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = server.cpu_seconds(only=("web",)) - cpu_before if server is not None else None
    lines = [line for line in result.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    # errors.status is the count wrk prints as "Non-2xx or 3xx responses".
    data = json.loads(lines[0].removeprefix("BENCH_JSON "))
    return WrkRun.from_wrk(endpoint, connections, data, web_cpu_seconds=cpu)


def measure(
    servers: dict[str, Stack], args: argparse.Namespace, targets: Path, authorization: str
) -> dict[str, list[WrkRun]]:
    """wrk runs against each server ("after", and "before" with --before), all interleaved."""
    first_path = targets.read_text().split("\t", 1)[0]
    for server in servers.values():
        warm_credentials(server.base_url, authorization, first_path)
        for endpoint in ENDPOINTS:
            wrk(
                server.base_url,
                endpoint,
                max(args.connections),
                args.warmup,
                targets,
                authorization,
            )
    runs: dict[str, list[WrkRun]] = {label: [] for label in servers}
    labels = list(servers)
    total = args.repetitions * len(args.connections) * len(ENDPOINTS) * len(servers)
    done = 0
    for repetition in range(args.repetitions):
        # Rotate the order too, so no endpoint (or server) always runs first after a change.
        shift = repetition % len(ENDPOINTS)
        order = ENDPOINTS[shift:] + ENDPOINTS[:shift]
        servers_order = labels[repetition % len(labels) :] + labels[: repetition % len(labels)]
        for connections in args.connections:
            for endpoint in order:
                for label in servers_order:
                    server = servers[label]
                    for each in servers.values():
                        each.wait_idle()
                    run = wrk(
                        server.base_url, endpoint, connections, args.duration, targets,
                        authorization, server,
                    )  # fmt: skip
                    server.check_alive()
                    runs[label].append(run)
                    done += 1
                    print(
                        f"  [{done:>2}/{total}] repetition {repetition + 1}  "
                        + (f"{label:>6}  " if len(servers) > 1 else "")
                        + f"{endpoint:>5}  {connections:>3} conns  "
                        f"{run.requests_per_second:>8.0f} req/s  "
                        f"p50 {run.latency_ms('p50'):6.2f} ms  "
                        f"web CPU {run.cpu_us_per_request or 0:5.0f} us/req"
                        + (f"  ERRORS {run.error_text()}" if run.error_count else ""),
                        flush=True,
                    )
    return runs


def run_benchmark(
    args: argparse.Namespace, argv: list[str], var_dir: Path, wrk_line: str
) -> Report:
    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(
            f"Warning: the machine is busy (load average {load_before:.2f}); figures will be noisy"
        )
    password = secrets.token_urlsafe(16)
    authorization = "Basic " + base64.b64encode(f"{USERNAME}:{password}".encode()).decode()
    env = {**os.environ, "MODELGATE_VAR_DIR": str(var_dir)}
    with ExitStack() as cleanup:
        if database_url := os.environ.get("DATABASE_URL"):
            database = postgres_version(database_url)
            env["DATABASE_URL"] = cleanup.enter_context(scratch_database(database_url))
        else:
            database = "SQLite (embedded)"
            # The embedded default used to read with a connection per request.
            BEFORE_ENV["MODELGATE_POLL_THREADS"] = "0"
        broker = "Redis" if os.environ.get("REDIS_URL") else "filesystem (kombu)"

        print(f"Seeding {args.models} models x {args.versions} versions in {var_dir} …")
        seeded = seed(env, var_dir, args, password)
        print(f"  {seeded['events']} events in {seeded['seconds']} s")

        server = Stack.start(env, var_dir, free_port())
        cleanup.callback(server.stop)
        server.wait_healthy()
        print(f"Web, worker and beat up on {server.base_url}; checking the ETags")
        servers = {"after": server}
        if args.before:
            servers["before"] = Stack.start(
                {**env, **BEFORE_ENV}, var_dir, free_port(), only=("web",), log_prefix="before-"
            )
            cleanup.callback(servers["before"].stop)
            servers["before"].wait_healthy()
            print(f"Web serving the alias route as before up on {servers['before'].base_url}")
        targets = var_dir / "targets.tsv"
        for each in servers.values():
            write_targets(each.base_url, authorization, seeded["paths"], targets)

        print(f"Measuring ({args.duration} s per run, after {args.warmup} s warm-up each):")
        cpu = CpuMeter.start(server, others=list(servers.values())[1:])
        runs = measure(servers, args, targets, authorization)
        foreign_cpu = cpu.foreign_share()

        time.sleep(args.idle)
        memory = server.memory()
        problems = []
        for each in servers.values():
            each.stop()
            problems += each.problem_lines()

    return Report(
        date=started,
        command=command_line(argv),
        machine=machine(wrk_line),
        code=code_revision(),
        load_before=load_before,
        foreign_cpu=foreign_cpu,
        database=database,
        broker=broker,
        models=args.models,
        versions=args.versions,
        alias_urls=len(seeded["paths"]),
        seed_seconds=seeded["seconds"],
        duration=args.duration,
        repetitions=args.repetitions,
        connections=args.connections,
        runs=runs["after"],
        memory=memory,
        server_problems=problems,
        before_runs=runs.get("before", []),
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    wrk_line = wrk_version()
    var_dir = Path(tempfile.mkdtemp(prefix="modelgate-bench-"))
    keep = args.keep
    try:
        report = run_benchmark(args, argv, var_dir, wrk_line)
        keep = keep or not report.ok
    except BaseException:
        keep = True
        raise
    finally:
        if keep:
            print(f"Scratch data and logs kept in {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)

    markdown = report.markdown()
    print()
    print(markdown)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(f"# Benchmark results\n\n{markdown}")
    print(f"Written to {RESULTS.relative_to(ROOT)}")
    if not report.ok:
        print("The run had errors (see above); results are not for the docs.")
        return 1
    if args.write_docs:
        update_docs(DOCS, markdown)
        print(f"Updated {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
