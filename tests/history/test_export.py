"""Exports: JSON Lines and CSV, streamed, filtered, recorded, verifiable offline."""

from __future__ import annotations

import asyncio
import base64
import csv
import importlib.util
import io
import json
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.test import AsyncClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from accounts.actors import Actor
from registry import services
from registry.choices import Stage
from registry.history import export
from registry.history.checkpoints import checkpoint_create
from registry.history.rows import pipelined
from registry.models import Event
from registry.permissions import Level
from tests.history.conftest import build_history

pytestmark = pytest.mark.django_db

URL = "/api/v1/events/export/"
ROOT = Path(__file__).resolve().parents[2]


def body(response) -> bytes:
    assert response.streaming
    return b"".join(response.streaming_content)


def jsonl(response) -> tuple[list[dict], dict]:
    lines = [json.loads(line) for line in body(response).decode().splitlines()]
    return lines[:-1], lines[-1]["_manifest"]


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body(response).decode())))


def verify_export_module():
    spec = importlib.util.spec_from_file_location("verify_export", ROOT / "docs/verify_export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dated(clock, actor):
    """Two models, events a day apart from 2026-03-01 09:00 UTC (seq 1 … 16)."""
    model = build_history(actor)  # 12 events, then one a day
    for number, name in enumerate(["other", "third"]):
        clock.advance(days=1)
        other = services.model_create(name=name, actor=actor)
        clock.advance(days=1)
        services.version_create(model=other if number else model, source="s3://x", actor=actor)
    return model


def test_jsonl_export_has_every_event_and_a_manifest(auditor_api, history, actor):
    checkpoint_create()
    services.model_tag_set(model=history, key="k", value="v", actor=actor)  # seq 13

    response = auditor_api.get(URL, {"format": "jsonl"})
    rows, manifest = jsonl(response)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="modelgate-history-13.jsonl"'
    assert (response["X-Modelgate-Export-Through"], response["X-Modelgate-Export-Rows"]) == (
        "13",
        "13",
    )
    assert [row["seq"] for row in rows] == list(range(1, 14))
    assert list(rows[6]) == list(export.COLUMNS)
    stored = Event.objects.get(seq=7)
    assert rows[6] | {"before": None, "after": None} == {
        "seq": 7,
        "time": stored.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "type": "model_version.stage_transitioned",
        "outcome": "done",
        "actor": "alice",
        "actor_id": actor.user.pk,
        "token": "",
        "source": "shell",
        "client_ip": "",
        "request_id": "",
        "model": "fraud-scorer",
        "model_id": history.pk,
        "version": 1,
        "from_stage": "Staging",
        "to_stage": "Production",
        "alias": "",
        "comment": "",
        "before": None,
        "after": None,
        "prev_hash": stored.prev_hash,
        "hash": stored.hash,
    }
    assert (rows[6]["before"], rows[6]["after"]) == (stored.before, stored.after)
    assert rows[7]["alias"] == "production"
    last = Event.objects.get(seq=13)
    assert manifest | {"generated_at": None} == {
        "format": "jsonl",
        "filters": {
            "model": None,
            "version": None,
            "type": [],
            "actor": None,
            "since": None,
            "until": None,
        },
        "rows": 13,
        "first_seq": 1,
        "last_seq": 13,
        "head": {"seq": 13, "hash": last.hash},
        "checkpoint": {
            "seq": 12,
            "hash": Event.objects.get(seq=12).hash,
            "created_at": manifest["checkpoint"]["created_at"],
            "key_id": manifest["checkpoint"]["key_id"],
            "signature": manifest["checkpoint"]["signature"],
        },
        "export_event_seq": 14,
        "generated_at": None,
        "canonical_form": "sha256 of the sorted-key compact JSON described in docs/auditing.md",
    }


def test_an_export_is_recorded_before_its_rows_leave(auditor_api, auditor, history):
    response = auditor_api.get(URL, {"format": "csv", "model": "fraud", "type": "model_version.*"})

    recorded = Event.objects.get(type="history.exported")  # before the body is read
    assert response["X-Modelgate-Export-Event"] == str(recorded.seq)
    assert (recorded.seq, recorded.actor_name, recorded.model_id) == (13, "audrey", history.pk)
    assert recorded.after == {
        "format": "csv",
        "filters": {
            "model": "fraud",
            "version": None,
            "type": ["model_version.*"],
            "actor": None,
            "since": None,
            "until": None,
        },
        "rows": 0,
        "first_seq": None,
        "last_seq": None,
        "through_seq": 12,
    }
    assert csv_rows(response) == []


def test_row_counts_equal_the_database_for_a_time_range(auditor_api, dated):
    since, until = "2026-03-02T00:00:00Z", "2026-03-04T09:00:00Z"  # half-open
    expected = Event.objects.filter(
        created_at__gte="2026-03-02T00:00:00Z", created_at__lt="2026-03-04T09:00:00Z"
    )

    rows, manifest = jsonl(auditor_api.get(URL, {"since": since, "until": until}))
    table = csv_rows(auditor_api.get(URL, {"format": "csv", "since": since, "until": until}))

    assert expected.count() == 2  # seq 13 and 14; seq 15 is at the excluded bound
    assert [row["seq"] for row in rows] == list(expected.values_list("seq", flat=True))
    assert [int(row["seq"]) for row in table] == [row["seq"] for row in rows]
    assert (manifest["rows"], manifest["first_seq"], manifest["last_seq"]) == (2, 13, 14)
    assert manifest["filters"]["since"] == "2026-03-02T00:00:00.000000Z"
    assert manifest["filters"]["until"] == "2026-03-04T09:00:00.000000Z"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"model": "other"}, [13]),
        ({"model": "fraud"}, [*range(1, 13), 14]),  # its events under both names
        ({"model": "fraud-scorer"}, list(range(1, 11))),  # a past name: the events under it
        ({"version": "1"}, [2, 4, 5, 7, 16]),
        ({"type": "registered_model.created,model_version.created"}, [1, 2, 3, 13, 14, 15, 16]),
        ({"actor": "nobody"}, []),
        ({"model": "fraud", "version": "2", "type": "model_version.updated"}, [10]),
    ],
)
def test_export_filters(auditor_api, dated, query, expected):
    rows, manifest = jsonl(auditor_api.get(URL, query))

    assert [row["seq"] for row in rows] == expected
    assert manifest["rows"] == len(expected)


