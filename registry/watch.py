"""Wake waiting requests when a model changes, in every web process, without a message bus.

One daemon thread per process polls the event-chain head (a one-row primary-key read) every
MODELGATE_EVENT_WATCH_INTERVAL seconds while anybody waits, reads the ids of the models that the
new events touched, and resolves the futures of the requests waiting on those models. It works
the same on SQLite and PostgreSQL and across any number of processes and machines; the cost is
one tiny query per interval per process, whatever the number of waiters.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict

from django.conf import settings
from django.db import connection

from registry.events import chain_head_seq
from registry.models import Event

logger = logging.getLogger(__name__)

Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]


class ModelChangeWatcher:
    """Futures keyed by model id, resolved when an event about that model is committed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[int, set[Waiter]] = defaultdict(set)
        self._thread: threading.Thread | None = None
        # Bumped before every wake: waiters woken together share one re-read per generation.
        self.generation = 0

    def waiting(self) -> int:
        with self._lock:
            return sum(len(waiters) for waiters in self._waiters.values())

    def register(self, model_id: int) -> Waiter:
        """Start watching a model; the caller re-reads its state after this, then awaits."""
        loop = asyncio.get_running_loop()
        waiter: Waiter = (loop, loop.create_future())
        with self._lock:
            self._waiters[model_id].add(waiter)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="modelgate-watch", daemon=True
                )
                self._thread.start()
        return waiter

    def unregister(self, model_id: int, waiter: Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(model_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[model_id]

    async def wait(self, waiter: Waiter, timeout: float) -> bool:
        """True when the model changed, False when `timeout` passed first."""
        try:
            await asyncio.wait_for(asyncio.shield(waiter[1]), timeout)
        except TimeoutError:
            return False
        return True

    def _wake_all(self) -> None:
        with self._lock:
            model_ids = set(self._waiters)
        self._wake(model_ids)

    def _wake(self, model_ids: set[int]) -> None:
        with self._lock:
            self.generation += 1
            woken = [w for model_id in model_ids for w in self._waiters.get(model_id, ())]
        for loop, future in woken:
            loop.call_soon_threadsafe(_resolve, future)

    def _run(self) -> None:
        interval = settings.MODELGATE_EVENT_WATCH_INTERVAL
        try:
            last_seq = chain_head_seq()
            while True:
                time.sleep(interval)
                with self._lock:
                    if not self._waiters:
                        self._thread = None
                        return
                try:
                    seq = chain_head_seq()
                    if seq > last_seq:
                        changed: set[int] = {
                            model_id
                            for model_id in Event.objects.filter(
                                seq__gt=last_seq, seq__lte=seq
                            ).values_list("model_id", flat=True)
                            if model_id is not None
                        }
                        last_seq = seq
                        self._wake(changed)
                    elif seq < last_seq:
                        # The log went back (a restored database, a test flush): whatever the
                        # waiters saw may be gone, so every one of them re-reads.
                        last_seq = seq
                        self._wake_all()
                except Exception:
                    logger.exception("watching for registry changes failed; retrying")
                    connection.close()
        finally:
            connection.close()
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


watcher = ModelChangeWatcher()
