"""verify_history: an intact log passes; each kind of tampering is found and named at its seq.

The tampering is raw SQL, as someone with database access would do it. On PostgreSQL it goes
past the append-only triggers (tests.conftest.history_writable); on SQLite there are none.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import transaction
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from registry import services, tasks
from registry.events import (
    canonical_row,
    canonical_row_fast,
    event_canonical,
    event_hash,
    event_record,
)
from registry.history.checkpoints import (
    checkpoint_create,
    checkpoint_key_id,
    checkpoint_signature_valid,
)
from registry.history.verify import history_verify
from registry.models import Event, EventChainHead, EventCheckpoint
from tests.history.conftest import tamper

pytestmark = pytest.mark.django_db


def problem(verdict) -> tuple[int, str] | None:
    return (verdict.problem.seq, verdict.problem.kind) if verdict.problem else None


def rehash_from(seq: int) -> None:
    """What a careful forger does after an edit: recompute every hash and link from `seq` on
    (the chain itself has no secret), and move the chain head along."""
    previous = Event.objects.get(seq=seq - 1).hash if seq > 1 else "0" * 64
    for event in Event.objects.filter(seq__gte=seq).order_by("seq"):
        event.prev_hash = previous
        event.hash = event_hash(event)
        tamper(
            "UPDATE registry_event SET prev_hash = %s, hash = %s WHERE seq = %s",
            [event.prev_hash, event.hash, event.seq],
        )
        previous = event.hash
    EventChainHead.objects.filter(pk=1).update(hash=previous)


def test_an_intact_history_verifies(history):
    checkpoint_create()

    verdict = history_verify()

    assert verdict.ok
    assert (verdict.events, verdict.first_seq, verdict.last_seq) == (12, 1, 12)
    assert verdict.head == {"seq": 12, "hash": Event.objects.get(seq=12).hash}
    assert verdict.checkpoints == 1
    assert verdict.latest_checkpoint["seq"] == 12
    assert verdict.problem is None


def test_an_empty_history_verifies(db):
    verdict = history_verify()

    assert verdict.ok
    assert (verdict.events, verdict.first_seq, verdict.last_seq) == (0, None, None)


def test_an_edited_field_is_named(history):
    tamper("UPDATE registry_event SET actor_name = 'mallory' WHERE seq = 7")

    verdict = history_verify()

    assert not verdict.ok
    assert problem(verdict) == (7, "edited")
    assert "does not match its hash" in verdict.problem.detail


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("comment", "nothing to see"),
        ("created_at", "2020-01-01 00:00:00"),
        ("after", '{"alias": "production", "version": 1}'),
        ("before", None),
        ("model_name", "other"),
        ("version", 9),
        ("type", "model_version.created"),
        ("request_id", "forged"),
    ],
)
def test_an_edit_of_any_recorded_field_is_found(history, column, value):
    tamper(f"UPDATE registry_event SET {column} = %s WHERE seq = 8", [value])  # noqa: S608

    assert problem(history_verify()) == (8, "edited")


def test_a_deleted_middle_row_is_named_missing(history):
    tamper("DELETE FROM registry_eventoutbox WHERE event_id = 5")
    tamper("DELETE FROM registry_event WHERE seq = 5")

    verdict = history_verify()

    assert problem(verdict) == (5, "missing")
    assert verdict.problem.detail == "no event with seq 5; the log goes on at seq 6"
    assert verdict.events == 4  # it stopped there


def test_several_deleted_rows_are_named_by_the_first(history):
    tamper("DELETE FROM registry_eventoutbox WHERE event_id BETWEEN 4 AND 6")
    tamper("DELETE FROM registry_event WHERE seq BETWEEN 4 AND 6")

    verdict = history_verify()

    assert problem(verdict) == (4, "missing")
    assert "nor the 2 after it" in verdict.problem.detail


def test_two_swapped_rows_are_named_reordered(history):
    # Each row keeps its content and hashes; they trade places in the sequence.
    tamper("DELETE FROM registry_eventoutbox WHERE event_id IN (3, 4)")
    tamper("UPDATE registry_event SET seq = -3 WHERE seq = 3")
    tamper("UPDATE registry_event SET seq = 3 WHERE seq = 4")
    tamper("UPDATE registry_event SET seq = 4 WHERE seq = -3")

    verdict = history_verify()

    assert problem(verdict) == (3, "reordered")
    assert verdict.problem.detail == "the row holds the event recorded as seq 4"


def test_distant_swapped_rows_are_named_reordered(history):
    tamper("DELETE FROM registry_eventoutbox WHERE event_id IN (2, 10)")
    tamper("UPDATE registry_event SET seq = -2 WHERE seq = 2")
    tamper("UPDATE registry_event SET seq = 2 WHERE seq = 10")
    tamper("UPDATE registry_event SET seq = 10 WHERE seq = -2")

    verdict = history_verify()

    assert problem(verdict) == (2, "reordered")
    assert verdict.problem.detail == "the row holds the event recorded as seq 10"


def test_a_rewritten_row_breaks_the_next_link(history):
    # The forger recomputes the edited row's hash but not the rest of the chain.
    event = Event.objects.get(seq=6)
    event.comment = "rewritten"
    tamper(
        "UPDATE registry_event SET comment = %s, hash = %s WHERE seq = 6",
        [event.comment, event_hash(event)],
    )

    verdict = history_verify()

    assert problem(verdict) == (7, "reordered")
    assert "prev_hash does not link to the hash of seq 6" in verdict.problem.detail


def test_a_rewritten_chain_is_caught_by_a_checkpoint(history):
    checkpoint_create()  # signs seq 12
    tamper("UPDATE registry_event SET comment = 'rewritten' WHERE seq = 6")
    rehash_from(6)

    verdict = history_verify()

    assert problem(verdict) == (12, "edited")
    assert "names another hash for this seq" in verdict.problem.detail


def test_a_rewritten_chain_without_the_head_is_caught_by_the_head(history):
    tamper("UPDATE registry_event SET comment = 'rewritten' WHERE seq = 6")
    head = EventChainHead.objects.get(pk=1).hash
    rehash_from(6)
    EventChainHead.objects.filter(pk=1).update(hash=head)

    assert problem(history_verify()) == (12, "edited")


def test_a_tail_cut_after_the_last_checkpoint_is_named(history, actor):
    checkpoint_create()  # signs seq 12
    tamper("DELETE FROM registry_eventoutbox WHERE event_id > 9")
    tamper("DELETE FROM registry_event WHERE seq > 9")
    # The forger also moves the chain head back: only the signed checkpoint remains.
    EventChainHead.objects.filter(pk=1).update(seq=9, hash=Event.objects.get(seq=9).hash)

    verdict = history_verify()

    assert problem(verdict) == (10, "tail_cut")
    assert "names seq 12, but the log ends at seq 9: 3 events cut off" in verdict.problem.detail


def test_a_tail_cut_is_named_from_the_head_without_a_checkpoint(history):
    tamper("DELETE FROM registry_eventoutbox WHERE event_id > 10")
    tamper("DELETE FROM registry_event WHERE seq > 10")

    verdict = history_verify()

    assert problem(verdict) == (11, "tail_cut")
    assert verdict.problem.detail == "the chain head names seq 12, but the log ends at seq 10"


def test_a_forged_checkpoint_is_named(history):
    checkpoint = checkpoint_create()
    tamper(
        "UPDATE registry_eventcheckpoint SET signature = %s WHERE id = %s",
        ["0" * 64, checkpoint.pk],
    )

    verdict = history_verify()

    assert problem(verdict) == (12, "bad_checkpoint")


def test_a_forged_checkpoint_beyond_the_log_is_named(history):
    checkpoint = checkpoint_create()
    tamper("UPDATE registry_eventcheckpoint SET seq = 40 WHERE id = %s", [checkpoint.pk])

    assert problem(history_verify()) == (40, "bad_checkpoint")


def test_checkpoints_verify_with_a_fallback_key_after_rotation(history, settings):
    old_key = settings.MODELGATE_CHECKPOINT_KEY
    checkpoint_create()
    settings.MODELGATE_CHECKPOINT_KEY = "a-new-key"

    assert problem(history_verify()) == (12, "bad_checkpoint")

    settings.MODELGATE_CHECKPOINT_KEY_FALLBACKS = [old_key]
    assert history_verify().ok


# --- checkpoints ----------------------------------------------------------------------------


def test_a_checkpoint_signs_the_head_once_until_it_moves(history, actor):
    first = checkpoint_create()
    again = checkpoint_create()
    services.model_tag_set(model=history, key="k", value="v", actor=actor)
    moved = checkpoint_create()

    assert (first.seq, first.hash) == (12, Event.objects.get(seq=12).hash)
    assert again is None
    assert moved.seq == 13
    assert EventCheckpoint.objects.count() == 2
    assert checkpoint_signature_valid(first)
    assert checkpoint_signature_valid(moved)


def test_a_checkpoint_is_an_hmac_of_seq_hash_and_time(history, settings):
    checkpoint = checkpoint_create()
    message = (
        f"modelgate-checkpoint/v1\n12\n{checkpoint.hash}\n"
        f"{checkpoint.created_at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
    ).encode()

    assert checkpoint.key_id == checkpoint_key_id(settings.MODELGATE_CHECKPOINT_KEY)
    assert (
        checkpoint.signature
        == hmac.new(settings.MODELGATE_CHECKPOINT_KEY.encode(), message, hashlib.sha256).hexdigest()
    )


def test_no_checkpoint_for_an_empty_log(db):
    assert checkpoint_create() is None
    assert not EventCheckpoint.objects.exists()


def test_no_checkpoint_when_the_head_disagrees_with_the_table(history, caplog):
    EventChainHead.objects.filter(pk=1).update(hash="f" * 64)

    assert checkpoint_create() is None
    assert not EventCheckpoint.objects.exists()
    assert "not signing a checkpoint" in caplog.text


def test_the_beat_task_writes_checkpoints(history, settings):
    schedule = settings.CELERY_BEAT_SCHEDULE["events-checkpoint"]

    assert schedule["task"] == "registry.tasks.checkpoint_create"
    assert schedule["schedule"] <= 600
    assert tasks.checkpoint_create.delay().get() == 12
    assert tasks.checkpoint_create.delay().get() is None  # the head has not moved


@pytest.mark.skipif(
    bool(os.environ.get("MODELGATE_CHECKPOINT_KEY")), reason="MODELGATE_CHECKPOINT_KEY is set"
)
def test_the_checkpoint_key_derives_from_secret_key_unless_set(settings):
    derived = hashlib.sha256(f"modelgate-checkpoint-key:{settings.SECRET_KEY}".encode())

    assert derived.hexdigest() == settings.MODELGATE_CHECKPOINT_KEY


# --- the command ----------------------------------------------------------------------------


def test_verify_history_command_exits_0_when_intact(history):
    out, err = io.StringIO(), io.StringIO()

    call_command("verify_history", stdout=out, stderr=err)

    assert out.getvalue().startswith("history intact: 12 events (seq 1..12), 0 signed checkpoints")


def test_verify_history_command_exits_1_naming_the_first_bad_seq(history):
    tamper("UPDATE registry_event SET comment = 'x' WHERE seq = 9")
    tamper("UPDATE registry_event SET comment = 'x' WHERE seq = 11")
    out = io.StringIO()

    with pytest.raises(SystemExit) as exit:
        call_command("verify_history", stdout=out, stderr=io.StringIO())

    assert exit.value.code == 1
    assert out.getvalue() == (
        "history NOT intact: seq 9: edited: the row's content does not match its hash\n"
    )


def test_verify_history_command_reports_progress_on_stderr(history):
    err = io.StringIO()

    call_command("verify_history", "--progress-every", "0.000001", stdout=io.StringIO(), stderr=err)

    assert "verified 12 of 12 events (100%)" in err.getvalue()


def test_verify_history_json_output(history):
    out = io.StringIO()
    tamper("DELETE FROM registry_eventoutbox WHERE event_id = 2")
    tamper("DELETE FROM registry_event WHERE seq = 2")

    with pytest.raises(SystemExit):
        call_command("verify_history", "--json", stdout=out, stderr=io.StringIO())

    verdict = json.loads(out.getvalue())
    assert verdict["ok"] is False
    assert verdict["problem"] == {
        "seq": 2,
        "kind": "missing",
        "detail": "no event with seq 2; the log goes on at seq 3",
    }


def test_verification_reads_in_chunks(history):
    """A small chunk size walks the same rows (queries of five seqs, hashed behind the reads)."""
    verdict = history_verify(chunk_size=5)

    assert verdict.ok
    assert verdict.events == 12


def test_a_time_on_a_whole_second_keeps_its_canonical_form(actor, monkeypatch):
    """`.000000` whether the database formats the time (PostgreSQL) or Python does (SQLite)."""
    monkeypatch.setattr("django.utils.timezone.now", lambda: datetime(2026, 3, 3, 12, tzinfo=UTC))
    services.model_create(name="m", actor=actor)
    monkeypatch.undo()

    assert b'"created_at":"2026-03-03T12:00:00.000000Z"' in event_canonical(Event.objects.get())
    assert history_verify().ok


# --- ranges and worker processes ------------------------------------------------------------


def _delete(where: str) -> None:
    events = f"SELECT seq FROM registry_event WHERE {where}"  # noqa: S608 (test constants)
    tamper(f"DELETE FROM registry_eventoutbox WHERE event_id IN ({events})")  # noqa: S608
    tamper(f"DELETE FROM registry_event WHERE {where}")  # noqa: S608


def _swap(a: int, b: int) -> None:
    tamper("DELETE FROM registry_eventoutbox WHERE event_id IN (%s, %s)", [a, b])
    tamper("UPDATE registry_event SET seq = -1 WHERE seq = %s", [a])
    tamper("UPDATE registry_event SET seq = %s WHERE seq = %s", [a, b])
    tamper("UPDATE registry_event SET seq = %s WHERE seq = -1", [b])


def _rewrite(seq: int) -> None:
    event = Event.objects.get(seq=seq)
    event.comment = "rewritten"
    tamper(
        "UPDATE registry_event SET comment = %s, hash = %s WHERE seq = %s",
        [event.comment, event_hash(event), seq],
    )


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda: None, None),
        (
            lambda: _delete("seq = 6"),
            (6, "missing", "no event with seq 6; the log goes on at seq 7"),
        ),
        (
            lambda: _delete("seq = 5"),
            (5, "missing", "no event with seq 5; the log goes on at seq 6"),
        ),
        (
            lambda: _delete("seq BETWEEN 6 AND 10"),
            (6, "missing", "no event with seq 6 (nor the 4 after it); the log goes on at seq 11"),
        ),
        (lambda: _swap(5, 6), (5, "reordered", "the row holds the event recorded as seq 6")),
        (lambda: _swap(2, 11), (2, "reordered", "the row holds the event recorded as seq 11")),
        (lambda: _rewrite(5), (6, "reordered", None)),  # the link into the next range
        (lambda: _rewrite(7), (8, "reordered", None)),  # a link inside a range
        (
            lambda: tamper("UPDATE registry_event SET comment = 'x' WHERE seq = 11"),
            (11, "edited", None),
        ),
        (lambda: _delete("seq > 10"), (11, "tail_cut", None)),
    ],
)
@pytest.mark.parametrize(("range_size", "chunk_size"), [(5, 5000), (100_000, 5000), (100_000, 2)])
def test_ranges_find_the_same_first_problem(history, damage, expected, range_size, chunk_size):
    """The walk in ranges (5 seqs: 1-5, 6-10, 11-12) links them as one chain; in chunks of two
    rows, each hashed while the next is read, it stops at the same row."""
    checkpoint_create()  # seq 12
    damage()

    verdict = history_verify(range_size=range_size, chunk_size=chunk_size)

    if expected is None:
        assert verdict.ok
        assert (verdict.events, verdict.checkpoints) == (12, 1)
        return
    seq, kind, detail = expected
    assert problem(verdict) == (seq, kind)
    if detail is not None:
        assert verdict.problem.detail == detail


def test_checkpoints_inside_ranges_are_checked(history, actor):
    checkpoint_create()  # seq 12
    services.model_tag_set(model=history, key="k", value="v", actor=actor)
    checkpoint_create()  # seq 13
    tamper("UPDATE registry_eventcheckpoint SET hash = %s WHERE seq = 12", ["0" * 64])

    verdict = history_verify(range_size=5)

    assert problem(verdict) == (12, "bad_checkpoint")


def test_progress_is_reported_per_range(history):
    seen = []

    history_verify(range_size=5, progress=lambda done, total: seen.append((done, total)))

    assert seen == [(5, 12), (10, 12), (12, 12), (12, 12)]


@pytest.mark.django_db(transaction=True)
def test_worker_processes_verify_the_same(actor_tx):
    """Ranges hashed in two spawned processes, linked in order here (committed data: the
    workers have their own connections)."""
    from tests.history.conftest import build_history

    build_history(actor_tx)
    checkpoint_create()

    assert history_verify(range_size=4, workers=2).ok

    tamper("UPDATE registry_event SET comment = 'x' WHERE seq = 10")
    verdict = history_verify(range_size=4, workers=2)
    assert problem(verdict) == (10, "edited")
    assert verdict.events == 9


@pytest.fixture
def actor_tx(django_user_model):
    from accounts.actors import Actor

    return Actor(user=django_user_model.objects.create_user(username="alice", password="pw-12345"))


# The fast path (orjson) and the exact one (the json module) of the hash check.

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _floats_in(value) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_floats_in(item) for item in value.values())
    if isinstance(value, list):
        return any(_floats_in(item) for item in value)
    return False


@hypothesis_settings(max_examples=300, deadline=None)
@given(after=st.dictionaries(st.text(max_size=8), _json_values, max_size=5), comment=st.text())
def test_the_fast_canonical_form_is_the_exact_one(after, comment):
    """Byte for byte alike without floats; with them, at least the same values (so a row the
    fast path does not match is one the exact path decides, never a different reading)."""
    row = [7, "model.created", "2026-03-03T09:00:00.000000Z", 1, "ann", None, "api"]
    row += ["127.0.0.1", "r-1", 3, "m", None, None, after, comment, "0" * 64]
    exact = canonical_row(row)
    try:
        fast = canonical_row_fast(row)
    except TypeError:  # an integer beyond 64 bits: orjson refuses, the exact path decides
        return
    if _floats_in(after):
        assert json.loads(fast) == json.loads(exact)
    else:
        assert fast == exact


def test_snapshots_orjson_reads_otherwise_still_verify(db, actor):
    """Integers beyond 64 bits (orjson reads them as floats, or refuses to write them) and a
    float it writes in another exponent form ("1e-7", not "1e-07"): the exact path confirms
    them. (No huge float: PostgreSQL's jsonb gives 1e300 back as a 301-digit integer, on
    either path; the registry's snapshots hold no floats.)"""
    with transaction.atomic():
        event_record(
            type="model.tag_set",
            actor=actor,
            model_name="odd-values",
            after={"big": 2**70, "negative": -(2**64) - 1, "tiny": 1e-07},
        )
    assert Event.objects.get().after["big"] == 2**70

    verdict = history_verify()

    assert verdict.ok, verdict.summary()
    assert verdict.events == 1


def test_an_edit_of_a_large_integer_is_found(db, actor):
    with transaction.atomic():
        event_record(type="model.tag_set", actor=actor, model_name="m", after={"n": 2**70})
    tamper(
        "UPDATE registry_event SET after = %s WHERE seq = 1",
        [json.dumps({"n": 2**70 + 1})],
    )

    assert problem(history_verify()) == (1, "edited")