def test_exports_are_filtered_to_what_a_non_auditor_may_see(history, django_user_model, actor):
    other = services.model_create(name="other", actor=actor)  # seq 13
    reader = django_user_model.objects.create_user(username="rita", password="rita-pw-1")
    services.permissions_update(
        model=other, actor=Actor.system(), users={"rita": Level.CAN_READ}, groups={}
    )  # seq 14
    client = APIClient()
    client.force_authenticate(user=reader)

    rows, manifest = jsonl(client.get(URL))

    assert [row["seq"] for row in rows] == [13, 14]
    assert manifest["rows"] == 2
    assert Event.objects.filter(type="history.exported", actor_name="rita").count() == 1


def test_an_outsider_exports_nothing(outsider_api, history):
    rows, manifest = jsonl(outsider_api.get(URL))

    assert (rows, manifest["rows"]) == ([], 0)


def test_anonymous_callers_are_refused(anon, history):
    response = anon.get(URL)

    assert response.status_code == 401
    assert not Event.objects.filter(type="history.exported").exists()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"format": "xlsx"}, "format"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-03-01T00:00:00"}, "until"),
        ({"version": "0"}, "version"),
        ({"through": "x"}, "through"),
    ],
)
def test_bad_parameters_are_400_and_record_nothing(auditor_api, history, query, field):
    response = auditor_api.get(URL, query)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert field in response.json().get("fields", {})
    assert not Event.objects.filter(type="history.exported").exists()


# --- CSV ------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_that_would_start_a_formula_are_neutralised(prefix):
    assert export.csv_cell(f"{prefix}HYPERLINK(1)") == f"'{prefix}HYPERLINK(1)"


@pytest.mark.parametrize("value", ["plain", "", "x=1", "'quoted", 42, None])
def test_other_csv_cells_are_left_alone(value):
    assert export.csv_cell(value) == ("" if value is None else value)


def test_csv_export_neutralises_formulas_from_users(auditor_api, history, django_user_model):
    mallory = django_user_model.objects.create_user(username="@mallory", password="pw-123456")
    services.permissions_update(
        model=history, actor=Actor.system(), users={"@mallory": Level.CAN_MANAGE}, groups={}
    )
    version = history.versions.get(version=2)
    services.version_transition(
        version=version,
        stage=Stage.STAGING,
        actor=Actor(user=mallory),
        comment='=HYPERLINK("http://evil.example","click")',
    )
    services.version_tag_set(version=version, key="k", value="-1+1", actor=Actor(user=mallory))

    table = csv_rows(auditor_api.get(URL, {"format": "csv"}))

    moved, tagged = table[13], table[14]
    assert moved["actor"] == "'@mallory"
    assert moved["comment"] == '\'=HYPERLINK("http://evil.example","click")'
    assert (moved["from_stage"], moved["to_stage"]) == ("None", "Staging")
    assert json.loads(tagged["after"]) == {"key": "k", "value": "-1+1"}  # inside JSON: harmless
    for row in table:
        for value in row.values():
            assert not value.startswith(export.FORMULA_PREFIXES), value


