"""Soak: drive a production-like cluster (deploy/cluster.py) with a mixed load, under faults.

For `--minutes` (10 by default) it runs, side by side:
- deployment bots polling the `production` alias of 20 models (ETag / 304, some long-polling);
- pipelines registering versions and setting tags through the MLflow routes;
- a requester and a reviewer taking versions to Production through approvals (the policy moves
  the alias, which wakes the long-polling bots);
- a webhook receiver subscribed to every event;
and injects two faults: `kill -9` of a Celery worker at one third of the run and of Redis at
two thirds (the cluster restarts both, Redis after 10 s).

It reports requests served, errors (the goal: no 5xx at all, except from /readyz while Redis is
down), events written against events delivered to the receiver, and memory at the start and end.

    python bench/soak.py [--minutes 10] [--port 8700]

Needs PostgreSQL on 127.0.0.1:5432 (database modelgate_soak, dropped and re-created) and
redis-server; the cluster's Redis runs on port 6392.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PG_ADMIN = "postgres://root@127.0.0.1:5432/postgres"
DB_NAME = "modelgate_soak"
DB_URL = f"postgres://root@127.0.0.1:5432/{DB_NAME}"
ADMIN_PASSWORD = "soak-admin-password"
USER_PASSWORD = "soak-user-password"
MODELS = [f"soak-model-{n:02d}" for n in range(20)]


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


class Receiver:
    """Counts webhook deliveries: event ids (payload `id`) and webhook-ids."""

    def __init__(self) -> None:
        self.event_ids: set[int] = set()
        self.webhook_ids: set[str] = set()
        self.received = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                payload = json.loads(body)
                with receiver.lock:
                    receiver.received += 1
                    receiver.webhook_ids.add(self.headers["webhook-id"])
                    if payload.get("id") is not None:
                        receiver.event_ids.add(int(payload["id"]))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a sender closing a kept-alive connection is not news

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Tally:
    """Responses by role and status; 5xx kept with their time and path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_role: dict[str, Counter[int]] = {}
        self.server_errors: list[tuple[float, str, int, str]] = []
        self.transport_errors: Counter[str] = Counter()

    def add(self, role: str, response: httpx.Response) -> None:
        with self.lock:
            self.by_role.setdefault(role, Counter())[response.status_code] += 1
            if response.status_code >= 500:
                path = response.request.url.path
                self.server_errors.append(
                    (time.time(), path, response.status_code, response.text[:200])
                )

    def failed(self, role: str, exc: Exception) -> None:
        with self.lock:
            self.transport_errors[f"{role}: {type(exc).__name__}"] += 1


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


def reset_database() -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [DB_NAME]
        )
        connection.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}"')
        connection.execute(f'CREATE DATABASE "{DB_NAME}"')


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """RSS and PSS (MB) of the processes and all their descendants."""
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    rss = pss = 0
    for pid in seen:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--redis-port", type=int, default=6392)
    parser.add_argument("--bots", type=int, default=12)
    parser.add_argument("--long-pollers", type=int, default=8)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "soak.md"))
    args = parser.parse_args()
    duration = args.minutes * 60

    var = ROOT / "var" / "soak"
    receiver = Receiver()
    reset_database()
    env = {
        **os.environ,
        "DATABASE_URL": DB_URL,
        "MODELGATE_VAR_DIR": str(var),
        "PORT": str(args.port),
        "HOST": "127.0.0.1",
        "MODELGATE_CLUSTER_REDIS_PORT": str(args.redis_port),
        "MODELGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MODELGATE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "REDIS_URL": f"redis://127.0.0.1:{args.redis_port}/0",
        "LOG_LEVEL": "WARNING",
    }
    cluster = subprocess.Popen(
        [PYTHON, "deploy/cluster.py"], cwd=ROOT, env=env, start_new_session=True
    )
    base = f"http://127.0.0.1:{args.port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or cluster.poll() is not None:
                raise SystemExit("the cluster did not become ready")
            time.sleep(0.5)
        return soak(args, env, base, var, receiver, duration, cluster)
    finally:
        os.killpg(cluster.pid, signal.SIGTERM)
        try:
            cluster.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)


