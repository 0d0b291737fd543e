"""gunicorn settings: ASGI workers (uvicorn) so long-polls wait without holding a thread."""

import multiprocessing
import os

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
