"""Verify the history: recompute every hash and link in seq order, and check the checkpoints.

One pass over the event table in ranges of seqs, each read in chunks of a few thousand seqs
(constant memory whatever the size of the log), hashed here or in worker processes and linked
in order, stopping at the first row that does not fit. Within a range, a helper thread hashes
one chunk while the next is read, so the database prepares it meanwhile. What it can tell
apart:

    missing     a sequence number is absent (a row was deleted)
    edited      a row's content no longer matches its hash, or a signed checkpoint (or the chain
                head) names another hash for that seq (rows rewritten with recomputed hashes)
    reordered   a row holds an intact event recorded at another seq (rows swapped), or its
                prev_hash does not link to the row before it
    tail_cut    a signed checkpoint, or the chain head, names a seq beyond the last event
    bad_checkpoint  a checkpoint whose signature does not verify with any configured key

The walk is bounded by the chain head read when it starts, so events appended meanwhile are
not half-seen; checkpoints are read before the head, so none of them can legitimately name a
seq beyond it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from django.db import connection

from registry.events import (
    CANONICAL_FIELDS,
    GENESIS_HASH,
    canonical_row,
    canonical_row_fast,
    event_timestamp,
)
from registry.history.checkpoints import checkpoint_as_dict, checkpoint_signature_valid
from registry.history.rows import json_text, pipelined, utc_text
from registry.models import Event, EventChainHead, EventCheckpoint

CHUNK_SIZE = 5000
RANGE_SIZE = 100_000
_ROW_FIELDS = (*CANONICAL_FIELDS, "hash")
_SEQ = 0
_PREV_HASH = len(CANONICAL_FIELDS) - 1
_HASH = len(CANONICAL_FIELDS)
_BEFORE = CANONICAL_FIELDS.index("before")
_AFTER = CANONICAL_FIELDS.index("after")

Progress = Callable[[int, int], None]  # (events checked, events to check)


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str
    detail: str


@dataclass
class Verdict:
    """What verify_history found: `ok`, or the first problem with its seq and kind."""

    ok: bool
    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: dict[str, Any] | None = None
    checkpoints: int = 0
    latest_checkpoint: dict[str, Any] | None = None
    problem: Problem | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        data["seconds"] = round(self.seconds, 3)
        return data

    def summary(self) -> str:
        if self.problem is None:
            return (
                f"history intact: {self.events} events (seq {self.first_seq or 0}.."
                f"{self.last_seq or 0}), {self.checkpoints} signed checkpoints"
            )
        problem = self.problem
        return f"history NOT intact: seq {problem.seq}: {problem.kind}: {problem.detail}"


class _Stop(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


@contextlib.contextmanager
def _closing(iterator: Iterator[Any]) -> Iterator[Iterator[Any]]:
    """Close a generator (the worker processes, the helper thread behind it) when the block
    ends."""
    try:
        yield iterator
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _event_chunks(start: int, end: int, chunk_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """The rows with start <= seq <= end in seq order, `chunk_size` seqs a query: each row
    CANONICAL_FIELDS then the stored hash, the time as canonical text where the database can
    format it, the snapshots as JSON text (decoded by _intact, which hashes them).

    Seqs are unique, so a query of `chunk_size` seqs holds at most that many rows (memory stays
    flat) and never sorts more. Plain queries, rather than one server-side cursor a range: no
    transaction held open, and PostgreSQL spends about a quarter less CPU on the same rows.
    """
    columns: list[Any] = list(_ROW_FIELDS)
    columns[CANONICAL_FIELDS.index("created_at")] = utc_text()
    columns[_BEFORE], columns[_AFTER] = json_text("before"), json_text("after")
    rows = Event.objects.order_by("seq").values_list(*columns)
    for low in range(start, end + 1, chunk_size):
        if chunk := list(rows.filter(seq__gte=low, seq__lte=min(low + chunk_size - 1, end))):
            yield chunk


def _decoded(row: tuple[Any, ...], seq: int | None, loads: Callable[[str], Any]) -> list[Any]:
    fields = list(row[:_HASH])
    if seq is not None:
        fields[_SEQ] = seq
    for index in (_BEFORE, _AFTER):
        if fields[index] is not None:
            fields[index] = loads(fields[index])
    return fields


def _intact(row: tuple[Any, ...], seq: int | None = None) -> bool:
    """Whether the row's content hashes to its stored hash (as recorded at `seq`, if given).

    orjson first, both to decode the snapshots and to write the canonical form; when that finds
    no match (orjson reads integers beyond 64 bits as floats, writes some floats otherwise, or
    refuses), the json module's exact path decides. A match of orjson's bytes is sound: bytes
    that hash to the stored hash are, short of a SHA-256 collision, the very bytes hashed when
    the event was written, so the row holds the values it held then.
    """
    expected = row[_HASH]
    try:
        fast = canonical_row_fast(_decoded(row, seq, orjson.loads))
    except (orjson.JSONDecodeError, TypeError):
        pass
    else:
        if hashlib.sha256(fast).hexdigest() == expected:
            return True
    exact = canonical_row(_decoded(row, seq, json.loads))
    return hashlib.sha256(exact).hexdigest() == expected


def _recorded_at(row: tuple[Any, ...]) -> int | None:
    """The seq an out-of-place but intact row was recorded at, if it can be told.

    A swapped row keeps its content, prev_hash and hash, which were computed for its original
    seq k: then the row after k still links to it (prev_hash == its hash) and the row before k
    has the hash it links to. Each gives a candidate for k, tried by recomputing the hash.
    Only called once, for the first bad row: two scans of the table are fine then.
    """
    candidates: set[int] = set()
    after = Event.objects.filter(prev_hash=row[_HASH]).values_list("seq", flat=True)
    candidates.update(seq - 1 for seq in after[:10])
    before = Event.objects.filter(hash=row[_PREV_HASH]).values_list("seq", flat=True)
    candidates.update(seq + 1 for seq in before[:10])
    candidates.discard(row[_SEQ])
    for seq in sorted(candidates):
        if _intact(row, seq):
            return seq
    return None


def _missing(expected: int, found: int | None) -> Problem:
    if found is None:
        return Problem(expected, "missing", f"no event with seq {expected}")
    gap = found - expected
    return Problem(
        expected,
        "missing",
        f"no event with seq {expected}"
        + (f" (nor the {gap - 1} after it)" if gap > 1 else "")
        + f"; the log goes on at seq {found}",
    )


def _unlinked(seq: int) -> Problem:
    return Problem(
        seq,
        "reordered",
        f"prev_hash does not link to the hash of seq {seq - 1} (rows reordered, or an "
        "earlier row rewritten with a recomputed hash)",
    )


def _unhashed(row: tuple[Any, ...]) -> Problem:
    """The problem of a row whose content does not hash: moved here from another seq, or edited.
    Reads the database (_recorded_at): only in the thread that owns the connection."""
    original = _recorded_at(row)
    if original is not None:
        return Problem(
            row[_SEQ], "reordered", f"the row holds the event recorded as seq {original}"
        )
    return Problem(row[_SEQ], "edited", "the row's content does not match its hash")


@dataclass
class _Range:
    """What one pass over seqs start..end found; the caller links it to the range before."""

    start: int
    end: int
    events: int = 0
    first_seq: int | None = None
    first_prev_hash: str | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    hashes: dict[int, str] = field(default_factory=dict)  # at the checkpoints' seqs
    problem: Problem | None = None


@dataclass
class _Walk:
    """A range's rows checked chunk by chunk, in order, in a thread that never reads the
    database: a row out of sequence, that does not hash, or does not link (in that order) stops
    it. `expected` and `prev_hash` are None until the first row (the caller links that one)."""

    found: _Range
    wanted: set[int]  # the seqs whose hashes the checkpoints name
    expected: int | None = None
    prev_hash: str | None = None
    unhashed: tuple[Any, ...] | None = None  # the row that did not hash, for _unhashed

    def check(self, rows: list[tuple[Any, ...]]) -> bool:
        """Check the next chunk; True once the walk has stopped."""
        found, wanted, intact = self.found, self.wanted, _intact
        if found.problem is not None or self.unhashed is not None:
            return True
        expected, prev_hash = self.expected, self.prev_hash
        for row in rows:
            seq = row[_SEQ]
            if expected is None:
                found.first_seq, found.first_prev_hash = seq, row[_PREV_HASH]
            elif seq != expected:
                found.problem = _missing(expected, seq)
                break
            if not intact(row):
                self.unhashed = row
                break
            if prev_hash is not None and row[_PREV_HASH] != prev_hash:
                found.problem = _unlinked(seq)
                break
            if seq in wanted:
                found.hashes[seq] = row[_HASH]
            prev_hash, expected = row[_HASH], seq + 1
            found.events += 1
        self.expected, self.prev_hash = expected, prev_hash
        return found.problem is not None or self.unhashed is not None


def verify_range(start: int, end: int, last_checkpoint_pk: int, chunk_size: int) -> _Range:
    """Hash and link every row with start <= seq <= end. Runs in worker processes too, so it
    reads everything it needs.

    The rows are hashed in a helper thread, a chunk at a time, while this thread fetches the
    next chunk: the database formats it meanwhile, on another CPU."""
    result = _Range(start, end)
    walk = _Walk(
        result,
        wanted=set(
            EventCheckpoint.objects.filter(
                pk__lte=last_checkpoint_pk, seq__gte=start, seq__lte=end
            ).values_list("seq", flat=True)
        ),
    )
    with _closing(pipelined(_event_chunks(start, end, chunk_size), walk.check)) as checked:
        for stopped in checked:
            if stopped:
                break
    if walk.unhashed is not None:
        result.problem = _unhashed(walk.unhashed)
    result.last_seq = walk.expected - 1 if walk.expected is not None else None
    result.last_hash = walk.prev_hash
    return result


def _checkpoint_line(checkpoint: EventCheckpoint) -> str:
    return f"the checkpoint signed at {event_timestamp(checkpoint.created_at)}"


def _ranges(head_seq: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size - 1, head_seq)) for start in range(1, head_seq + 1, size)]


def _walk(
    ranges: list[tuple[int, int]], last_checkpoint_pk: int, chunk_size: int, workers: int
) -> Iterator[_Range]:
    """verify_range over each range, in order: here, or in worker processes (spawned: a fresh
    interpreter with its own database connection, never a forked copy of this one's)."""
    if workers <= 1 or len(ranges) <= 1:
        for start, end in ranges:
            yield verify_range(start, end, last_checkpoint_pk, chunk_size)
        return
    from registry.history import workers as worker_entry

    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(ranges)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=worker_entry.setup,
        initargs=(connection.settings_dict["NAME"],),
    )
    futures = [
        pool.submit(worker_entry.verify_range, start, end, last_checkpoint_pk, chunk_size)
        for start, end in ranges
    ]
    try:
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def history_verify(
    *,
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
    range_size: int = RANGE_SIZE,
    workers: int = 1,
) -> Verdict:
    """Recompute every hash and link of the log, check every checkpoint; stop at the first fault.

    The log is walked in ranges of `range_size` seqs, each read in queries of `chunk_size` seqs
    (so the database never sorts more than a chunk, whatever its statistics say) and hashed a
    chunk behind the reads; with `workers` > 1 the ranges are hashed in that many processes and
    linked here in order.
    """
    started = time.monotonic()
    # Checkpoints first, then the head: every checkpoint read names a seq at or before it.
    last_checkpoint_pk = (
        EventCheckpoint.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    )
    head_row = EventChainHead.objects.filter(pk=1).values_list("seq", "hash").first()
    if head_row is None:  # only after a manual deletion or a test flush: the table decides
        head_row = Event.objects.order_by("-seq").values_list("seq", "hash").first() or (
            0,
            GENESIS_HASH,
        )
    head_seq, head_hash = head_row
    verdict = Verdict(ok=False, head={"seq": head_seq, "hash": head_hash})
    checkpoints = EventCheckpoint.objects.filter(pk__lte=last_checkpoint_pk).order_by("seq", "pk")
    expected, prev_hash = 1, GENESIS_HASH
    unmatched: list[EventCheckpoint] = []  # naming seqs the log does not have (so far)

    def check_checkpoints(found: _Range, before: int | None) -> None:
        for checkpoint in checkpoints.filter(seq__gte=found.start, seq__lte=found.end):
            if before is not None and checkpoint.seq >= before:
                break
            if checkpoint.seq not in found.hashes:
                unmatched.append(checkpoint)
                continue
            _check_checkpoint(checkpoint, checkpoint.seq, found.hashes[checkpoint.seq])
            verdict.checkpoints += 1
            verdict.latest_checkpoint = checkpoint_as_dict(checkpoint)

    walk = _walk(_ranges(head_seq, range_size), last_checkpoint_pk, chunk_size, workers)
    try:
        with _closing(walk):
            for found in walk:
                if found.first_seq is None:
                    continue  # nothing in this range: a gap, named by the next range or the end
                if found.first_seq != expected:
                    raise _Stop(_missing(expected, found.first_seq))
                problem = found.problem
                if problem is not None and problem.seq == found.first_seq:
                    raise _Stop(problem)
                if found.first_prev_hash != prev_hash:
                    raise _Stop(_unlinked(found.first_seq))
                check_checkpoints(found, problem.seq if problem else None)
                verdict.events += found.events
                if problem is not None:
                    raise _Stop(problem)
                prev_hash, expected = found.last_hash or prev_hash, (found.last_seq or 0) + 1
                if progress is not None:
                    progress(verdict.events, head_seq)
        last_seq = expected - 1
        pending = unmatched[0] if unmatched else checkpoints.filter(seq__gt=head_seq).first()
        if pending is not None:
            if not checkpoint_signature_valid(pending):
                raise _Stop(_bad_signature(pending))
            raise _Stop(
                Problem(
                    last_seq + 1,
                    "tail_cut",
                    f"{_checkpoint_line(pending)} names seq {pending.seq}, but the log ends "
                    f"at seq {last_seq}: {pending.seq - last_seq} events cut off",
                )
            )
        if last_seq < head_seq:
            raise _Stop(
                Problem(
                    last_seq + 1,
                    "tail_cut",
                    f"the chain head names seq {head_seq}, but the log ends at seq {last_seq}",
                )
            )
        if last_seq and prev_hash != head_hash:
            raise _Stop(
                Problem(
                    last_seq,
                    "edited",
                    "the chain head names another hash for this seq (the last rows were "
                    "rewritten with recomputed hashes)",
                )
            )
    except _Stop as stop:
        verdict.problem = stop.problem
    else:
        verdict.ok = True
    if progress is not None:
        progress(verdict.events, head_seq)
    if verdict.events:
        verdict.first_seq, verdict.last_seq = 1, verdict.events
    verdict.seconds = time.monotonic() - started
    return verdict


def _bad_signature(checkpoint: EventCheckpoint) -> Problem:
    return Problem(
        checkpoint.seq,
        "bad_checkpoint",
        f"{_checkpoint_line(checkpoint)} (key {checkpoint.key_id}) does not verify: forged, "
        "altered, or signed with a key that is no longer configured",
    )


def _check_checkpoint(checkpoint: EventCheckpoint, seq: int, row_hash: str) -> None:
    if not checkpoint_signature_valid(checkpoint):
        raise _Stop(_bad_signature(checkpoint))
    if checkpoint.seq != seq:  # only when seqs are not contiguous, which stopped earlier
        raise _Stop(Problem(checkpoint.seq, "missing", "a checkpoint names a seq that is absent"))
    if checkpoint.hash != row_hash:
        raise _Stop(
            Problem(
                seq,
                "edited",
                f"{_checkpoint_line(checkpoint)} names another hash for this seq (the chain "
                "was rewritten with recomputed hashes)",
            )
        )