def setup(env: dict[str, str], base: str, receiver: Receiver) -> dict[str, object]:
    """Users, a bot token, 20 models with a production alias, a policy, a subscription."""
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        f"for name in ('pipeline', 'reviewer'):\n"
        f"    User.objects.create_user(name, password='{USER_PASSWORD}')\n",
    )
    admin = httpx.Client(base_url=base, headers=basic("admin", ADMIN_PASSWORD), timeout=30)
    pipeline = httpx.Client(base_url=base, headers=basic("pipeline", USER_PASSWORD), timeout=30)
    for name in MODELS:
        pipeline.post("/api/v1/models/", json={"name": name}).raise_for_status()
        pipeline.post(
            f"/api/v1/models/{name}/versions/", json={"source": f"s3://soak/{name}/1"}
        ).raise_for_status()
        pipeline.put(f"/api/v1/models/{name}/aliases/production/", json={"version": 1})
        admin.patch(
            f"/api/v1/models/{name}/permissions/",
            json={
                "access_control_list": [
                    {"user_name": "reviewer", "permission_level": "CAN_MANAGE_PRODUCTION_VERSIONS"}
                ]
            },
        ).raise_for_status()
    admin.post(
        "/api/v1/policies/",
        json={
            "model": None,
            "target": "Production",
            "required_approvals": 1,
            "move_alias": "production",
        },
    ).raise_for_status()
    token = manage(env, "create_token", "pipeline", "--name", "bots", "--read-only")
    hook = admin.post("/api/v1/webhooks/", json={"url": receiver.url, "events": "*"})
    hook.raise_for_status()
    with psycopg.connect(DB_URL) as connection:
        row = connection.execute("SELECT max(seq) FROM registry_event").fetchone()
    return {"bot_token": token.strip().splitlines()[-1], "first_seq": row[0] if row else 0}


