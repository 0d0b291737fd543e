"""Learn, in every web process, which models changed, without a message bus.

One daemon thread per process polls the event-chain head (a one-row primary-key read) every
MODELGATE_EVENT_WATCH_INTERVAL seconds, reads the ids of the models that the new events touched,
bumps those models' generations and resolves the futures of the requests waiting on them. It
works the same on SQLite and PostgreSQL and across any number of processes and machines; the
cost is one tiny query per interval per process, whatever the number of waiters.

It runs while somebody waits (long-polls) or while the poll path answers from memory (see
registry/api/polling.py), and stops a while after neither happened. What the poll path keeps in
memory carries the model's `token()` from before its database read; the memory is trusted only
while the token is unchanged and `fresh()` says the watcher has looked recently. A change
committed at time t is thus seen by every process at most MAX_LAG_INTERVALS intervals later,
usually within one.
"""

from __future__ import annotations

import asyncio
import contextlib
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
Token = tuple[int, int]

# Memory checked against the watcher is trusted for at most this many intervals after the start
# of the last check that succeeded: a stalled watcher (a slow database, a starved thread) makes
# the poll path read the database again instead of answering from what it remembers.
MAX_LAG_INTERVALS = 3
# How long the watcher keeps running after the last waiter left or the last answer from memory.
KEEP_ALIVE_SECONDS = 60.0


class ModelChangeWatcher:
    """Per-model generations and waiting futures, updated when events about a model commit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[int, set[Waiter]] = defaultdict(set)
        self._thread: threading.Thread | None = None
        # A model's generation grows with every change the watcher saw to it; the epoch grows
        # whenever nobody watched for a while (start, stop) or the log went back: what was
        # remembered under an older epoch may have missed changes.
        self._generations: dict[int, int] = {}
        self._epoch = 0
        # Grows with every bump of a generation or the epoch: a reader that saw it unchanged
        # across its database read knows no change was processed meanwhile.
        self.changes = 0
        # time.monotonic() at the start of the last check that succeeded (-inf: none yet).
        self._checked_at = float("-inf")
        self._wanted_until = 0.0

    def waiting(self) -> int:
        with self._lock:
            return sum(len(waiters) for waiters in self._waiters.values())

    def token(self, model_id: int) -> Token:
        """What a model's state read now is valid under: (epoch, the model's generation)."""
        with self._lock:
            return self._epoch, self._generations.get(model_id, 0)

    def token_since(self, model_id: int, changes: int) -> Token | None:
        """The model's token, if no change was processed since `changes` was read (before the
        database read whose result is to be remembered); else None: do not remember it."""
        with self._lock:
            if self.changes != changes:
                return None
            return self._epoch, self._generations.get(model_id, 0)

    def fresh(self) -> bool:
        """The watcher looked for changes recently enough to trust tokens."""
        lag = MAX_LAG_INTERVALS * settings.MODELGATE_EVENT_WATCH_INTERVAL
        return time.monotonic() - self._checked_at <= lag

    def touch(self) -> None:
        """Keep watching (for answers from memory), starting the thread if needed."""
        now = time.monotonic()
        if self._thread is not None and self._wanted_until - now > KEEP_ALIVE_SECONDS - 1:
            return  # touched within the last second: no need to take the lock
        with self._lock:
            self._wanted_until = now + KEEP_ALIVE_SECONDS
            self._ensure_thread()

    def register(self, model_id: int) -> Waiter:
        """Start watching a model; the caller re-reads its state after this, then awaits."""
        loop = asyncio.get_running_loop()
        waiter: Waiter = (loop, loop.create_future())
        with self._lock:
            self._waiters[model_id].add(waiter)
            self._ensure_thread()
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

    def sync(self, timeout: float = 5.0) -> bool:
        """Block until a check that started after this call has completed (tests, tools)."""
        asked = time.monotonic()
        self.touch()
        deadline = asked + timeout
        while time.monotonic() < deadline:
            if self._checked_at > asked:
                return True
            time.sleep(0.005)
        return False

    def quiesce(self, timeout: float = 5.0) -> None:
        """Stop watching once nobody waits, and wait for the thread to end (tests, shutdown):
        it must not outlive the database it reads."""
        with self._lock:
            self._wanted_until = 0.0
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _ensure_thread(self) -> None:  # with self._lock held
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="modelgate-watch", daemon=True)
            self._thread.start()

    def _new_epoch(self) -> None:  # with self._lock held
        self._epoch += 1
        self._generations.clear()
        self.changes += 1

    def _wake_all(self) -> None:
        with self._lock:
            self._new_epoch()
            woken = [waiter for waiters in self._waiters.values() for waiter in waiters]
        _resolve_all(woken)

    def _wake(self, model_ids: set[int]) -> None:
        with self._lock:
            for model_id in model_ids:
                self._generations[model_id] = self._generations.get(model_id, 0) + 1
            self.changes += 1
            woken = [w for model_id in model_ids for w in self._waiters.get(model_id, ())]
        _resolve_all(woken)

    def _keep_running(self) -> bool:
        with self._lock:
            if self._waiters or time.monotonic() < self._wanted_until:
                return True
            self._thread = None
            self._checked_at = float("-inf")
            self._new_epoch()  # from now on nobody sees changes: what is remembered is void
            return False

    def _check(self, last_seq: int) -> int:
        started = time.monotonic()
        seq = chain_head_seq()
        if seq > last_seq:
            changed: set[int] = {
                model_id
                for model_id in Event.objects.filter(seq__gt=last_seq, seq__lte=seq).values_list(
                    "model_id", flat=True
                )
                if model_id is not None
            }
            self._wake(changed)
        elif seq < last_seq:
            # The log went back (a restored database, a test flush): whatever the waiters saw
            # may be gone, so every one of them re-reads.
            self._wake_all()
        self._checked_at = started
        return seq

    def _run(self) -> None:
        interval = settings.MODELGATE_EVENT_WATCH_INTERVAL
        try:
            last_seq: int | None = None
            while last_seq is None:
                try:
                    started = time.monotonic()
                    last_seq = chain_head_seq()
                except Exception:
                    logger.exception("watching for registry changes failed; retrying")
                    connection.close()
                    time.sleep(interval)
                    if not self._keep_running():
                        return
            with self._lock:
                # Changes before the baseline were not seen: what was read before it is void.
                self._new_epoch()
                self._checked_at = started
            while True:
                time.sleep(interval)
                if not self._keep_running():
                    return
                try:
                    last_seq = self._check(last_seq)
                except Exception:
                    logger.exception("watching for registry changes failed; retrying")
                    connection.close()
        finally:
            connection.close()
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
                    self._checked_at = float("-inf")
                    self._new_epoch()


def _resolve_all(woken: list[Waiter]) -> None:
    for loop, future in woken:
        with contextlib.suppress(RuntimeError):  # that loop has closed (a test's, a worker's)
            loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


watcher = ModelChangeWatcher()
