"""`make bench-mlflow`: the same MLflow-registry workload against Modelgate and the real MLflow.

1. bench/.mlflow-venv: `mlflow==3.17.*` (the full package, with `mlflow server`) and the
   PostgreSQL drivers from PyPI, made on first use and reused after (bench/mlflow_server.py).
2. One PostgreSQL server for both (--postgres names its maintenance database): databases
   <prefix>_modelgate and <prefix>_mlflow (--database-prefix, by default a new random one per
   run, so runs by several people on one server never meet) created afresh, dropped at the end.
3. Modelgate: migrate, bench/seed.py (a user, N models x M versions with tags, aliases
   `production` and `staging`, through the registry services), then web + worker + beat as
   `make run` starts them (DATABASE_URL=…/<prefix>_modelgate, REDIS_URL), on a free port.
4. MLflow: `mlflow server --backend-store-uri postgresql://…/<prefix>_mlflow` with as many
   uvicorn workers as Modelgate has web workers (--mlflow-workers), on a free port, seeded
   through its REST API with the same models, versions, tags and aliases. Both then get W
   empty `bench-write-NNN` models for the create workload, so the reads and searches see the
   same data all along; both are checked to answer the reads alike.
5. wrk with bench/mlflow.lua: alias GET, get-latest-versions, registered-models/search
   (`name LIKE`), model-versions/search (`name=`) and model-versions/create, at each connection
   count, with one connection per request and with keep-alive, R repetitions; every measurement
   runs on both systems back to back, which one goes first alternating.
6. Medians, ratios Modelgate/MLflow against the issue's targets, errors, idle memory (RSS and
   PSS) of both deployments after seeding and after the load; printed, written to
   bench/results/mlflow_compare.md and, with --write-docs, into docs/benchmarks.md (its own
   delimited section).

Exits non-zero when Modelgate answered anything but 2xx, had socket errors or logged an error
(MLflow's errors are reported, not fatal); missing a target is reported, not a failure.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from mlflow_report import (
    DOCS_HEADING,
    MODES,
    SYSTEMS,
    WORKLOADS,
    Deployment,
    Measurement,
    Report,
    update_docs,
)
from mlflow_server import (
    VENV,
    ApiError,
    MlflowServer,
    call,
    create_models,
    default_workers,
    ensure_mlflow,
)
from report import WrkRun
from run import USERNAME, code_revision, machine, wrk_version
from run import seed as seed_modelgate
from stack import (
    ROOT,
    CpuMeter,
    Memory,
    Stack,
    _cpu_seconds,
    free_port,
    postgres_version,
    redact_url,
)

BENCH = Path(__file__).resolve().parent
LUA_SCRIPT = BENCH / "mlflow.lua"
RESULTS = BENCH / "results" / "mlflow_compare.md"
DOCS = ROOT / "docs" / "benchmarks.md"
SYSTEM_DATABASES = ("modelgate", "mlflow")
# The data of bench/seed.py, which seeds Modelgate; MLflow gets the same through its API.
MODEL_NAME = "bench-model-{:03d}"
VERSION_TAGS = {"validation": "passed", "framework": "sklearn"}
ALIASES = ("production", "staging")
WRITE_MODEL_NAME = "bench-write-{:03d}"
SEARCH_PREFIX = "bench-model-1"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/mlflow_compare.py",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--models", type=int, default=200, help="models to seed (200)")
    parser.add_argument("--versions", type=int, default=20, help="versions per model (20)")
    parser.add_argument(
        "--write-models", type=int, default=200, help="empty models the creates go to (200)"
    )
    parser.add_argument(
        "--connections",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 8, 32],
        help="comma-separated wrk connection counts (1,8,32)",
    )
    parser.add_argument("--repetitions", type=int, default=3, help="runs per point (3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per workload")
    parser.add_argument("--idle", type=int, default=5, help="seconds idle before memory is read")
    parser.add_argument(
        "--postgres",
        default="postgres://root@127.0.0.1:5432/postgres",
        help="a database on the PostgreSQL server to use (needs CREATEDB)",
    )
    parser.add_argument(
        "--database-prefix",
        default=None,
        help="databases <prefix>_modelgate and <prefix>_mlflow are made afresh and dropped "
        "(default: mlcompare_<random>, new each run)",
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Modelgate's broker")
    parser.add_argument(
        "--ports",
        type=lambda text: range(int(text.split("-")[0]), int(text.split("-")[1]) + 1),
        default=None,
        help="a port range FIRST-LAST for the two servers (default: any free port)",
    )
    parser.add_argument(
        "--mlflow-workers",
        type=int,
        default=None,
        help="MLflow's uvicorn workers (default: as many as Modelgate's web workers; 0: "
        "MLflow's own default)",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help=f"update {DOCS.relative_to(ROOT)}"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch directory, logs and databases"
    )
    args = parser.parse_args(argv)
    if args.versions < 2:
        parser.error("--versions must be at least 2 (production and staging differ)")
    prefix = args.database_prefix or f"mlcompare_{secrets.token_hex(4)}"
    if not prefix.replace("_", "").isalnum():
        parser.error("--database-prefix: letters, digits and underscores only")
    args.databases = {system: f"{prefix}_{system}" for system in SYSTEM_DATABASES}
    if args.mlflow_workers is None:
        args.mlflow_workers = modelgate_web_workers()
    return args


def modelgate_web_workers() -> int:
    """What deploy/gunicorn.conf.py starts: WEB_CONCURRENCY, else min(2, CPUs)."""
    return int(os.environ.get("WEB_CONCURRENCY", min(2, os.cpu_count() or 1)))


def pick_port(ports: range | None, taken: set[int]) -> int:
    """A free port, from `ports` when given."""
    if ports is None:
        return free_port()
    for port in ports:
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise SystemExit(f"no free port in {ports.start}-{ports.stop - 1}")


def command_line(argv: list[str]) -> str:
    if os.environ.get("MAKELEVEL"):
        return "make bench-mlflow" + (
            f" BENCH_ARGS={shlex.quote(shlex.join(argv))}" if argv else ""
        )
    return shlex.join([".venv/bin/python", "bench/mlflow_compare.py", *argv])


@contextmanager
def fresh_databases(
    admin_url: str, databases: dict[str, str], keep: bool
) -> Iterator[dict[str, str]]:
    """The two systems' databases, dropped if left over and created empty; their URLs."""
    import psycopg

    parts = urlsplit(admin_url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in databases.values():
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            # SQLAlchemy (MLflow) knows the scheme as postgresql://, dj-database-url both.
            system: urlunsplit(parts._replace(scheme="postgresql", path=f"/{name}"))
            for system, name in databases.items()
        }
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                for name in databases.values():
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed_mlflow(base_url: str, models: int, versions: int, threads: int = 8) -> float:
    """What bench/seed.py writes into Modelgate, through MLflow's REST API; returns seconds."""

    def one(index: int) -> None:
        # On a busy machine uvicorn's supervisor may kill a worker it finds unresponsive, and
        # the requests on it are lost; start that model over rather than guess what was written.
        name = MODEL_NAME.format(index)
        for attempt in range(3):
            try:
                write(name, index)
                return
            except OSError as exc:  # a dropped connection, not an error answer
                if attempt == 2:
                    raise
                print(f"  MLflow dropped a seeding request ({exc!r}); redoing {name}")
                with contextlib.suppress(OSError, ApiError):
                    call(base_url, "DELETE", "registered-models/delete", {"name": name})

    def write(name: str, index: int) -> None:
        call(
            base_url,
            "POST",
            "registered-models/create",
            {"name": name, "description": f"Benchmark model {index}."},
        )
        for number in range(1, versions + 1):
            call(
                base_url,
                "POST",
                "model-versions/create",
                {
                    "name": name,
                    "source": f"s3://bench-artifacts/{name}/{number}",
                    "run_id": f"{index:04d}{number:028d}",
                    "description": f"Training run {number}.",
                    "tags": [{"key": key, "value": value} for key, value in VERSION_TAGS.items()],
                },
            )
        for alias, number in zip(ALIASES, (versions - 1, versions), strict=True):
            call(
                base_url,
                "POST",
                "registered-models/alias",
                {"name": name, "alias": alias, "version": str(number)},
            )

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(models)))
    return round(time.monotonic() - started, 1)