def test_csv_manifest_is_the_companion_of_an_export(auditor_api, history, actor):
    checkpoint_create()
    response = auditor_api.get(URL, {"format": "csv"})
    through = response["X-Modelgate-Export-Through"]
    table = csv_rows(response)
    services.model_tag_set(model=history, key="later", value="x", actor=actor)  # moves the head

    manifest = auditor_api.get(URL, {"format": "csv", "manifest": "1", "through": through})

    assert manifest.status_code == 200
    document = manifest.json()["_manifest"]
    assert document["rows"] == len(table) == 12
    assert (document["first_seq"], document["last_seq"]) == (1, 12)
    assert document["head"] == {"seq": 12, "hash": Event.objects.get(seq=12).hash}
    assert document["checkpoint"]["seq"] == 12
    assert Event.objects.filter(type="history.exported").count() == 1  # the manifest is not


def test_csv_header_and_values(auditor_api, history):
    response = auditor_api.get(URL, {"format": "csv"})
    text = body(response).decode()

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert text.splitlines()[0] == ",".join(export.COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 12
    assert rows[0]["before"] == ""  # no snapshot: an empty cell
    assert json.loads(rows[0]["after"])["name"] == "fraud-scorer"


# --- rendering: the fast writers against the plain ones ------------------------------------

_TRICKY = st.text(alphabet=st.sampled_from([*"ab1 ,\"'\r\n\t=+-@{}:é\x00\x1f\u2028", "😀"]))
_TYPES = st.sampled_from(
    [
        "model_version.stage_transitioned",
        "model_version_alias.set",
        "transition_request.created",
        "transition_request.created_refused",
        "model.tag_set",
        "=formula.type",
    ]
)
_SNAPSHOT = st.one_of(
    st.none(),
    st.just(""),
    st.just("-1"),
    st.dictionaries(st.sampled_from(["stage", "alias", "target", "x"]), _TRICKY, max_size=3).map(
        json.dumps
    ),
)


def _fetched_rows():
    """Rows as a chunk query returns them (export._columns' order), with text that needs
    quoting, escaping or neutralising anywhere."""
    text, number = _TRICKY, st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
    optional = st.one_of(st.none(), _TRICKY)
    return st.lists(
        st.tuples(
            st.integers(1, 2**63 - 1),  # seq
            st.just("2026-03-03T09:00:00.000000Z"),
            _TYPES,
            *(text, number, text, text, text, text, text, number, number, text),
            *(optional, optional, optional, optional, optional, optional),  # the snapshot keys
            _SNAPSHOT,
            _SNAPSHOT,
            text,
            text,
        ),
        max_size=4,
    )


def _plain_jsonl(rows) -> bytes:
    """The JSON Lines writer as it was: the json module for the leading columns."""
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    lines = []
    for cells in export._table(rows):
        head = dict(zip(export.COLUMNS[:17], cells[:17], strict=True))
        before, after, prev_hash, hash = cells[17:]
        lines.append(
            f'{encode(head)[:-1]},"before":{before or "null"},"after":{after or "null"},'
            f'"prev_hash":{encode(prev_hash)},"hash":{encode(hash)}}}\n'
        )
    return "".join(lines).encode()


def _plain_csv(rows) -> bytes:
    """The CSV writer as it was: csv.writer, csv_cell on every cell but the hashes."""
    out = io.StringIO()
    writer = csv.writer(out)
    for cells in export._table(rows):
        writer.writerow([*map(export.csv_cell, cells[:19]), *cells[19:]])
    return out.getvalue().encode()


@hypothesis_settings(max_examples=400, deadline=None)
@given(rows=_fetched_rows())
def test_the_fast_writers_write_what_the_plain_ones_do(rows):
    assert export.render_rows(rows, "jsonl") == _plain_jsonl(rows)
    assert export.render_rows(rows, "csv") == _plain_csv(rows)


@pytest.mark.parametrize("text", ["a,b", 'say "hi"', "two\nlines", "cr\r", "", "plain", "é😀"])
def test_csv_field_quotes_as_csv_writer_does(text):
    out = io.StringIO()
    csv.writer(out).writerow(["x", text])
    assert f"x,{export.csv_field(text)}\r\n" == out.getvalue()


def test_pipelined_works_in_order_beside_the_reads():
    read, worked = [], []

    def items():
        for number in range(5):
            read.append(number)
            yield number

    def work(number):
        worked.append(number)
        return number * 10

    assert list(pipelined(items(), work)) == [0, 10, 20, 30, 40]
    assert read == worked == [0, 1, 2, 3, 4]


def test_pipelined_stops_reading_when_closed_and_raises_what_work_raised():
    read = []

    def items():
        for number in range(100):
            read.append(number)
            yield number

    results = pipelined(items(), lambda number: number)
    assert next(results) == 0
    results.close()
    assert len(read) <= 3  # the one worked on, the one read beside it, and no more

    def fail(number):
        raise ValueError(number)

    with pytest.raises(ValueError, match="0"):
        list(pipelined(iter(range(3)), fail))


def test_an_export_closed_early_leaves_the_connection_usable(auditor, history):
    plan = export.export_plan(
        viewer=Actor(user=auditor), format="jsonl", filters=export.ExportFilters()
    )
    stream = export.export_stream(plan, chunk_size=2)
    assert next(stream).count(b"\n") == 2
    stream.close()

    assert Event.objects.count() == 12


# --- offline verification -------------------------------------------------------------------


def test_a_jsonl_export_verifies_offline_with_the_docs_script(
    auditor_api, history, actor, tmp_path, settings
):
    checkpoint_create()
    services.model_tag_set(model=history, key="k", value="v", actor=actor)
    path = tmp_path / "export.jsonl"
    path.write_bytes(body(auditor_api.get(URL)))
    script = verify_export_module()

    ok, message = script.verify(str(path), key=settings.MODELGATE_CHECKPOINT_KEY)
    assert ok, message
    assert message == (
        "13 rows, seq 1..13, every hash recomputed; holds the head (seq 13); "
        "checkpoint of seq 12: signature verified"
    )
    assert script.main([str(path)]) == 0
    assert not script.verify(str(path), key="wrong")[0]

    lines = path.read_text().splitlines()
    edited = json.loads(lines[4])
    edited["comment"] = "edited"
    path.write_text("\n".join([*lines[:4], json.dumps(edited), *lines[5:]]) + "\n")
    assert script.verify(str(path)) == (False, "seq 5: edited (its fields do not match its hash)")

    path.write_text("\n".join([*lines[:4], *lines[5:]]) + "\n")  # a row dropped
    assert script.verify(str(path))[0] is False

    path.write_text("\n".join(lines[:-1]) + "\n")  # the manifest cut off
    assert script.verify(str(path))[0] is False


def test_a_filtered_export_verifies_its_rows_and_contiguous_runs(auditor_api, history, tmp_path):
    path = tmp_path / "export.jsonl"
    path.write_bytes(body(auditor_api.get(URL, {"version": "1"})))

    ok, message = verify_export_module().verify(str(path))

    assert ok, message
    assert message.startswith("4 rows, seq 2..7, every hash recomputed")


# --- streaming ------------------------------------------------------------------------------


def test_the_export_is_fetched_in_chunks(auditor_api, history, monkeypatch):
    fetched = []
    chunk = export.export_rows

    def spy(plan, cursor, size=export.CHUNK_SIZE):
        fetched.append(cursor.after)
        return chunk(plan, cursor, 5)

    monkeypatch.setattr(export, "export_rows", spy)
    rows, manifest = jsonl(auditor_api.get(URL))

    assert fetched == [0, 5, 10]  # keyset: seq > the last one sent, five at a time
    assert [row["seq"] for row in rows] == list(range(1, 13))
    assert manifest["rows"] == 12


def test_sparse_exports_widen_their_window(auditor_api, history, actor, monkeypatch):
    """A filter matching few events among many spans ever wider seq ranges per query, so it
    takes a few queries, not one per chunk size of the log; every query spans a bounded range."""
    other = services.model_create(name="other", actor=actor)  # seq 13
    for number in range(40):
        services.model_tag_set(model=history, key="k", value=str(number), actor=actor)
    services.model_tag_set(model=other, key="k", value="v", actor=actor)  # seq 54
    spans = []
    chunk = export.export_rows

    def spy(plan, cursor, size=export.CHUNK_SIZE):
        before = cursor.after
        rows = chunk(plan, cursor, 2)
        spans.append((before, cursor.after))
        return rows

    monkeypatch.setattr(export, "export_rows", spy)
    rows, _ = jsonl(auditor_api.get(URL, {"model": "other"}))

    assert [row["seq"] for row in rows] == [13, 54]
    assert spans == [(0, 2), (2, 10), (10, 42), (42, 54)]  # windows of 2, 8, 32, then the end


def test_under_asgi_the_export_is_an_async_stream(auditor, history):
    client = AsyncClient()
    client.force_login(auditor)

    response = async_to_sync(client.get)(URL, {"format": "jsonl"})

    assert response.status_code == 200
    assert response.is_async  # Django would buffer a sync iterator whole under ASGI

    async def read() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    lines = async_to_sync(read)().decode().splitlines()
    assert [json.loads(line)["seq"] for line in lines[:-1]] == list(range(1, 13))
    assert json.loads(lines[-1])["_manifest"]["rows"] == 12


@pytest.mark.django_db(transaction=True)
def test_under_asgi_rows_are_sent_while_later_chunks_are_still_unread(monkeypatch, actor_tx):
    """Through the real ASGI handler, two rows a chunk: the first body message leaves before the
    third chunk is fetched (the second is fetched while the first is rendered; a buffered
    response would fetch everything first)."""
    from config.asgi import application

    build_history(actor_tx)
    timeline: list[str] = []
    chunk = export.export_rows

    def spy(plan, cursor, size=export.CHUNK_SIZE):
        timeline.append(f"fetch {cursor.after}")
        return chunk(plan, cursor, 2)

    monkeypatch.setattr(export, "export_rows", spy)
    auth = "Basic " + base64.b64encode(b"alice:alice-password-1").decode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "query_string": b"format=jsonl",
        "headers": [(b"host", b"testserver"), (b"authorization", auth.encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    sent: list[dict] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if requests:
            return requests.pop()
        await asyncio.sleep(3600)  # the client stays connected; cancelled when the answer ends
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            timeline.append("send")

    async_to_sync(application)(scope, receive, send)

    assert sent[0]["status"] == 200
    assert timeline[0] == "fetch 0"
    assert timeline.index("send") < timeline.index("fetch 4")
    payload = b"".join(message.get("body", b"") for message in sent[1:])
    assert len(payload.decode().splitlines()) == 13  # 12 rows and the manifest


@pytest.fixture
def actor_tx(django_user_model) -> Actor:
    user = django_user_model.objects.create_superuser(
        username="alice", password="alice-password-1", email="a@example.com"
    )
    return Actor(user=user)


# --- the command ----------------------------------------------------------------------------


def test_export_history_command_writes_the_same_rows(history, tmp_path, auditor_api, auditor):
    path = tmp_path / "history.jsonl"
    err = io.StringIO()

    call_command("export_history", "--output", str(path), "--as", "audrey", stderr=err)

    lines = path.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines[:-1]] == list(range(1, 13))
    assert json.loads(lines[-1])["_manifest"]["rows"] == 12
    assert "100% 12/12 rows" in err.getvalue()
    assert "exported 12 events (seq 1..12, head 12); recorded as event 13" in err.getvalue()
    recorded = Event.objects.get(seq=13)
    assert (recorded.type, recorded.actor_name, recorded.source) == (
        "history.exported",
        "audrey",
        "shell",
    )
    ok, message = verify_export_module().verify(str(path))
    assert ok, message


def test_export_history_command_csv_with_filters_and_manifest_file(dated, tmp_path):
    path = tmp_path / "history.csv"

    call_command(
        "export_history",
        "--format",
        "csv",
        "--model",
        "fraud",
        "--since",
        "2026-03-01T00:00:00Z",
        "--until",
        "2026-03-05T00:00:00Z",
        "--output",
        str(path),
        "--no-progress",
        stderr=io.StringIO(),
    )

    rows = list(csv.DictReader(path.open()))
    assert [int(row["seq"]) for row in rows] == [*range(1, 13), 14]
    manifest = json.loads((tmp_path / "history.csv.manifest.json").read_text())["_manifest"]
    assert (manifest["rows"], manifest["first_seq"], manifest["last_seq"]) == (13, 1, 14)
    recorded = Event.objects.get(type="history.exported")
    assert (recorded.actor_name, recorded.after["filters"]["model"]) == ("system", "fraud")


def test_export_history_command_refuses_a_bad_format(history):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("export_history", "--since", "yesterday", stderr=io.StringIO())
    assert not Event.objects.filter(type="history.exported").exists()
