"""`make run`: prepare the database, then run web, worker and beat together in the foreground.

Ctrl-C or SIGTERM stops all three; if one of them dies, the others are stopped too, so a broken
setup is visible at once instead of half-running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("MODELGATE_VAR_DIR", ROOT / "var"))
PYTHON = sys.executable


def manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, check=True)


def commands(var: Path) -> dict[str, list[str]]:
    """Web, and the Celery worker with beat embedded (`-B`: beat runs in a process the worker
    forks, sharing its memory, instead of a third interpreter loading Django on its own).

    MODELGATE_EMBEDDED_BEAT=0 runs beat as a process of its own, as deployments do (one beat
    beside any number of workers).
    """
    pool = os.environ.get("MODELGATE_WORKER_POOL", "threads")
    concurrency = os.environ.get("MODELGATE_WORKER_CONCURRENCY", "4")
    schedule = str(var / "celerybeat-schedule")
    worker = [
        PYTHON, "-m", "celery", "-A", "config", "worker",
        f"--pool={pool}", f"--concurrency={concurrency}", "--loglevel=INFO",
    ]  # fmt: skip
    beat = [
        PYTHON,
        "-m",
        "celery",
        "-A",
        "config",
        "beat",
        "--loglevel=INFO",
        "--schedule",
        schedule,
    ]
    web = [PYTHON, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "config.asgi:application"]
    if os.environ.get("MODELGATE_EMBEDDED_BEAT", "1") == "0":
        return {"web": web, "worker": worker, "beat": beat}
    return {"web": web, "worker+beat": [*worker, "--beat", "--schedule-filename", schedule]}


def main() -> int:
    VAR.mkdir(parents=True, exist_ok=True)
    manage("migrate", "--no-input", "-v", "0")
    manage("ensure_admin")
    manage("collectstatic", "--no-input", "-v", "0")

    children = {name: subprocess.Popen(cmd, cwd=ROOT) for name, cmd in commands(VAR).items()}
    host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000")
    print(f"Modelgate is starting on http://{host}:{port}/ (admin at /admin/); Ctrl-C stops it.")

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with status {child.returncode}; stopping the others.")
                exit_code = child.returncode or 1
                stopping = True
                break
        time.sleep(0.5)

    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 25
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
