"""The real MLflow server for bench/mlflow_compare.py: its own venv, the server, a REST client.

MLflow is installed from PyPI into bench/.mlflow-venv (gitignored), never into the project's
venv: the full `mlflow` package pulls in far more than Modelgate's dev extras allow, and the
version measured is pinned here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack import Memory, Stack, _parent_pids, _tree

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".mlflow-venv"
MLFLOW_REQUIREMENT = "mlflow==3.17.*"
# SQLAlchemy 2.1 drives postgresql:// URLs with psycopg (3), 2.0 with psycopg2: have both.
DRIVERS = ("psycopg[binary]", "psycopg2-binary")
API = "/api/2.0/mlflow/"

_PROBE = """
import json, mlflow, psycopg, psycopg2, sqlalchemy
from sqlalchemy.dialects import postgresql
print(json.dumps({"mlflow": mlflow.__version__, "sqlalchemy": sqlalchemy.__version__,
                  "driver": postgresql.dialect.driver}))
"""


def _probe(venv: Path) -> dict[str, str] | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    result = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    versions = json.loads(result.stdout.splitlines()[-1])
    wanted = MLFLOW_REQUIREMENT.removeprefix("mlflow==").removesuffix("*")
    return versions if versions["mlflow"].startswith(wanted) else None


def ensure_mlflow(venv: Path = VENV) -> dict[str, str]:
    """The venv with `mlflow server`, made (or repaired) on first use; returns the versions."""
    if versions := _probe(venv):
        return versions
    print(f"Installing {MLFLOW_REQUIREMENT} into {venv.relative_to(BENCH.parent)} (once) …")
    if not (venv / "bin" / "python").exists():
        # From the project's venv this makes a venv of the same base interpreter.
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         MLFLOW_REQUIREMENT, *DRIVERS],
        check=True,
    )  # fmt: skip
    if not (versions := _probe(venv)):
        raise SystemExit(f"{venv}: mlflow installed but not importable with its drivers")
    return versions


def default_workers(venv: Path = VENV) -> str:
    """What `mlflow server --help` says its default worker count is."""
    result = subprocess.run(
        [venv / "bin" / "mlflow", "server", "--help"], capture_output=True, text=True, check=False
    )
    text = " ".join(result.stdout.split())
    marker = "Number of worker processes to handle requests (default: "
    if marker in text:
        return text.split(marker, 1)[1].split(")", 1)[0]
    return "unknown"


# Processes of an `mlflow server` tree, by what their command line holds, in report order.
ROLES = (
    ("uvicorn workers", "multiprocessing.spawn"),
    ("uvicorn master", "-m uvicorn"),
    ("job runner + huey consumer", "_job_runner"),
    ("job runner + huey consumer", "huey_consumer"),
    ("`mlflow server` CLI", "mlflow server"),
)


def _role(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "other"
    for role, marker in ROLES:
        if marker in command:
            return role
    return "other"  # e.g. multiprocessing's resource tracker


@dataclass
class MlflowServer(Stack):
    """`mlflow server` and everything it forks, in a session of its own; logs to mlflow.log."""

    command: list[str] | None = None

    @classmethod
    def launch(
        cls, venv: Path, database_url: str, var_dir: Path, port: int, workers: int | None = None
    ) -> MlflowServer:
        """Start the server; `workers` None keeps MLflow's default worker count."""
        command = [
            str(venv / "bin" / "mlflow"), "server", "--backend-store-uri", database_url,
            "--host", "127.0.0.1", "--port", str(port),
            *(["--workers", str(workers)] if workers else []),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DJANGO_"))}
        with (var_dir / "mlflow.log").open("wb") as log:
            # cwd: the default artifact root (./mlartifacts) lands in the scratch directory.
            child = subprocess.Popen(
                command, cwd=var_dir, env=env, stdout=log, stderr=log, start_new_session=True
            )
        return cls(
            env=env,
            var_dir=var_dir,
            base_url=f"http://127.0.0.1:{port}",
            children={"mlflow": child},
            command=command,
        )

    def wait_healthy(self, timeout: float = 240) -> None:
        """MLflow creates its tables on the first start, then answers GET /health."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:  # refused, reset, or a timeout while it starts (URLError too)
                pass
            time.sleep(0.5)
        raise SystemExit(f"MLflow's /health did not answer in {timeout:.0f} s; see {self.var_dir}")

    def memory(self) -> dict[str, Memory]:
        """RSS and PSS of the server's processes, grouped by role."""
        parents = _parent_pids()
        groups: dict[str, list[int]] = {}
        for pid in _tree(self.children["mlflow"].pid, parents):
            groups.setdefault(_role(pid), []).append(pid)
        order = [role for role, _marker in ROLES] + ["other"]
        return {role: Memory.of(groups[role]) for role in dict.fromkeys(order) if role in groups}

    def stop(self, timeout: float = 25) -> None:
        """SIGTERM the whole session (the CLI does not pass it on), SIGKILL it after `timeout`."""
        child = self.children["mlflow"]
        try:
            os.killpg(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            child.poll()
            if not _tree(child.pid, _parent_pids())[1:] and child.returncode is not None:
                return
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


class ApiError(Exception):
    pass


def call(
    base_url: str,
    method: str,
    route: str,
    body: dict[str, Any] | None = None,
    *,
    query: str = "",
    authorization: str | None = None,
) -> dict[str, Any]:
    """One MLflow REST call (a new connection each time); raises ApiError on a non-2xx answer."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(
        f"{base_url}{API}{route}{'?' + query if query else ''}",
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise ApiError(f"{method} {route}: {exc.code} {detail}") from None


def create_models(base_url: str, names: Iterable[str], authorization: str | None = None) -> None:
    for name in names:
        call(
            base_url,
            "POST",
            "registered-models/create",
            {"name": name},
            authorization=authorization,
        )