@dataclass(frozen=True)
class Target:
    """One system under load: where it listens and how requests authenticate."""

    name: str
    server: Stack
    authorization: str  # "-" for none
    database: str

    @property
    def auth(self) -> str | None:
        return None if self.authorization == "-" else self.authorization


class BackendCpu:
    """CPU time of one database's PostgreSQL backends over a span (a `with` block).

    Backends are found by the database name in their process title and sampled every 0.2 s, so
    one that exits mid-span (MLflow's connection pools close their overflow connections) still
    counts up to its last sample instead of taking its CPU time along.
    """

    def __init__(self, database: str) -> None:
        self._marker = f" {database} ".encode()
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _scan(self) -> dict[int, float]:
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"postgres:") and self._marker in title:
                found[int(entry.name)] = _cpu_seconds(int(entry.name))
        return found

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self._last.update(self._scan())

    def __enter__(self) -> BackendCpu:
        self._start = self._scan()
        self._last = dict(self._start)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._last.update(self._scan())

    @property
    def seconds(self) -> float:
        return sum(cpu - self._start.get(pid, 0.0) for pid, cpu in self._last.items())


def read_answers(target: Target, probe: str) -> dict[str, object]:
    """What the read workloads answer on one system, to check both hold the same data."""
    base, auth = target.server.base_url, target.auth
    alias = call(
        base,
        "GET",
        "registered-models/alias",
        query=urlencode({"name": probe, "alias": "production"}),
        authorization=auth,
    )
    latest = call(
        base, "POST", "registered-models/get-latest-versions", {"name": probe}, authorization=auth
    )
    models = call(
        base,
        "GET",
        "registered-models/search",
        query=urlencode({"filter": f"name LIKE '{SEARCH_PREFIX}%'", "max_results": 100}),
        authorization=auth,
    )
    versions = call(
        base,
        "GET",
        "model-versions/search",
        query=urlencode({"filter": f"name='{probe}'"}),
        authorization=auth,
    )
    return {
        "production": alias["model_version"]["version"],
        "latest": [v["version"] for v in latest.get("model_versions", [])],
        "models found": len(models.get("registered_models", [])),
        "versions found": len(versions.get("model_versions", [])),
        "tags": sorted(t["key"] for t in alias["model_version"].get("tags", [])),
    }


