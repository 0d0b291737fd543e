"""The system under test: scratch storage, and web + worker + beat started as `make run` does.

Only the standard library and psycopg (for a scratch PostgreSQL database) are used here, so
bench/run.py never imports Django: the server processes are the only ones that load it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Log lines worth showing after a run: errors, tracebacks and 5xx answers.
PROBLEM_LINE = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|Exception|\" 5\d\d ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redact_url(url: str) -> str:
    """The URL without its password, fit for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def scratch_database(database_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database next to the one DATABASE_URL names, dropped afterwards.

    Needs the CREATEDB privilege on that server. The database DATABASE_URL names is only
    connected to, never written.
    """
    import psycopg

    parts = urlsplit(database_url)
    if parts.scheme not in POSTGRES_SCHEMES:
        raise SystemExit(f"DATABASE_URL must be a PostgreSQL URL, not {redact_url(database_url)}")
    name = f"modelgate_bench_{secrets.token_hex(4)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_version(database_url: str) -> str:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0].split()[0]}" if row else "PostgreSQL"


def manage(env: dict[str, str], log: Path, *args: str) -> None:
    """Run a manage.py command, its output going to `log`; fail loudly with that log."""
    with log.open("ab") as out:
        result = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{log.read_text()[-4000:]}")


def commands(var_dir: Path) -> dict[str, list[str]]:
    """The processes `make run` starts (deploy/run.py's own list), pointed at `var_dir`."""
    spec = importlib.util.spec_from_file_location("modelgate_run", ROOT / "deploy" / "run.py")
    assert spec is not None
    assert spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    return run.commands(var_dir)


@dataclass
class Stack:
    """Web, worker and beat running against scratch storage; each logs to <var_dir>/<name>.log."""

    env: dict[str, str]
    var_dir: Path
    base_url: str
    children: dict[str, subprocess.Popen[bytes]]
    log_prefix: str = ""

    @classmethod
    def start(
        cls,
        env: dict[str, str],
        var_dir: Path,
        port: int,
        only: tuple[str, ...] | None = None,
        log_prefix: str = "",
    ) -> Stack:
        """The processes of `make run` (or the `only` ones); each logs to
        <var_dir>/<log_prefix><name>.log."""
        env = {**env, "HOST": "127.0.0.1", "PORT": str(port)}
        children = {}
        for name, command in commands(var_dir).items():
            if only is not None and name not in only:
                continue
            with (var_dir / f"{log_prefix}{name}.log").open("wb") as log:
                # A session of its own, so stopping it can reach every process it forked.
                children[name] = subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
                )
        return cls(
            env=env,
            var_dir=var_dir,
            base_url=f"http://127.0.0.1:{port}",
            children=children,
            log_prefix=log_prefix,
        )

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:  # refused while booting, or a read timing out on a busy machine
                pass
            time.sleep(0.2)
        raise SystemExit(f"/healthz did not answer within {timeout:.0f} s; see {self.var_dir}")

    def wait_idle(self, timeout: float = 30, window: float = 0.5) -> None:
        """Wait until the three use under 5% of a CPU: the last run's leftovers are done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self.cpu_seconds()
            time.sleep(window)
            if self.cpu_seconds() - before < 0.05 * window:
                return

    def check_alive(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                tail = self.log(name)[-4000:]
                raise SystemExit(f"{name} exited with status {child.returncode}:\n{tail}")

    def log(self, name: str) -> str:
        return (self.var_dir / f"{self.log_prefix}{name}.log").read_text(errors="replace")

    def problem_lines(self, limit: int = 60) -> list[str]:
        """Error, traceback and 5xx lines from the three logs, prefixed with the process name."""
        lines = [
            f"{self.log_prefix}{name}: {line}"
            for name in self.children
            for line in self.log(name).splitlines()
            if PROBLEM_LINE.search(line)
        ]
        return lines[:limit]

    def memory(self) -> dict[str, Memory]:
        """RSS and PSS of each process and everything it forked (gunicorn's workers)."""
        parents = _parent_pids()
        return {name: Memory.of(_tree(child.pid, parents)) for name, child in self.children.items()}

    def cpu_seconds(self, only: tuple[str, ...] | None = None) -> float:
        """CPU time used so far by the processes (or the `only` ones) and all they forked."""
        parents = _parent_pids()
        return sum(
            _cpu_seconds(pid)
            for name, child in self.children.items()
            if only is None or name in only
            for pid in _tree(child.pid, parents)
        )

    def stop(self, timeout: float = 25) -> None:
        """SIGTERM each process, as deploy/run.py does; SIGKILL its session after `timeout`."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


@dataclass(frozen=True)
class CpuMeter:
    """The share of the machine's CPU time that went to processes other than the benchmark's.

    Ours are the three services, wrk and this script; anything else (a test suite, a build)
    competes with them, and the figures are only comparable when this share is near zero.
    """

    stack: Stack
    started: float
    busy: float
    ours: float
    others: tuple[Stack, ...] = ()

    @classmethod
    def start(cls, stack: Stack, others: list[Stack] | None = None) -> CpuMeter:
        """`others`: more servers of the benchmark's own (bench/run.py --before)."""
        stacks = (stack, *(others or []))
        return cls(stack, time.monotonic(), machine_busy_seconds(), cls._ours(stacks), stacks[1:])

    @staticmethod
    def _ours(stacks: tuple[Stack, ...]) -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        waited = resource.getrusage(resource.RUSAGE_CHILDREN)  # the finished wrk runs
        servers = sum(stack.cpu_seconds() for stack in stacks)
        return servers + own.ru_utime + own.ru_stime + waited.ru_utime + waited.ru_stime

    def foreign_share(self) -> float:
        available = (time.monotonic() - self.started) * (os.cpu_count() or 1)
        ours = self._ours((self.stack, *self.others)) - self.ours
        foreign = (machine_busy_seconds() - self.busy) - ours
        return max(0.0, foreign) / available


@dataclass(frozen=True)
class Memory:
    pids: int
    rss_kb: int
    pss_kb: int | None  # None where /proc/<pid>/smaps_rollup cannot be read

    @classmethod
    def of(cls, pids: list[int]) -> Memory:
        rss = [_proc_field(pid, "status", "VmRSS") for pid in pids]
        pss = [_proc_field(pid, "smaps_rollup", "Pss") for pid in pids]
        return cls(
            pids=len(pids),
            rss_kb=sum(value or 0 for value in rss),
            pss_kb=None if None in pss else sum(value or 0 for value in pss),
        )

    @classmethod
    def total(cls, parts: list[Memory]) -> Memory:
        pss = [part.pss_kb for part in parts]
        return cls(
            pids=sum(part.pids for part in parts),
            rss_kb=sum(part.rss_kb for part in parts),
            pss_kb=None if None in pss else sum(value or 0 for value in pss),
        )


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy since boot, summed over its CPUs (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _parent_pids() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses; ppid follows the last ')'.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _tree(root: int, parents: dict[int, int]) -> list[int]:
    tree = [root]
    for pid in tree:
        tree.extend(child for child, parent in parents.items() if parent == pid)
    return tree


def _proc_field(pid: int, file: str, field: str) -> int | None:
    """A 'Field:   123 kB' value from /proc/<pid>/<file>, in kB."""
    try:
        text = Path(f"/proc/{pid}/{file}").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None
