"""The unmodified mlflow client against a live Modelgate: every registry method of MlflowClient.

The tests marked ``mlflow2`` also run with an MLflow 2.x client (``make test-mlflow2``, a second
venv with ``mlflow-skinny==2.22.*``): everything such a client does. Tests of MLflow 3 client
features are marked too, so that the 2.x run lists them as skipped with the reason; the tests
left unmarked check the server (event log, concurrency), not the client, and run once.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from packaging.version import Version

from accounts.actors import Source
from accounts.tokens import token_create
from registry.models import Event, ModelVersion, RegisteredModel

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

MLFLOW_VERSION = Version(mlflow.__version__)
mlflow2 = pytest.mark.mlflow2
needs_mlflow3 = pytest.mark.skipif(
    MLFLOW_VERSION.major < 3,
    reason=f"MLflow 3 client API; this client is mlflow {mlflow.__version__}",
)
needs_prompt_clause = pytest.mark.skipif(
    Version("2.21") > MLFLOW_VERSION,
    reason=f"clients append the prompt-tag clause since MLflow 2.21; this is {mlflow.__version__}",
)
API = "/api/2.0/mlflow/"


def error_code(excinfo: pytest.ExceptionInfo[MlflowException]) -> str:
    return excinfo.value.error_code


def names(models) -> list[str]:
    return [m.name for m in models]


def wire_post(http, route: str, body: dict) -> None:
    """Write what this client cannot send, as the pipeline user, straight to the MLflow routes."""
    response = http.post(API + route, json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content


# --- registered models ----------------------------------------------------------------------


@mlflow2
def test_create_get_update_rename_delete_registered_model(client):
    created = client.create_registered_model(
        "fraud", tags={"team": "risk"}, description="Scores card payments"
    )
    assert created.name == "fraud"
    assert created.description == "Scores card payments"
    assert created.tags == {"team": "risk"}
    assert created.latest_versions == []
    assert created.creation_timestamp > 0
    assert created.last_updated_timestamp == created.creation_timestamp

    fetched = client.get_registered_model("fraud")
    assert fetched.name == "fraud"
    assert fetched.tags == {"team": "risk"}
    assert fetched.creation_timestamp == created.creation_timestamp

    updated = client.update_registered_model("fraud", description="v2 of the text")
    assert updated.description == "v2 of the text"
    assert updated.last_updated_timestamp >= created.last_updated_timestamp

    client.rename_registered_model("fraud", "fraud-scorer")  # the client returns None
    renamed = client.get_registered_model("fraud-scorer")
    assert renamed.creation_timestamp == created.creation_timestamp
    assert renamed.description == "v2 of the text"
    with pytest.raises(MlflowException) as excinfo:
        client.get_registered_model("fraud")
    assert error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"

    client.delete_registered_model("fraud-scorer")
    with pytest.raises(MlflowException) as excinfo:
        client.get_registered_model("fraud-scorer")
    assert error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"
    assert not RegisteredModel.objects.exists()


@mlflow2
def test_model_tags_set_overwrite_and_delete(client):
    client.create_registered_model("m")
    client.set_registered_model_tag("m", "stage", "dev")
    client.set_registered_model_tag("m", "stage", "prod")
    client.set_registered_model_tag("m", "owner", "ana")
    assert client.get_registered_model("m").tags == {"stage": "prod", "owner": "ana"}

    client.delete_registered_model_tag("m", "stage")
    client.delete_registered_model_tag("m", "never-set")  # a missing tag is a no-op
    assert client.get_registered_model("m").tags == {"owner": "ana"}


@mlflow2
def test_duplicate_model_is_resource_already_exists(client):
    client.create_registered_model("dup")
    with pytest.raises(MlflowException) as excinfo:
        client.create_registered_model("dup")
    assert error_code(excinfo) == "RESOURCE_ALREADY_EXISTS"
    assert RegisteredModel.objects.filter(name="dup").count() == 1


@mlflow2
def test_model_errors(client):
    client.create_registered_model("a")
    client.create_registered_model("b")
    with pytest.raises(MlflowException) as excinfo:
        client.rename_registered_model("a", "b")
    assert error_code(excinfo) == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as excinfo:
        client.update_registered_model("nope", description="x")
    assert error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as excinfo:
        client.delete_registered_model("nope")
    assert error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as excinfo:
        client.set_registered_model_tag("a", "bad/../key", "v")
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as excinfo:
        client.set_registered_model_tag("a", "k" * 251, "v")
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    assert client.get_registered_model("a").tags == {}


# --- model versions -------------------------------------------------------------------------


@mlflow2
def test_create_get_update_delete_model_version(client):
    client.create_registered_model("m")
    v1 = client.create_model_version(
        "m",
        "s3://bucket/m/1",
        run_id="run-1",
        tags={"framework": "sklearn"},
        run_link="https://ci/runs/1",
        description="first",
    )
    assert v1.name == "m"
    assert v1.version == "1"
    assert v1.status == "READY"
    assert v1.current_stage == "None"
    assert v1.source == "s3://bucket/m/1"
    assert v1.run_id == "run-1"
    assert v1.run_link == "https://ci/runs/1"
    assert v1.description == "first"
    assert v1.tags == {"framework": "sklearn"}
    assert v1.user_id == "pipeline"
    assert v1.aliases == []

    v2 = client.create_model_version("m", "s3://bucket/m/2")
    assert v2.version == "2"

    fetched = client.get_model_version("m", "1")
    assert fetched.source == "s3://bucket/m/1"
    assert fetched.creation_timestamp == v1.creation_timestamp

    updated = client.update_model_version("m", "1", description="better")
    assert updated.description == "better"
    assert client.get_model_version("m", 1).description == "better"

    client.delete_model_version("m", "2")
    with pytest.raises(MlflowException) as excinfo:
        client.get_model_version("m", "2")
    assert error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"
    # A deleted version's number is never reused.
    assert client.create_model_version("m", "s3://bucket/m/3").version == "3"


@mlflow2
def test_recreated_model_starts_again_at_version_one(client):
    client.create_registered_model("m")
    client.create_model_version("m", "s3://b/1")
    client.create_model_version("m", "s3://b/2")
    client.delete_registered_model("m")
    client.create_registered_model("m")
    assert client.create_model_version("m", "s3://b/again").version == "1"


@mlflow2
def test_version_tags_set_and_delete(client):
    client.create_registered_model("m")
    client.create_model_version("m", "s3://b/1")
    client.set_model_version_tag("m", "1", "validation", "passed")
    client.set_model_version_tag("m", "1", "auc", "0.91")
    assert client.get_model_version("m", "1").tags == {"validation": "passed", "auc": "0.91"}
    client.delete_model_version_tag("m", "1", "auc")
    client.delete_model_version_tag("m", "1", "missing")  # no-op
    assert client.get_model_version("m", "1").tags == {"validation": "passed"}


@mlflow2
def test_version_errors(client):
    client.create_registered_model("m")
    client.create_model_version("m", "s3://b/1")
    cases = [
        (lambda: client.create_model_version("nope", "s3://b/1"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.get_model_version("m", "7"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.get_model_version("m", "x"), "INVALID_PARAMETER_VALUE"),
        (lambda: client.update_model_version("m", "9", "d"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.delete_model_version("m", "9"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.set_model_version_tag("m", "9", "k", "v"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.delete_model_version_tag("m", "9", "k"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.create_model_version("m", "s3://b/../etc"), "INVALID_PARAMETER_VALUE"),
        (lambda: client.create_model_version("m", "s3://b/%2E%2E/x"), "INVALID_PARAMETER_VALUE"),
        (lambda: client.create_model_version("m", "models:/m/42"), "INVALID_PARAMETER_VALUE"),
    ]
    for call, code in cases:
        with pytest.raises(MlflowException) as excinfo:
            call()
        assert error_code(excinfo) == code
    # None of the refused calls created anything.
    assert ModelVersion.objects.count() == 1


# --- stages ---------------------------------------------------------------------------------


@mlflow2
def test_transition_stage_archives_existing_versions(client):
    client.create_registered_model("m")
    for n in (1, 2, 3):
        client.create_model_version("m", f"s3://b/{n}")
    assert client.transition_model_version_stage("m", "1", "production").current_stage == (
        "Production"
    )
    client.transition_model_version_stage("m", "2", "Staging")

    moved = client.transition_model_version_stage(
        "m", "3", "Production", archive_existing_versions=True
    )
    assert moved.current_stage == "Production"
    assert client.get_model_version("m", "1").current_stage == "Archived"
    assert client.get_model_version("m", "2").current_stage == "Staging"

    # Without archiving, versions pile up in the stage.
    client.transition_model_version_stage("m", "2", "Production")
    assert client.get_model_version("m", "3").current_stage == "Production"


@mlflow2
@pytest.mark.parametrize("target", ["Archived", "None"])
def test_archive_existing_to_archived_or_none_is_refused_and_changes_nothing(client, target):
    client.create_registered_model("m")
    client.create_model_version("m", "s3://b/1")
    client.create_model_version("m", "s3://b/2")
    client.transition_model_version_stage("m", "1", "Staging")
    client.transition_model_version_stage("m", "2", "Staging")
    before = Event.objects.count()
    with pytest.raises(MlflowException) as excinfo:
        client.transition_model_version_stage("m", "2", target, archive_existing_versions=True)
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    assert client.get_model_version("m", "1").current_stage == "Staging"
    assert client.get_model_version("m", "2").current_stage == "Staging"
    assert Event.objects.count() == before


@mlflow2
def test_transition_to_unknown_stage_is_invalid(client):
    client.create_registered_model("m")
    client.create_model_version("m", "s3://b/1")
    with pytest.raises(MlflowException) as excinfo:
        client.transition_model_version_stage("m", "1", "Prod")
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"


@mlflow2
def test_get_latest_versions(client):
    client.create_registered_model("m")
    for n in range(1, 6):
        client.create_model_version("m", f"s3://b/{n}")
    client.transition_model_version_stage("m", "1", "Production")
    client.transition_model_version_stage("m", "2", "Production")
    client.transition_model_version_stage("m", "3", "Staging")
    client.transition_model_version_stage("m", "4", "Archived")
    client.set_registered_model_alias("m", "champion", "2")

    latest = client.get_latest_versions("m")
    assert {(v.current_stage, v.version) for v in latest} == {
        ("None", "5"),
        ("Staging", "3"),
        ("Production", "2"),
        ("Archived", "4"),
    }
    production = client.get_latest_versions("m", stages=["production"])
    assert [(v.version, v.aliases) for v in production] == [("2", ["champion"])]
    assert client.get_latest_versions("m", stages=["Staging", "None"])[0].version in ("3", "5")

    # Inside the registered model: one per stage, without aliases.
    model = client.get_registered_model("m")
    assert sorted(v.version for v in model.latest_versions) == ["2", "3", "4", "5"]
    assert all(v.aliases == [] for v in model.latest_versions)

    with pytest.raises(MlflowException) as excinfo:
        client.get_latest_versions("nope")
    assert error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"


# --- aliases --------------------------------------------------------------------------------


@mlflow2
def test_aliases_set_move_get_delete(client):
    client.create_registered_model("m")
    client.create_model_version("m", "s3://b/1")
    client.create_model_version("m", "s3://b/2")

    client.set_registered_model_alias("m", "champion", "1")
    client.set_registered_model_alias("m", "Champion", "2")  # aliases are case-sensitive
    by_alias = client.get_model_version_by_alias("m", "champion")
    assert by_alias.version == "1"
    assert by_alias.aliases == ["champion"]
    assert client.get_model_version("m", "2").aliases == ["Champion"]

    client.set_registered_model_alias("m", "champion", "2")  # moves it
    assert client.get_model_version_by_alias("m", "champion").version == "2"
    assert sorted(client.get_model_version("m", "2").aliases) == ["Champion", "champion"]
    assert client.get_registered_model("m").aliases == {"Champion": "2", "champion": "2"}

    client.delete_registered_model_alias("m", "Champion")
    client.delete_registered_model_alias("m", "never-set")  # no-op
    assert client.get_registered_model("m").aliases == {"champion": "2"}

    with pytest.raises(MlflowException) as excinfo:
        client.get_model_version_by_alias("m", "Champion")
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as excinfo:
        client.get_model_version_by_alias("nope", "champion")
    assert error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"


@mlflow2
def test_alias_errors_and_side_effects(client):
    client.create_registered_model("m")
    client.create_model_version("m", "s3://b/1")
    for reserved in ("latest", "LATEST", "v1", "V12", "bad alias", "a/b"):
        with pytest.raises(MlflowException) as excinfo:
            client.set_registered_model_alias("m", reserved, "1")
        assert error_code(excinfo) == "INVALID_PARAMETER_VALUE", reserved
    with pytest.raises(MlflowException) as excinfo:
        client.set_registered_model_alias("m", "prod", "9")
    assert error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_registered_model("m").aliases == {}

    # Aliases follow a rename and go with a deleted version.
    client.set_registered_model_alias("m", "prod", "1")
    client.rename_registered_model("m", "m2")
    assert client.get_model_version_by_alias("m2", "prod").version == "1"
    client.delete_model_version("m2", "1")
    assert client.get_registered_model("m2").aliases == {}


# --- searches -------------------------------------------------------------------------------


@mlflow2
def test_search_registered_models_filters(client):
    client.create_registered_model("fraud-eu", tags={"team": "risk", "region": "eu"})
    client.create_registered_model("fraud-us", tags={"team": "risk", "region": "us"})
    client.create_registered_model("Churn", tags={"team": "growth"})
    client.create_registered_model("untagged")

    def search(filter_string: str) -> list[str]:
        return names(client.search_registered_models(filter_string=filter_string))

    assert search("") == ["Churn", "fraud-eu", "fraud-us", "untagged"]
    assert search("name = 'fraud-eu'") == ["fraud-eu"]
    assert search("name != 'fraud-eu'") == ["Churn", "fraud-us", "untagged"]
    assert search("name LIKE 'fraud%'") == ["fraud-eu", "fraud-us"]
    assert search("name LIKE 'FRAUD%'") == []
    assert search("name ILIKE 'FRAUD%'") == ["fraud-eu", "fraud-us"]
    assert search("name LIKE 'fraud-_s'") == ["fraud-us"]
    assert search("tags.team = 'risk'") == ["fraud-eu", "fraud-us"]
    assert search("tag.`team` = 'risk' AND tags.\"region\" != 'eu'") == ["fraud-us"]
    # A comparison with a tag the model does not have is false, also for !=.
    assert search("tags.team != 'risk'") == ["Churn"]
    assert search("tags.region ILIKE 'E%' and name like '%eu'") == ["fraud-eu"]

    with pytest.raises(MlflowException) as excinfo:
        client.search_registered_models("name = 'a' OR name = 'b'")
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    for bad in ("creation_timestamp > 0", "name IN ('a')", "name = ", "tags.x > 'a'"):
        with pytest.raises(MlflowException) as excinfo:
            client.search_registered_models(bad)
        assert error_code(excinfo) == "INVALID_PARAMETER_VALUE", bad


@mlflow2
@needs_prompt_clause
def test_prompt_clause_hides_prompts_but_not_untagged_models(client, http):
    client.create_registered_model("model", tags={"team": "risk"})
    client.create_registered_model("untagged")
    # The client refuses the prompt tag on models (MLflow's prompt registry sets it): use the wire.
    for name, is_prompt in (("my-prompt", "true"), ("not-a-prompt", "false")):
        tags = [{"key": "mlflow.prompt.is_prompt", "value": is_prompt}]
        wire_post(http, "registered-models/create", {"name": name, "tags": tags})

    def search(filter_string: str) -> list[str]:
        return names(client.search_registered_models(filter_string=filter_string))

    # The client appends tag.`mlflow.prompt.is_prompt` != 'true': a missing tag is "not a prompt".
    assert search("") == ["model", "not-a-prompt", "untagged"]
    assert search("name LIKE '%'") == ["model", "not-a-prompt", "untagged"]
    assert search("tags.team = 'risk'") == ["model"]
    assert search("name = 'my-prompt'") == []


def _all_pages(fetch, page_size: int) -> tuple[list, int]:
    seen: list = []
    token = None
    pages = 0
    while True:
        page = fetch(max_results=page_size, page_token=token)
        pages += 1
        assert len(page) <= page_size
        seen.extend(page)
        token = page.token
        if not token:
            return seen, pages


@mlflow2
def test_search_registered_models_every_page_in_order(client):
    created = [f"model-{n:02d}" for n in range(11)]
    for name in reversed(created):
        client.create_registered_model(name)

    models, pages = _all_pages(client.search_registered_models, 3)
    assert names(models) == created  # name ASC by default, nothing skipped or repeated
    assert pages == 4

    # A last page that is exactly full returns no token (the server looks one row ahead).
    models, pages = _all_pages(client.search_registered_models, 11)
    assert (len(models), pages) == (11, 1)

    def by_name_desc(**kwargs):
        return client.search_registered_models(order_by=["name DESC"], **kwargs)

    models, _ = _all_pages(by_name_desc, 4)
    assert names(models) == created[::-1]

    client.set_registered_model_tag("model-05", "touched", "yes")  # now the newest update

    def by_update(**kwargs):
        return client.search_registered_models(order_by=["last_updated_timestamp DESC"], **kwargs)

    models, _ = _all_pages(by_update, 2)
    assert names(models)[0] == "model-05"
    assert sorted(names(models)) == created

    with pytest.raises(MlflowException) as excinfo:
        client.search_registered_models(order_by=["creation_timestamp"])
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as excinfo:
        client.search_registered_models(order_by=["timestamp", "last_updated_timestamp"])
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as excinfo:
        client.search_registered_models(max_results=1001)
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as excinfo:
        client.search_registered_models(page_token="not-a-token")
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"


@mlflow2
def test_pages_neither_skip_nor_repeat_when_rows_change_between_pages(client):
    for name in ("b", "d", "f", "h"):
        client.create_registered_model(name)
    first = client.search_registered_models(max_results=2)
    assert names(first) == ["b", "d"]
    # Rows added before and after the cursor, and one deleted before it.
    client.create_registered_model("a")
    client.create_registered_model("e")
    client.delete_registered_model("b")
    rest, _ = _all_pages(
        lambda **kw: client.search_registered_models(
            **{**kw, "page_token": kw["page_token"] or first.token}
        ),
        2,
    )
    assert names(rest) == ["e", "f", "h"]


@mlflow2
def test_search_model_versions_filters(client):
    client.create_registered_model("fraud")
    client.create_registered_model("churn")
    client.create_model_version("fraud", "s3://models/fraud/1", run_id="r1", tags={"ok": "yes"})
    client.create_model_version("fraud", "s3://models/fraud/2", run_id="r2")
    client.create_model_version("fraud", "gs://other/fraud/3", run_id="r3", tags={"ok": "no"})
    client.create_model_version("churn", "s3://models/churn/1", run_id="r1")
    client.create_model_version("churn", "s3://models/churn/2")
    client.delete_model_version("churn", "2")  # soft-deleted versions never match

    def search(filter_string: str) -> list[tuple[str, str]]:
        found = client.search_model_versions(filter_string, order_by=["name", "version_number"])
        return [(v.name, v.version) for v in found]

    assert search("name = 'fraud'") == [("fraud", "1"), ("fraud", "2"), ("fraud", "3")]
    assert search("name='churn'") == [("churn", "1")]
    assert search("run_id = 'r1'") == [("churn", "1"), ("fraud", "1")]
    assert search("run_id IN ('r2', 'r3')") == [("fraud", "2"), ("fraud", "3")]
    assert search("name = 'fraud' AND version_number >= 2") == [("fraud", "2"), ("fraud", "3")]
    assert search("name = 'fraud' AND version_number < 2") == [("fraud", "1")]
    assert search("name = 'fraud' AND version_number != 2") == [("fraud", "1"), ("fraud", "3")]
    assert search("source_path LIKE 's3://models/%'") == [
        ("churn", "1"),
        ("fraud", "1"),
        ("fraud", "2"),
    ]
    assert search("tags.ok = 'yes'") == [("fraud", "1")]
    assert search("tag.`ok` != 'yes'") == [("fraud", "3")]
    assert search("name ILIKE 'FR%' AND tags.ok LIKE 'n%'") == [("fraud", "3")]

    # Search results carry no aliases.
    client.set_registered_model_alias("fraud", "prod", "1")
    found = client.search_model_versions("name = 'fraud' AND version_number = 1")
    assert [(v.version, v.aliases) for v in found] == [("1", [])]

    for bad in (
        "name IN ('fraud')",
        "version_number = 'x'",
        "version_number LIKE '1'",
        "tags.ok > 'a'",
        "stage = 'None'",
        "name = 'a' OR name = 'b'",
    ):
        with pytest.raises(MlflowException) as excinfo:
            client.search_model_versions(bad)
        assert error_code(excinfo) == "INVALID_PARAMETER_VALUE", bad


@mlflow2
def test_search_model_versions_every_page_and_orders(client):
    for model in ("a", "b"):
        client.create_registered_model(model)
        for n in range(1, 5):
            client.create_model_version(model, f"s3://{model}/{n}")

    everything, pages = _all_pages(client.search_model_versions, 3)
    assert pages == 3
    # Default order: last update DESC, then name ASC, then version DESC.
    assert [(v.name, v.version) for v in everything] == [
        ("b", "4"),
        ("b", "3"),
        ("b", "2"),
        ("b", "1"),
        ("a", "4"),
        ("a", "3"),
        ("a", "2"),
        ("a", "1"),
    ]

    def ordered(**kwargs):
        return client.search_model_versions(
            "name LIKE '%'", order_by=["version_number ASC", "name DESC"], **kwargs
        )

    versions, _ = _all_pages(ordered, 2)
    assert [(v.name, v.version) for v in versions] == [
        ("b", "1"),
        ("a", "1"),
        ("b", "2"),
        ("a", "2"),
        ("b", "3"),
        ("a", "3"),
        ("b", "4"),
        ("a", "4"),
    ]

    def created_first(**kwargs):
        return client.search_model_versions(order_by=["creation_timestamp ASC"], **kwargs)

    versions, _ = _all_pages(created_first, 5)
    assert [(v.name, v.version) for v in versions][:2] == [("a", "1"), ("a", "2")]
    assert len(versions) == 8

    with pytest.raises(MlflowException) as excinfo:
        client.search_model_versions(max_results=0)
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as excinfo:
        client.search_model_versions(max_results=200_001)
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as excinfo:
        client.search_model_versions(order_by=["stage"])
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as excinfo:
        client.search_model_versions(page_token="bm90IGpzb24=")
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"


# --- download URI, copy, fluent ---------------------------------------------------------------


@mlflow2
def test_download_uri_and_copy_model_version(client):
    client.create_registered_model("src")
    source_version = client.create_model_version(
        "src", "s3://bucket/src/artifacts", run_id="run-9", tags={"k": "v"}, description="orig"
    )
    assert client.get_model_version_download_uri("src", "1") == "s3://bucket/src/artifacts"

    assert source_version.version == "1"
    copied = client.copy_model_version("models:/src/1", "dst")  # creates "dst"
    assert (copied.name, copied.version) == ("dst", "1")
    assert copied.source == "models:/src/1"
    assert copied.run_id == "run-9"
    assert copied.tags == {"k": "v"}
    assert copied.description == "orig"
    # The copy downloads from where the original's artifacts are.
    assert client.get_model_version_download_uri("dst", "1") == "s3://bucket/src/artifacts"

    again = client.copy_model_version("models:/dst/1", "dst")
    assert again.version == "2"
    assert client.get_model_version_download_uri("dst", "2") == "s3://bucket/src/artifacts"

    with pytest.raises(MlflowException) as excinfo:
        client.get_model_version_download_uri("src", "5")
    assert error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"


@mlflow2
def test_fluent_register_model_and_searches(fluent):
    first = fluent.register_model("s3://bucket/fluent/1", "fluent-model", tags={"via": "fluent"})
    assert (first.name, first.version, first.status) == ("fluent-model", "1", "READY")
    second = fluent.register_model("s3://bucket/fluent/2", "fluent-model")  # model exists: ok
    assert second.version == "2"

    found = fluent.search_registered_models(filter_string="name LIKE 'fluent%'")
    assert names(found) == ["fluent-model"]
    versions = fluent.search_model_versions(filter_string="name = 'fluent-model'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    assert versions[0].tags in ({}, {"via": "fluent"})


# --- MLflow 3 fields ----------------------------------------------------------------------------


@mlflow2
def test_mlflow3_fields_written_by_other_clients_do_not_break_reads(client, http):
    """A 3.x pipeline writes MLflow 3 fields; every client, 2.x too, still reads the model."""
    model = {"name": "m", "deployment_job_id": "job-1", "tags": [{"key": "team", "value": "a"}]}
    version = {
        "name": "m",
        "source": "s3://b/1",
        "run_id": "r1",
        "model_id": "m-0123456789abcdef",
        "model_params": [{"name": "alpha", "value": "0.5"}],
        "model_metrics": [{"key": "auc", "value": 0.91, "step": 3, "timestamp": 1700000000000}],
    }
    wire_post(http, "registered-models/create", model)
    wire_post(http, "model-versions/create", version)
    ModelVersion.objects.update(deployment_job_state={"job_id": "job-1", "run_state": "RUNNING"})
    client.set_registered_model_alias("m", "prod", "1")

    fetched = client.get_model_version("m", "1")
    assert (fetched.source, fetched.run_id, fetched.status) == ("s3://b/1", "r1", "READY")
    assert client.get_model_version_by_alias("m", "prod").version == "1"
    registered = client.get_registered_model("m")
    assert (registered.tags, registered.aliases) == ({"team": "a"}, {"prod": "1"})
    assert [v.version for v in registered.latest_versions] == ["1"]
    assert names(client.search_registered_models("name = 'm'")) == ["m"]
    assert [v.version for v in client.search_model_versions("name = 'm'")] == ["1"]
    assert [v.version for v in client.get_latest_versions("m", stages=["None"])] == ["1"]


@mlflow2
@needs_mlflow3
def test_mlflow3_fields_through_the_client(client, http):
    # The REST store drops deployment_job_id (only Databricks' sends it): set it on the wire.
    wire_post(http, "registered-models/create", {"name": "m", "deployment_job_id": "job-1"})
    assert client.get_registered_model("m").deployment_job_id == "job-1"

    # The client sends model_id; its ModelVersion entity does not read it back (yet).
    version = client.create_model_version("m", "s3://b/1", model_id="m-0123456789abcdef")
    assert version.version == "1"
    assert ModelVersion.objects.get().mlflow_model_id == "m-0123456789abcdef"

    ModelVersion.objects.update(deployment_job_state={"job_id": "job-1", "run_state": "RUNNING"})
    state = client.get_model_version("m", "1").deployment_job_state
    assert (state.job_id, state.run_state) == ("job-1", "RUNNING")


# --- authentication and one model underneath --------------------------------------------------


@mlflow2
def test_wrong_password_is_unauthenticated(client, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    with pytest.raises(MlflowException) as excinfo:
        client.create_registered_model("m")
    assert error_code(excinfo) == "UNAUTHENTICATED"
    assert not RegisteredModel.objects.exists()


def test_writes_are_recorded_as_mlflow_events_by_the_user(client, pipeline_user):
    client.create_registered_model("m", tags={"a": "b"})
    client.create_model_version("m", "s3://b/1")
    client.set_registered_model_alias("m", "prod", "1")
    client.transition_model_version_stage("m", "1", "Staging")
    client.set_model_version_tag("m", "1", "k", "v")
    client.delete_registered_model_alias("m", "prod")

    events = list(Event.objects.order_by("seq"))
    assert [e.type for e in events] == [
        "registered_model.created",
        "model_version.created",
        "model_version_alias.set",
        "model_version.stage_transitioned",
        "model_version_tag.set",
        "model_version_alias.deleted",
    ]
    assert {e.source for e in events} == {Source.MLFLOW}
    assert {e.actor_id for e in events} == {pipeline_user.pk}
    assert all(e.request_id for e in events)
    assert len({e.request_id for e in events}) == len(events)


@mlflow2
def test_bearer_token_from_mlflow_tracking_token(client, monkeypatch, pipeline_user):
    issued = token_create(user=pipeline_user, name="ci")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", issued.secret)
    client.create_registered_model("via-token")
    assert client.get_registered_model("via-token").name == "via-token"
    event = Event.objects.get(type="registered_model.created")
    assert (event.actor_id, event.actor_token) == (pipeline_user.pk, issued.token.prefix)

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", issued.secret[:-2] + "xx")
    with pytest.raises(MlflowException) as excinfo:
        client.get_registered_model("via-token")
    assert error_code(excinfo) == "UNAUTHENTICATED"


def test_concurrent_alias_moves_and_version_creations_all_succeed(client, mlflow_env):
    from mlflow import MlflowClient

    client.create_registered_model("busy")
    for n in range(1, 6):
        client.create_model_version("busy", f"s3://b/{n}")

    def move(n: int) -> None:
        MlflowClient(registry_uri=mlflow_env).set_registered_model_alias(
            "busy", "production", str(n % 5 + 1)
        )

    def create(n: int) -> str:
        return (
            MlflowClient(registry_uri=mlflow_env)
            .create_model_version("busy", f"s3://b/new-{n}")
            .version
        )

    with ThreadPoolExecutor(max_workers=10) as pool:
        moves = [pool.submit(move, n) for n in range(20)]
        creations = [pool.submit(create, n) for n in range(10)]
        for future in moves:
            future.result()  # every call answered 200
        created = sorted(int(future.result()) for future in creations)

    assert created == list(range(6, 16))  # no duplicate or skipped numbers
    last_move = Event.objects.filter(type="model_version_alias.set").latest("seq")
    assert client.get_model_version_by_alias("busy", "production").version == str(last_move.version)
    assert Event.objects.filter(type="model_version_alias.set").count() == 20