def wrk(
    target: Target, workload: str, connections: int, duration: int, mode: str, names: Path
) -> WrkRun:
    command = [
        "wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{duration}s",
        "--timeout", "10s", "-s", str(LUA_SCRIPT),
        *(["-H", "Connection: close"] if mode == "close" else []),
        target.server.base_url, "--", workload, str(names), target.authorization,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return WrkRun.from_wrk(workload, connections, json.loads(lines[0].removeprefix("BENCH_JSON ")))


def analyze(admin_url: str, databases: dict[str, str]) -> None:
    """VACUUM and ANALYZE both databases, as autovacuum would on a live server.

    Without statistics PostgreSQL plans for empty tables: MLflow's registered-model search then
    runs its latest-versions window query once per model-version row (15 s per request at 200 x
    20), and a server with autovacuum off, as a test database server may be, never recovers.
    Without vacuuming, every version created leaves a dead row version of its model behind (both
    systems update the model's update time), and the rows read most carry the longest chains.
    """
    import psycopg

    for name in databases.values():
        url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")


def settle(target: Target, admin: Any, timeout: float = 60) -> float:
    """Wait until the system is idle again; returns the seconds waited.

    A server still working through requests that wrk gave up on (or the Modelgate worker still
    publishing the events of a create run) would otherwise load the next measurement, which may
    be the other system's. Idle: its processes use under 15 % of a core over 0.3 s and no query
    is active in its database.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = target.server.cpu_seconds()
        time.sleep(0.3)
        busy = (target.server.cpu_seconds() - before) / 0.3
        active = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active'",
            (target.database,),
        ).fetchone()[0]
        if busy < 0.15 and active == 0:
            break
    return round(time.monotonic() - started, 1)


def measure(
    targets: dict[str, Target], files: dict[str, Path], args: argparse.Namespace
) -> list[Measurement]:
    import psycopg

    admin = psycopg.connect(args.postgres, autocommit=True)
    for workload in WORKLOADS:
        for target in targets.values():
            wrk(target, workload, max(args.connections), args.warmup, "keepalive", files[workload])
            settle(target, admin)
    measurements: list[Measurement] = []
    total = args.repetitions * len(MODES) * len(args.connections) * len(WORKLOADS) * 2
    pairs = 0
    for repetition in range(args.repetitions):
        # Rotate the workload order too, so none always runs first after a change of mode.
        shift = repetition % len(WORKLOADS)
        order = WORKLOADS[shift:] + WORKLOADS[:shift]
        analyze(args.postgres, args.databases)  # the creates grow the version tables
        for mode in MODES:
            for connections in args.connections:
                for workload in order:
                    systems = SYSTEMS if pairs % 2 == 0 else SYSTEMS[::-1]
                    pairs += 1
                    for system in systems:
                        target = targets[system]
                        with BackendCpu(target.database) as backends:
                            app = target.server.cpu_seconds()
                            names = files[workload]
                            run = wrk(target, workload, connections, args.duration, mode, names)
                            target.server.check_alive()
                            settled = settle(target, admin)
                            app = target.server.cpu_seconds() - app
                        measurements.append(
                            Measurement(system, mode, run, settled, app, backends.seconds)
                        )
                        cpu = app + backends.seconds
                        print(
                            f"  [{len(measurements):>3}/{total}] rep {repetition + 1} "
                            f"{mode:>9} {connections:>3} conns {workload:>15} {system:>9} "
                            f"{run.requests_per_second:>8.1f} req/s "
                            f"p50 {run.latency_ms('p50'):7.1f} ms  "
                            f"{1000 * cpu / max(1, run.requests):5.1f} CPU ms/req  "
                            f"idle after {settled:4.1f} s"
                            + (f"  ERRORS {run.error_text()}" if run.error_count else ""),
                            flush=True,
                        )
    admin.close()
    return measurements


class _Both:
    """The servers of both systems, for CpuMeter (which only asks for cpu_seconds())."""

    def __init__(self, *stacks: Stack) -> None:
        self.stacks = stacks

    def cpu_seconds(self) -> float:
        return sum(stack.cpu_seconds() for stack in self.stacks)


def _count(memory: dict[str, Memory], name: str, minus: int = 0) -> int:
    return memory[name].pids - minus if name in memory else 0


def run_comparison(
    args: argparse.Namespace, argv: list[str], var_dir: Path, wrk_line: str
) -> Report:
    versions = ensure_mlflow()
    workers_default = default_workers()
    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(f"Warning: the machine is busy (load average {load_before:.2f}); noisy figures")
    # Hex: a leading '-' would read as an option on seed.py's command line.
    password = secrets.token_hex(16)
    authorization = "Basic " + base64.b64encode(f"{USERNAME}:{password}".encode()).decode()
    (var_dir / "modelgate").mkdir()
    (var_dir / "mlflow").mkdir()

    with ExitStack() as cleanup:
        urls = cleanup.enter_context(fresh_databases(args.postgres, args.databases, args.keep))
        database = (
            f"{postgres_version(args.postgres)} at {urlsplit(args.postgres).netloc}, the same "
            f"server for both: databases {' and '.join(args.databases.values())}, created afresh"
        )
        ports: set[int] = set()
        mlflow = MlflowServer.launch(
            VENV,
            urls["mlflow"],
            var_dir / "mlflow",
            pick_port(args.ports, ports),
            workers=args.mlflow_workers or None,
        )
        cleanup.callback(mlflow.stop)
        print(f"MLflow {versions['mlflow']} starting; seeding Modelgate ({args.models} models x "
              f"{args.versions} versions) …")  # fmt: skip
        env = {
            **os.environ,
            "MODELGATE_VAR_DIR": str(var_dir / "modelgate"),
            "DATABASE_URL": urls["modelgate"],
            "REDIS_URL": args.redis,
        }
        seeded = seed_modelgate(env, var_dir / "modelgate", args, password)
        print(f"  Modelgate: {seeded['events']} events in {seeded['seconds']} s")
        modelgate = Stack.start(env, var_dir / "modelgate", pick_port(args.ports, ports))
        cleanup.callback(modelgate.stop)
        mlflow.wait_healthy()
        print(f"MLflow up on {mlflow.base_url}; seeding it through its REST API …")
        mlflow_seconds = seed_mlflow(mlflow.base_url, args.models, args.versions)
        print(f"  MLflow: {mlflow_seconds} s")
        modelgate.wait_healthy()
        targets = {
            "modelgate": Target("modelgate", modelgate, authorization, args.databases["modelgate"]),
            "mlflow": Target("mlflow", mlflow, "-", args.databases["mlflow"]),
        }
        write_names = [WRITE_MODEL_NAME.format(i) for i in range(args.write_models)]
        for target in targets.values():
            create_models(target.server.base_url, write_names, target.auth)
        analyze(args.postgres, args.databases)

        probe = MODEL_NAME.format(7 if args.models > 7 else 0)
        answers = {name: read_answers(target, probe) for name, target in targets.items()}
        if answers["modelgate"] != answers["mlflow"]:
            raise SystemExit(f"The two systems answer the reads differently: {answers}")
        print(f"Both answer alike: {answers['modelgate']}")
        files = write_name_files(var_dir, args.models, write_names, probe)

        time.sleep(args.idle)
        memory_after_seed = {name: t.server.memory() for name, t in targets.items()}
        runs = args.repetitions * len(MODES) * len(args.connections) * len(WORKLOADS) * 2
        minutes = (runs * (args.duration + 0.4) + len(WORKLOADS) * 2 * args.warmup) / 60
        print(f"Measuring: {runs} wrk runs of {args.duration} s, about {minutes:.0f} minutes:")
        cpu = CpuMeter.start(_Both(modelgate, mlflow))  # type: ignore[arg-type]
        measurements = measure(targets, files, args)
        foreign_cpu = cpu.foreign_share()

        time.sleep(args.idle)
        memory_after_load = {name: t.server.memory() for name, t in targets.items()}
        modelgate.stop()
        mlflow.stop()

    seed_memory = memory_after_seed["modelgate"]
    mlflow_memory = memory_after_seed["mlflow"]
    deployments = {
        "modelgate": Deployment(
            description=(
                f"gunicorn with {_count(seed_memory, 'web', minus=1)} uvicorn workers "
                "(deploy/gunicorn.conf.py defaults), Celery worker "
                f"(--pool={os.environ.get('MODELGATE_WORKER_POOL', 'threads')}, "
                f"--concurrency={os.environ.get('MODELGATE_WORKER_CONCURRENCY', '4')}) and beat, "
                "as `make run` starts them; Redis broker; HTTP Basic authentication (a Django "
                "user) on every request"
            ),
            memory_after_seed=seed_memory,
            memory_after_load=memory_after_load["modelgate"],
            problems=modelgate.problem_lines(),
        ),
        "mlflow": Deployment(
            description=(
                f"mlflow {versions['mlflow']} (SQLAlchemy {versions['sqlalchemy']}, driver "
                f"{versions['driver']}), `mlflow server --backend-store-uri "
                f"postgresql://…/{args.databases['mlflow']} --host 127.0.0.1 --port …"
                + (
                    f" --workers {args.mlflow_workers}`: as many request workers as Modelgate's"
                    if args.mlflow_workers
                    else "` with its default workers"
                )
                + f": uvicorn with {_count(mlflow_memory, 'uvicorn workers')} worker processes "
                f"(`--workers` default: {workers_default}), plus MLflow's job runner and its "
                "huey consumer; no authentication"
            ),
            memory_after_seed=mlflow_memory,
            memory_after_load=memory_after_load["mlflow"],
            problems=mlflow.problem_lines(),
        ),
    }
    return Report(
        date=started,
        command=command_line(argv),
        machine=machine(wrk_line),
        code=code_revision(),
        load_before=load_before,
        foreign_cpu=foreign_cpu,
        database=database,
        data=(
            f"{args.models} models x {args.versions} versions with tags, `production` on the "
            f"next-to-last version and `staging` on the last; Modelgate seeded through its "
            f"registry services by bench/seed.py ({seeded['seconds']} s), MLflow through its "
            f"REST API ({mlflow_seconds} s); the reads cycle through all {args.models} models; "
            f"registered-model search `name LIKE '{SEARCH_PREFIX}%'` with max_results=100 "
            f"({answers['modelgate']['models found']} models, each with its latest versions), "
            f"version search `name='{probe}'` ({answers['modelgate']['versions found']} "
            f"versions); creates go round-robin to {args.write_models} other models "
            f"(`{WRITE_MODEL_NAME.format(0)}` …), so the reads see the same data throughout"
        ),
        duration=args.duration,
        repetitions=args.repetitions,
        connections=args.connections,
        measurements=measurements,
        deployments=deployments,
    )


def write_name_files(
    var_dir: Path, models: int, write_names: list[str], probe: str
) -> dict[str, Path]:
    """The names file bench/mlflow.lua reads, per workload."""
    contents = {
        "reads": [MODEL_NAME.format(i) for i in range(models)],
        "writes": write_names,
        "search-models": [SEARCH_PREFIX],
        "search-versions": [probe],
    }
    paths = {}
    for name, lines in contents.items():
        paths[name] = var_dir / f"{name}.txt"
        paths[name].write_text("\n".join(lines) + "\n")
    return {
        "alias": paths["reads"],
        "latest": paths["reads"],
        "search-models": paths["search-models"],
        "search-versions": paths["search-versions"],
        "create": paths["writes"],
    }


DOCS_INTRO = """\
The same MLflow Model Registry workload against Modelgate's `/api/2.0/mlflow/` routes and
against the real `mlflow server`, on the same machine and the same PostgreSQL server, in one run:

```
make bench-mlflow                             # about 25 minutes; installs MLflow on first use
make bench-mlflow BENCH_ARGS="--write-docs"   # the same, then updates this section
# a shorter run while iterating (about 8 minutes), in your own databases, ports and Redis db:
make bench-mlflow BENCH_ARGS="--repetitions 1 --connections 8,32 --ports 8400-8499 \\
    --redis redis://127.0.0.1:6379/7 --database-prefix mine"
```

`bench/mlflow_compare.py` installs `mlflow==3.17.*` (the full package) into
`bench/.mlflow-venv` on first use, creates two databases `<prefix>_modelgate` and
`<prefix>_mlflow` afresh (`--database-prefix`; by default `mlcompare_<random>`, new for every run,
so two people benchmarking on one server never share or drop each other's databases), seeds both
systems with the same data (Modelgate with `bench/seed.py`, MLflow through its REST API), starts
Modelgate as `make run` does and MLflow with **as many uvicorn workers as Modelgate has web
workers** (`--mlflow-workers`, default: `WEB_CONCURRENCY`, else min(2, CPUs), which is what
`deploy/gunicorn.conf.py` starts; `0` keeps MLflow's own default of 4), so both serve requests
from the same number of processes; each system also runs its background processes (Modelgate:
Celery worker and beat; MLflow: its job runner and huey consumer). It checks that both answer the
reads alike, and runs wrk with `bench/mlflow.lua` on five workloads at 1, 8 and 32 connections,
with one connection per request and with keep-alive. Each measurement runs on both systems back
to back, the one going first alternating, 3 repetitions of 5 s; medians are shown.
Both databases are vacuumed and ANALYZEd after seeding and before each repetition, as
autovacuum would do (on a server with autovacuum off and no statistics, MLflow's registered-model
search plans for empty tables and takes about 15 s per request), and after each run the harness
waits until that system is idle again, so requests wrk gave up on never load the next
measurement.
Errors are socket errors and answers other than 2xx. Targets: alias GET and get-latest-versions
at least 5 times MLflow's throughput, registered-model search 10 times, version creation twice
with no error, judged at 8 and 32 connections with one connection per request (MLflow's
keep-alive path stalls about 40 ms per request, which flatters keep-alive ratios; both are shown).
Options: `--models`, `--versions`, `--write-models`, `--connections`, `--repetitions`,
`--duration`, `--warmup`, `--idle`, `--postgres`, `--database-prefix`, `--redis`, `--ports`,
`--mlflow-workers`, `--keep`, `--write-docs`.

### What Modelgate does on these routes

Database work per request (PostgreSQL):

- alias `GET`: one indexed query (the model's id and update time); the answer (ETag and body)
  is rendered once per update time of the model and kept; rendering it reads the alias's
  version and update times (which make the ETag), the version, its tags and aliases.
- `get-latest-versions`: one indexed query (the model's id and update time); the answer is
  rendered once per update time of the model (every change to its versions, their tags or its
  aliases moves it) and kept; rendering it reads the latest version per stage (one
  `DISTINCT ON` query), their tags and their aliases.
- `registered-models/search`: the chain head; after a change, the page of models, their tags,
  aliases, latest versions and those versions' tags: five queries whatever the page size.
- `model-versions/search`: the chain head; after a change, the page of versions and their tags.
- `model-versions/create`: the failed-login counter of the caller's address (one Redis `GET`
  on a client kept per process), the user behind the credentials (SQL compiled once), then the
  model and the caller's level in one query (prepared once per connection: planning its five
  branches cost PostgreSQL more than running them), then one prepared statement, its own
  transaction: the model's lock with its counter, the version's insert (and its tags), the
  chain-head lock (gated on the inserted row so it always comes after the model's), the event
  with the hash PostgreSQL computes from the canonical text the web process made around the
  values only the lock gives (seq, previous hash, version number), its outbox row and the new
  head. After the commit the web process
  queues a publishing task only when none is marked as queued on the chain head; the Celery
  worker hands the waiting events over in seq order and, while more keep coming, lingers 50 ms
  between passes (at most a second), so a stream of creates is published a few events per pass,
  not a task each, each batch in one savepoint (its CPU is counted as Modelgate's).

- Reads render JSON straight from `.values()` rows (no model instances, no serializers).
- The read routes trust a verified credential and a computed permission level for
  `MODELGATE_POLL_AUTH_TTL` seconds (2 by default), as the native alias poll does; writes check
  afresh.
- The searches keep their rendered answer per process, per caller, until the event chain's
  head moves (every change appends an event in its own transaction), for at most
  `MODELGATE_POLL_AUTH_TTL` seconds (registry.mlflow.answers). A repeated search then costs one
  primary-key query; the first search after a change costs the full search (registered-model
  search of 100 models: about 16 ms of CPU in the web process instead of about 57 ms before this
  work; 1.4 ms when kept). The workloads below read unchanged data, so the searches find kept
  answers: their ratios are those of repeated searches.
- Reads that recent permission levels would refuse are checked again with fresh levels, so a
  model created a moment ago is readable at once.
- Version creation holds the global chain-head lock only while PostgreSQL finishes the
  statement that takes it and commits: no round trip to the web process in between (there were
  five before this work, one in the run of 17:08 UTC); the chain stays strictly sequential (the
  hash is computed under the lock from the previous head, as before).
- Before this work (run of 2026-11-27 03:49 UTC, same harness, MLflow with 4 workers) Modelgate
  spent, per request, about 13 ms of CPU on an alias read or get-latest-versions, 46-69 ms on
  the registered-model search, 12-13 ms on the version search and 24-28 ms on a version
  creation, and still 17-19 ms on a creation in the run of 10:49 UTC (before the prepared
  statements, the lingering publisher and the writes' lane) and 6.5-7.0 ms in the run of 13:29
  UTC (2.0x MLflow's creations at 8 connections, 2.4x at 32; before the kept Redis client, the
  batch savepoint and the two-statement create); the run below shows the same column now.
  That run did not vacuum between repetitions, and on this server (autovacuum off) MLflow's
  creations slowed as dead row versions piled up (116 req/s at 8 connections, against about
  200 with the vacuuming): its 2.0x flattered Modelgate. The run of 16:12 UTC, with vacuuming
  and before the append carried the COMMIT, measured 1.8x at 8 connections and 2.8x at 32; the
  run of 17:08 UTC, with that COMMIT but before the one-statement creation, 2.1x and 2.4x.
- The reads (alias `GET`, `get-latest-versions`, the gets and the searches) take
  config/asgi.py's middleware lane ("How the alias read is served" above): no thread started
  per request, no request signals, the middleware hooks called in a row, the view on the poll
  path's pool of threads. Django's ASGI handler alone cost about 2.5 ms of CPU per request on
  this machine (uvicorn, a thread started per request for the request signals, the middleware),
  about a third of what MLflow spends on a whole alias read: that floor, not the views, kept the
  alias and get-latest-versions ratios near 2x. The writes take the same lane, on a pool of
  threads of their own (`MODELGATE_WRITE_THREADS`, 4 per web process) that hand their database
  connection back after each request.
"""


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    wrk_line = wrk_version()
    var_dir = Path(tempfile.mkdtemp(prefix="modelgate-vs-mlflow-"))
    keep = args.keep
    try:
        report = run_comparison(args, argv, var_dir, wrk_line)
        keep = keep or not report.ok
    except BaseException:
        keep = True
        raise
    finally:
        if keep:
            print(f"Scratch data and logs kept in {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)

    print()
    print(report.markdown("##"))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(f"# Modelgate vs MLflow server\n\n{report.markdown('##')}")
    print(f"Written to {RESULTS.relative_to(ROOT)}")
    if not report.ok:
        print("Modelgate had errors (see above); results are not for the docs.")
        return 1
    if args.write_docs:
        section = f"{DOCS_HEADING}\n\n{DOCS_INTRO}\n### Latest comparison\n\n"
        update_docs(DOCS, section + report.markdown("####"))
        print(f"Updated {DOCS.relative_to(ROOT)} (section “{DOCS_HEADING.lstrip('# ')}”)")
    return 0


if __name__ == "__main__":
    if url := os.environ.get("DATABASE_URL"):
        print(f"Note: DATABASE_URL ({redact_url(url)}) is not used; see --postgres.")
    sys.exit(main(sys.argv[1:]))
