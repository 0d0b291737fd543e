"""`make cluster`: a production-like Modelgate on one machine, in the foreground.

Two web servers sharing one port (each its own gunicorn, like two replicas behind a load
balancer; the kernel spreads connections with SO_REUSEPORT), two Celery workers and one beat,
against PostgreSQL and a Redis of the cluster's own (so it can be restarted without touching any
other). Like an orchestrator, it restarts a process that dies: at once for web and workers, after
MODELGATE_CLUSTER_REDIS_DELAY seconds (default 10) for Redis, so an outage can be watched.

It writes its process ids to <var>/cluster.json for tools that inject faults (bench/soak.py).
Ctrl-C or SIGTERM stops everything.

Environment: DATABASE_URL (default postgres://root@127.0.0.1:5432/modelgate_cluster, created if
missing), MODELGATE_CLUSTER_REDIS_PORT (6391), HOST/PORT (127.0.0.1:8000),
MODELGATE_VAR_DIR (var/cluster), and every Modelgate setting.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    restart_delay: float = 0.5
    process: subprocess.Popen | None = None
    died_at: float | None = None
    restarts: int = 0
    log: Path | None = None

    def start(self) -> None:
        out = open(self.log, "ab") if self.log else None  # noqa: SIM115 (kept by the child)
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
        )
        self.died_at = None


@dataclass
class Cluster:
    var: Path
    children: list[Child] = field(default_factory=list)

    def state(self) -> dict[str, object]:
        return {
            child.name: {
                "pid": child.process.pid
                if child.process and child.process.poll() is None
                else None,
                "restarts": child.restarts,
            }
            for child in self.children
        }

    def write_state(self) -> None:
        path = self.var / "cluster.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state(), indent=2))
        tmp.replace(path)


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in the URL when it does not exist yet."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def wait_for_redis(port: int, timeout: float = 15.0) -> None:
    import redis

    deadline = time.monotonic() + timeout
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    while time.monotonic() < deadline:
        try:
            client.ping()
            return
        except redis.RedisError:
            time.sleep(0.1)
    raise SystemExit(f"Redis on port {port} did not start")


def main() -> int:
    var = Path(os.environ.get("MODELGATE_VAR_DIR", ROOT / "var" / "cluster")).resolve()
    var.mkdir(parents=True, exist_ok=True)
    (var / "logs").mkdir(exist_ok=True)
    redis_port = int(os.environ.get("MODELGATE_CLUSTER_REDIS_PORT", "6391"))
    database_url = os.environ.get(
        "DATABASE_URL", "postgres://root@127.0.0.1:5432/modelgate_cluster"
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "MODELGATE_VAR_DIR": str(var),
        "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "1"),
    }
    ensure_database(database_url)

    redis_dir = var / "redis"
    redis_dir.mkdir(exist_ok=True)
    redis = Child(
        "redis",
        # Like the Redis the issue has in mind: nothing kept on disk, so a restart loses every
        # queued message and the sweepers must make up for it.
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(redis_dir),
        ],
        env,
        restart_delay=float(os.environ.get("MODELGATE_CLUSTER_REDIS_DELAY", "10")),
        log=var / "logs" / "redis.log",
    )
    redis.start()
    wait_for_redis(redis_port)

    for args in (
        ["migrate", "--no-input", "-v", "0"],
        ["ensure_admin"],
        ["collectstatic", "--no-input", "-v", "0"],
    ):
        subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True)

    gunicorn = [PYTHON, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--reuse-port"]
    worker_pool = os.environ.get("MODELGATE_WORKER_POOL", "threads")
    worker_concurrency = os.environ.get("MODELGATE_WORKER_CONCURRENCY", "8")
    cluster = Cluster(var, [redis])
    for n in (1, 2):
        cluster.children.append(
            Child(
                f"web{n}",
                [*gunicorn, "config.asgi:application"],
                env,
                log=var / "logs" / f"web{n}.log",
            )
        )
    for n in (1, 2):
        cluster.children.append(
            Child(
                f"worker{n}",
                [
                    PYTHON,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "-n",
                    f"worker{n}@%h",
                    f"--pool={worker_pool}",
                    f"--concurrency={worker_concurrency}",
                    "--loglevel=INFO",
                ],
                env,
                log=var / "logs" / f"worker{n}.log",
            )
        )
    cluster.children.append(
        Child(
            "beat",
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--loglevel=INFO",
                "--schedule",
                str(var / "celerybeat-schedule"),
            ],
            env,
            log=var / "logs" / "beat.log",
        )
    )
    for child in cluster.children[1:]:
        child.start()
    cluster.write_state()
    host, port = env.get("HOST", "127.0.0.1"), env.get("PORT", "8000")
    print(
        f"Modelgate cluster on http://{host}:{port}/: 2 web, 2 workers, beat, Redis on "
        f"{redis_port}; logs in {var / 'logs'}; Ctrl-C stops it.",
        flush=True,
    )

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    while not stopping:
        changed = False
        now = time.monotonic()
        for child in cluster.children:
            if child.process is None or child.process.poll() is None:
                continue
            if child.died_at is None:
                child.died_at = now
                print(f"{child.name} exited ({child.process.returncode}); restarting", flush=True)
                changed = True
            elif now - child.died_at >= child.restart_delay:
                child.restarts += 1
                child.start()
                changed = True
        if changed:
            cluster.write_state()
        time.sleep(0.2)

    for child in reversed(cluster.children):
        if child.process is not None and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 25
    for child in cluster.children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
    (var / "cluster.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