def soak(
    args: argparse.Namespace,
    env: dict[str, str],
    base: str,
    var: Path,
    receiver: Receiver,
    duration: float,
    cluster: subprocess.Popen,
) -> int:
    context = setup(env, base, receiver)
    tally = Tally()
    stop = threading.Event()
    redis_down: list[tuple[float, float | None]] = []
    state = json.loads((var / "cluster.json").read_text())
    pids = [entry["pid"] for name, entry in state.items() if name != "redis" and entry["pid"]]
    time.sleep(5)
    memory_start = memory_mb(pids)

    def bot(long_poll: bool) -> None:
        client = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {context['bot_token']}"}, timeout=70
        )
        etags: dict[str, str] = {}
        while not stop.is_set():
            name = random.choice(MODELS)
            headers = {"If-None-Match": etags[name]} if name in etags else {}
            params = {"wait": "20"} if long_poll and name in etags else {}
            try:
                response = client.get(
                    f"/api/v1/models/{name}/aliases/production/", headers=headers, params=params
                )
                tally.add("bot-longpoll" if long_poll else "bot", response)
                if response.status_code == 200:
                    etags[name] = response.headers["ETag"]
            except httpx.HTTPError as exc:
                tally.failed("bot", exc)
                time.sleep(0.2)
            if not long_poll:
                time.sleep(0.02)

    def registrar(n: int) -> None:
        client = httpx.Client(base_url=base, headers=basic("pipeline", USER_PASSWORD), timeout=30)
        mlflow = "/api/2.0/mlflow"
        while not stop.is_set():
            name = random.choice(MODELS)
            try:
                created = client.post(
                    f"{mlflow}/model-versions/create",
                    json={"name": name, "source": f"s3://soak/{name}/{time.time_ns()}"},
                )
                tally.add("register", created)
                if created.status_code == 200:
                    version = created.json()["model_version"]["version"]
                    tagged = client.post(
                        f"{mlflow}/model-versions/set-tag",
                        json={
                            "name": name,
                            "version": version,
                            "key": "validation",
                            "value": "passed",
                        },
                    )
                    tally.add("register", tagged)
            except httpx.HTTPError as exc:
                tally.failed("register", exc)
            stop.wait(0.5)

    def approver() -> None:
        requester = httpx.Client(
            base_url=base, headers=basic("pipeline", USER_PASSWORD), timeout=30
        )
        reviewer = httpx.Client(base_url=base, headers=basic("reviewer", USER_PASSWORD), timeout=30)
        while not stop.is_set():
            name = random.choice(MODELS)
            try:
                versions = requester.get(f"/api/v1/models/{name}/versions/")
                tally.add("approve", versions)
                latest = max(v["version"] for v in versions.json()["results"])
                made = requester.post(
                    "/api/v1/transition-requests/",
                    json={"model": name, "version": latest, "target": "Production"},
                )
                tally.add("approve", made)
                if made.status_code == 201:
                    decided = reviewer.post(
                        f"/api/v1/transition-requests/{made.json()['id']}/approve/",
                        json={"comment": "soak"},
                    )
                    tally.add("approve", decided)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                tally.failed("approve", exc)
            stop.wait(2.0)

    def readiness() -> None:
        client = httpx.Client(base_url=base, timeout=10)
        while not stop.is_set():
            try:
                tally.add("readyz", client.get("/readyz"))
            except httpx.HTTPError as exc:
                tally.failed("readyz", exc)
            stop.wait(1.0)

    threads = [threading.Thread(target=bot, args=(False,)) for _ in range(args.bots)]
    threads += [threading.Thread(target=bot, args=(True,)) for _ in range(args.long_pollers)]
    threads += [threading.Thread(target=registrar, args=(n,)) for n in range(2)]
    threads += [threading.Thread(target=approver), threading.Thread(target=readiness)]
    started = time.time()
    for thread in threads:
        thread.daemon = True
        thread.start()

    faults: list[str] = []
    stop.wait(duration / 3)
    state = json.loads((var / "cluster.json").read_text())
    os.kill(state["worker1"]["pid"], signal.SIGKILL)
    faults.append(f"{time.time() - started:.0f} s: kill -9 worker1 (pid {state['worker1']['pid']})")
    stop.wait(duration / 3)
    state = json.loads((var / "cluster.json").read_text())
    os.kill(state["redis"]["pid"], signal.SIGKILL)
    down_at = time.time()
    faults.append(f"{down_at - started:.0f} s: kill -9 redis (pid {state['redis']['pid']})")
    while not stop.is_set():
        state = json.loads((var / "cluster.json").read_text())
        if state["redis"]["pid"] and state["redis"]["restarts"] >= 1:
            break
        time.sleep(0.2)
    redis_down.append((down_at, time.time()))
    faults.append(f"{time.time() - started:.0f} s: redis restarted (empty)")
    stop.wait(max(0.0, started + duration - time.time()))
    stop.set()
    for thread in threads:
        thread.join(timeout=80)
    ended = time.time()

    # Every event after the subscription must reach the receiver, however long the sweepers take.
    with psycopg.connect(DB_URL, autocommit=True) as connection:
        written = {
            seq
            for (seq,) in connection.execute(
                "SELECT seq FROM registry_event WHERE seq > %s", [context["first_seq"]]
            )
        }
        drain_deadline = time.monotonic() + 240
        while time.monotonic() < drain_deadline:
            with receiver.lock:
                missing = written - receiver.event_ids
            if not missing:
                break
            time.sleep(1)
        states = dict(
            connection.execute("SELECT state, count(*) FROM webhooks_delivery GROUP BY state")
        )
    memory_end = memory_mb(
        [
            e["pid"]
            for n, e in json.loads((var / "cluster.json").read_text()).items()
            if n != "redis" and e["pid"]
        ]
    )
    with receiver.lock:
        delivered = written & receiver.event_ids
        duplicates = receiver.received - len(receiver.webhook_ids)

    def during_outage(moment: float) -> bool:
        return any(a - 1 <= moment <= (b or ended) + 5 for a, b in redis_down)

    unexpected = [e for e in tally.server_errors if not (e[1] == "/readyz" and during_outage(e[0]))]
    total = sum(sum(c.values()) for c in tally.by_role.values())
    lines = [
        f"# Soak: {args.minutes:g} minutes against `make cluster`",
        "",
        f"Command: `python bench/soak.py --minutes {args.minutes:g}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}).",
        "",
        "| what | result |",
        "|---|---|",
        f"| requests answered | {total} ({total / (ended - started):.0f}/s) |",
        f"| 5xx outside /readyz during the Redis outage | {len(unexpected)} |",
        f"| 5xx from /readyz during the outage | {len(tally.server_errors) - len(unexpected)} |",
        f"| transport errors | {dict(tally.transport_errors) or 0} |",
        f"| events written | {len(written)} |",
        f"| events delivered to the receiver | {len(delivered)} "
        f"(missing: {len(written - delivered)}) |",
        f"| deliveries by state | {states} |",
        f"| repeated deliveries (same webhook-id) | {duplicates} |",
        f"| memory web+workers+beat, start → end (RSS / PSS MB) | "
        f"{memory_start[0]:.0f} / {memory_start[1]:.0f} → "
        f"{memory_end[0]:.0f} / {memory_end[1]:.0f} |",
        "",
        "Faults: " + "; ".join(faults) + ".",
        "",
        "| role | responses by status |",
        "|---|---|",
        *[f"| {role} | {dict(sorted(c.items()))} |" for role, c in sorted(tally.by_role.items())],
    ]
    if unexpected:
        lines += ["", "Unexpected 5xx (first 10):", ""]
        lines += [
            f"- {time.strftime('%H:%M:%S', time.gmtime(t))} {p} {s}: {b}"
            for t, p, s, b in unexpected[:10]
        ]
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.output).write_text(report)
    ok = not unexpected and written == delivered
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
