"""gunicorn settings: ASGI workers (uvicorn) so long-polls wait without holding a thread."""

import gc
import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", min(2, multiprocessing.cpu_count())))
worker_class = "uvicorn_worker.UvicornWorker"
# Long-polls hold a request for up to 60 s; the worker heartbeats from its event loop, so this
# timeout only catches a stuck loop.
timeout = 90
graceful_timeout = 20
keepalive = 5
# gunicorn's control socket defaults to one path per machine user, shared by every instance;
# Modelgate is managed by signals (make run, containers), so it needs none.
control_socket_disable = True
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# The application is imported once, in the master, before the workers fork: they share those
# pages (Django, DRF, the apps) instead of each loading a copy of its own, about 40 MB less for
# two workers (PSS). Nothing opens a connection or starts a thread at import; the workers make
# their own (database, poll pool, watcher) when first needed.
preload_app = True


def pre_fork(server, worker):
    """Move what the master built out of the collector's reach: a collection in a worker would
    otherwise write to (and so copy) every shared object it visits."""
    gc.freeze()


# /metrics sums what every worker recorded (config/metrics.py): prometheus_client's multiprocess
# mode, its files in a folder made for this run unless PROMETHEUS_MULTIPROC_DIR names one.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="modelgate-metrics-")
    os.environ["MODELGATE_METRICS_DIR_MADE"] = "1"


def on_starting(server):
    """Start from zero: files an earlier run left in a given folder would be summed too."""
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    """A dead worker's live gauges go (requests in progress); its counts stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if os.environ.get("MODELGATE_METRICS_DIR_MADE"):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
