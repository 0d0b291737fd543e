"""The registry services: what each one stores, what it records, and what it refuses."""

from __future__ import annotations

import pytest

from accounts.actors import Actor, Source
from config.errors import AlreadyExists, Conflict, InvalidParameter, NotFound
from registry import selectors, services
from registry.choices import EventType, Stage
from registry.models import (
    Event,
    EventOutbox,
    ModelAlias,
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelTag,
)
from tests.factories import make_model, make_version

pytestmark = pytest.mark.django_db


def counts() -> dict[str, int]:
    """Row counts of everything a service may write."""
    return {
        "models": RegisteredModel.objects.count(),
        "model_tags": RegisteredModelTag.objects.count(),
        "versions": ModelVersion.objects.count(),
        "version_tags": ModelVersionTag.objects.count(),
        "aliases": ModelAlias.objects.count(),
        "events": Event.objects.count(),
        "outbox": EventOutbox.objects.count(),
    }


def event_types(since: int = 0) -> list[str]:
    return list(Event.objects.filter(seq__gt=since).order_by("seq").values_list("type", flat=True))


def last_seq() -> int:
    return Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def live_numbers(model: RegisteredModel) -> list[int]:
    return sorted(ModelVersion.objects.live().filter(model=model).values_list("version", flat=True))


# --- registered models ------------------------------------------------------------------------


def test_model_create_stores_values_and_records_one_event(actor, user):
    model = services.model_create(
        name="fraud-scorer",
        description="Scores card payments.",
        tags={"team": "risk", "tier": "1"},
        actor=actor,
    )

    model.refresh_from_db()
    assert model.name == "fraud-scorer"
    assert model.description == "Scores card payments."
    assert model.created_by == user
    assert model.last_version == 0
    assert model.created_at == model.updated_at
    assert dict(model.tags.values_list("key", "value")) == {"team": "risk", "tier": "1"}
    assert counts() == {
        "models": 1,
        "model_tags": 2,
        "versions": 0,
        "version_tags": 0,
        "aliases": 0,
        "events": 1,
        "outbox": 1,
    }
    event = Event.objects.get()
    assert event.type == EventType.MODEL_CREATED == "registered_model.created"
    assert event.seq == 1
    assert event.actor_id == user.pk
    assert event.actor_name == "alice"
    assert event.source == Source.SHELL
    assert event.model_id == model.pk
    assert event.model_name == "fraud-scorer"
    assert event.version is None
    assert event.before is None
    assert event.after == {
        "name": "fraud-scorer",
        "description": "Scores card payments.",
        "tags": {"team": "risk", "tier": "1"},
    }


def test_model_create_accepts_tags_as_a_list_of_pairs(actor):
    model = services.model_create(
        name="m", tags=[{"key": "a", "value": "1"}, {"key": "b", "value": None}], actor=actor
    )

    assert dict(model.tags.values_list("key", "value")) == {"a": "1", "b": ""}


def test_model_create_by_the_system_actor_records_system(db):
    services.model_create(name="m", actor=Actor.system())

    event = Event.objects.get()
    assert event.actor_id is None
    assert event.actor_name == "system"
    assert event.source == Source.TASK
    assert RegisteredModel.objects.get().created_by is None


def test_model_create_accepts_a_name_of_256_characters(actor):
    model = services.model_create(name="n" * 256, actor=actor)

    assert RegisteredModel.objects.get().name == "n" * 256
    assert model.pk is not None


def test_model_create_refuses_a_duplicate_name_and_changes_nothing(actor):
    make_model(actor, "fraud-scorer", description="first")
    before = counts()

    with pytest.raises(AlreadyExists) as excinfo:
        services.model_create(name="fraud-scorer", description="second", actor=actor)

    assert excinfo.value.message == "Registered Model (name=fraud-scorer) already exists."
    assert counts() == before
    assert RegisteredModel.objects.get().description == "first"


@pytest.mark.parametrize(
    "name",
    ["", "   ", "n" * 257, "team/model", "team:model", "nul\x00name", None, 42],
    ids=["empty", "blank", "too-long", "slash", "colon", "nul", "none", "not-a-string"],
)
def test_model_create_refuses_invalid_names_and_changes_nothing(actor, name):
    before = counts()

    with pytest.raises(InvalidParameter) as excinfo:
        services.model_create(name=name, tags={"a": "b"}, actor=actor)

    assert list(excinfo.value.fields) == ["name"]
    assert counts() == before
    assert before["events"] == 0


@pytest.mark.parametrize(
    ("tags", "field"),
    [
        ({"k" * 251: "v"}, "key"),
        ({"ok": "v" * 5001}, "value"),
        ({"": "v"}, "key"),
        ({"bad$key": "v"}, "key"),
        ({"../etc": "v"}, "key"),
        ({"/abs": "v"}, "key"),
        ({"ok": 5}, "value"),
        (["not-a-pair"], "tags"),
        ("a=b", "tags"),
    ],
    ids=[
        "key-too-long",
        "value-too-long",
        "empty-key",
        "bad-character",
        "traversal",
        "absolute",
        "value-not-string",
        "list-of-strings",
        "string",
    ],
)
def test_model_create_refuses_invalid_tags_and_changes_nothing(actor, tags, field):
    with pytest.raises(InvalidParameter) as excinfo:
        services.model_create(name="m", tags=tags, actor=actor)

    assert list(excinfo.value.fields) == [field]
    assert counts()["models"] == 0
    assert counts()["events"] == 0


def test_model_tag_limits_are_inclusive(actor):
    model = services.model_create(name="m", tags={"k" * 250: "v" * 5000}, actor=actor)

    tag = model.tags.get()
    assert len(tag.key) == 250
    assert len(tag.value) == 5000


def test_model_update_changes_description_and_records_before_and_after(actor):
    model = make_model(actor, "m", description="old", tags={"a": "1"})
    created_at = model.created_at

    updated = services.model_update(model=model, description="new", actor=actor)

    model.refresh_from_db()
    assert updated.pk == model.pk
    assert model.description == "new"
    assert model.created_at == created_at
    assert model.updated_at > created_at
    assert event_types() == ["registered_model.created", "registered_model.updated"]
    event = Event.objects.get(seq=2)
    assert event.before == {"name": "m", "description": "old", "tags": {"a": "1"}}
    assert event.after == {"name": "m", "description": "new", "tags": {"a": "1"}}


def test_model_rename_keeps_id_versions_aliases_tags_and_history(actor):
    model = make_model(actor, "old-name", tags={"team": "risk"})
    v1 = make_version(actor, model)
    make_version(actor, model)
    services.alias_set(model=model, alias="champion", version=1, actor=actor)
    events_before = Event.objects.count()

    renamed = services.model_rename(model=model, new_name="new-name", actor=actor)

    assert renamed.pk == model.pk
    stored = RegisteredModel.objects.get()
    assert stored.pk == model.pk
    assert stored.name == "new-name"
    assert stored.last_version == 2
    assert live_numbers(stored) == [1, 2]
    assert ModelVersion.objects.get(pk=v1.pk).model_id == model.pk
    assert list(stored.aliases.values_list("alias", "version__version")) == [("champion", 1)]
    assert dict(stored.tags.values_list("key", "value")) == {"team": "risk"}
    assert not RegisteredModel.objects.filter(name="old-name").exists()
    assert Event.objects.count() == events_before + 1
    event = Event.objects.order_by("-seq").first()
    assert event.type == "registered_model.renamed"
    assert event.model_id == model.pk
    assert event.model_name == "new-name"
    assert event.before == {"name": "old-name", "description": "", "tags": {"team": "risk"}}
    assert event.after == {"name": "new-name", "description": "", "tags": {"team": "risk"}}
    # The history under the new name is the model's whole history, old events included.
    history = list(
        selectors.event_list(viewer=Actor.system(), model="new-name").values_list(
            "type", "model_name"
        )
    )
    assert history == [
        ("registered_model.created", "old-name"),
        ("model_version.created", "old-name"),
        ("model_version.created", "old-name"),
        ("model_version_alias.set", "old-name"),
        ("registered_model.renamed", "new-name"),
    ]


def test_model_rename_to_the_same_name_records_nothing(actor):
    model = make_model(actor, "m")

    services.model_rename(model=model, new_name="m", actor=actor)

    assert event_types() == ["registered_model.created"]


def test_model_rename_to_a_taken_name_is_refused_and_changes_nothing(actor):
    model = make_model(actor, "a")
    make_model(actor, "b")
    before = counts()

    with pytest.raises(AlreadyExists):
        services.model_rename(model=model, new_name="b", actor=actor)

    assert counts() == before
    assert sorted(RegisteredModel.objects.values_list("name", flat=True)) == ["a", "b"]


@pytest.mark.parametrize("new_name", ["", "n" * 257, "a/b", "a:b"])
def test_model_rename_to_an_invalid_name_is_refused_and_changes_nothing(actor, new_name):
    model = make_model(actor, "m")
    before = counts()

    with pytest.raises(InvalidParameter) as excinfo:
        services.model_rename(model=model, new_name=new_name, actor=actor)

    assert list(excinfo.value.fields) == ["new_name"]
    assert counts() == before
    assert RegisteredModel.objects.get().name == "m"


def test_model_delete_removes_everything_but_the_history(actor):
    model = make_model(actor, "m", tags={"a": "1"})
    make_version(actor, model, tags={"b": "2"})
    make_version(actor, model)
    services.version_delete(version=ModelVersion.objects.get(version=2), actor=actor)
    services.alias_set(model=model, alias="prod", version=1, actor=actor)
    events_before = Event.objects.count()

    services.model_delete(model=model, actor=actor)

    assert counts() == {
        "models": 0,
        "model_tags": 0,
        "versions": 0,
        "version_tags": 0,
        "aliases": 0,
        "events": events_before + 1,
        "outbox": events_before + 1,
    }
    event = Event.objects.order_by("-seq").first()
    assert event.type == "registered_model.deleted"
    assert event.model_id == model.pk
    assert event.model_name == "m"
    assert event.before == {"name": "m", "description": "", "tags": {"a": "1"}, "versions": 1}
    assert event.after is None
    # The deleted model's history is still found by its name.
    assert selectors.event_list(viewer=Actor.system(), model="m").count() == events_before + 1


def test_a_recreated_model_starts_again_at_version_1(actor):
    model = make_model(actor, "m")
    for _ in range(3):
        make_version(actor, model)
    services.model_delete(model=model, actor=actor)

    again = make_model(actor, "m")
    version = make_version(actor, again)

    assert again.pk != model.pk
    assert version.version == 1
    assert RegisteredModel.objects.get().last_version == 1


def test_model_tag_set_adds_then_overwrites(actor):
    model = make_model(actor, "m")

    services.model_tag_set(model=model, key="team", value="risk", actor=actor)
    services.model_tag_set(model=model, key="team", value="fraud", actor=actor)

    assert list(model.tags.values_list("key", "value")) == [("team", "fraud")]
    assert event_types(since=1) == ["registered_model_tag.set", "registered_model_tag.set"]
    first, second = Event.objects.filter(seq__gt=1).order_by("seq")
    assert (first.before, first.after) == (None, {"key": "team", "value": "risk"})
    assert second.before == {"key": "team", "value": "risk"}
    assert second.after == {"key": "team", "value": "fraud"}


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [("k" * 251, "v", "key"), ("k", "v" * 5001, "value"), ("", "v", "key"), ("a;b", "v", "key")],
)
def test_model_tag_set_refuses_invalid_tags_and_changes_nothing(actor, key, value, field):
    model = make_model(actor, "m", tags={"k": "kept"})
    before = counts()

    with pytest.raises(InvalidParameter) as excinfo:
        services.model_tag_set(model=model, key=key, value=value, actor=actor)

    assert list(excinfo.value.fields) == [field]
    assert counts() == before
    assert list(model.tags.values_list("key", "value")) == [("k", "kept")]


def test_model_tag_delete_removes_the_tag_and_records_it(actor):
    model = make_model(actor, "m", tags={"a": "1", "b": "2"})

    assert services.model_tag_delete(model=model, key="a", actor=actor) is True

    assert list(model.tags.values_list("key", flat=True)) == ["b"]
    event = Event.objects.get(seq=2)
    assert event.type == "registered_model_tag.deleted"
    assert (event.before, event.after) == ({"key": "a", "value": "1"}, None)


def test_model_tag_delete_of_a_missing_key_returns_false_and_records_nothing(actor):
    model = make_model(actor, "m", tags={"a": "1"})
    before = counts()

    assert services.model_tag_delete(model=model, key="nope", actor=actor) is False

    assert counts() == before


# --- versions ---------------------------------------------------------------------------------


def test_version_create_stores_values_and_records_one_event(actor, user):
    model = make_model(actor, "m")

    version = services.version_create(
        model=model,
        source="s3://models/m/1",
        run_id="abc123",
        run_link="https://mlflow/runs/abc123",
        description="first cut",
        tags={"validation": "passed"},
        mlflow_model_id="m-1",
        params=[{"key": "lr", "value": "0.1"}],
        metrics=[{"key": "auc", "value": 0.9}],
        actor=actor,
    )

    version.refresh_from_db()
    assert version.model_id == model.pk
    assert version.version == 1
    assert version.source == "s3://models/m/1"
    assert version.run_id == "abc123"
    assert version.run_link == "https://mlflow/runs/abc123"
    assert version.description == "first cut"
    assert version.status == "READY"
    assert version.stage == Stage.NONE
    assert version.mlflow_model_id == "m-1"
    assert version.params == [{"key": "lr", "value": "0.1"}]
    assert version.metrics == [{"key": "auc", "value": 0.9}]
    assert version.created_by == user
    assert version.deleted_at is None
    assert dict(version.tags.values_list("key", "value")) == {"validation": "passed"}
    model.refresh_from_db()
    assert model.last_version == 1
    assert model.updated_at == version.created_at
    event = Event.objects.get(seq=2)
    assert event.type == "model_version.created"
    assert event.model_id == model.pk
    assert event.model_name == "m"
    assert event.version == 1
    assert event.before is None
    assert event.after == {
        "name": "m",
        "version": 1,
        "stage": "None",
        "source": "s3://models/m/1",
        "run_id": "abc123",
        "run_link": "https://mlflow/runs/abc123",
        "description": "first cut",
        "status": "READY",
        "tags": {"validation": "passed"},
        "aliases": [],
        "deleted": False,
    }


def test_version_numbers_count_up_per_model(actor):
    first = make_model(actor, "first")
    second = make_model(actor, "second")

    numbers = [make_version(actor, first).version for _ in range(4)]
    other = make_version(actor, second).version

    assert numbers == [1, 2, 3, 4]
    assert other == 1
    assert live_numbers(first) == [1, 2, 3, 4]
    assert RegisteredModel.objects.get(name="first").last_version == 4
    assert RegisteredModel.objects.get(name="second").last_version == 1


def test_version_numbers_are_never_reused_after_soft_delete(actor):
    model = make_model(actor, "m")
    for _ in range(3):
        make_version(actor, model)
    services.version_delete(version=ModelVersion.objects.get(model=model, version=3), actor=actor)
    services.version_delete(version=ModelVersion.objects.get(model=model, version=2), actor=actor)

    fourth = make_version(actor, model)

    assert fourth.version == 4
    assert live_numbers(model) == [1, 4]
    assert sorted(ModelVersion.objects.values_list("version", flat=True)) == [1, 2, 3, 4]
    assert ModelVersion.objects.filter(deleted_at__isnull=False).count() == 2


@pytest.mark.parametrize(
    "source",
    ["", "   ", "../models/m", "s3://bucket/../other", "C:\\models\\..\\x", "s3://a\x00b", None],
    ids=["empty", "blank", "leading-dotdot", "inner-dotdot", "backslash-dotdot", "nul", "none"],
)
def test_version_create_refuses_invalid_sources_and_changes_nothing(actor, source):
    model = make_model(actor, "m")
    before = counts()

    with pytest.raises(InvalidParameter) as excinfo:
        services.version_create(model=model, source=source, actor=actor)

    assert list(excinfo.value.fields) == ["source"]
    assert counts() == before
    assert RegisteredModel.objects.get().last_version == 0


def test_version_create_accepts_dots_that_are_not_a_parent_reference(actor):
    model = make_model(actor, "m")

    version = make_version(actor, model, source="s3://bucket/..hidden/model.v2..final")

    assert version.source == "s3://bucket/..hidden/model.v2..final"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"run_id": "r" * 65}, "run_id"),
        ({"tags": {"k" * 251: "v"}}, "key"),
        ({"tags": {"k": "v" * 5001}}, "value"),
    ],
)
def test_version_create_refuses_invalid_fields_and_does_not_take_a_number(actor, kwargs, field):
    model = make_model(actor, "m")
    before = counts()

    with pytest.raises(InvalidParameter) as excinfo:
        make_version(actor, model, **kwargs)

    assert list(excinfo.value.fields) == [field]
    assert counts() == before
    assert make_version(actor, model).version == 1


def test_version_update_changes_description_and_bumps_update_times(actor):
    model = make_model(actor, "m")
    version = make_version(actor, model, description="old")
    created_at = version.created_at

    services.version_update(version=version, description="new", actor=actor)

    version.refresh_from_db()
    model.refresh_from_db()
    assert version.description == "new"
    assert version.updated_at > created_at
    assert model.updated_at == version.updated_at
    event = Event.objects.get(seq=3)
    assert event.type == "model_version.updated"
    assert event.version == 1
    assert (event.before["description"], event.after["description"]) == ("old", "new")


def test_version_update_of_a_deleted_version_is_refused(actor):
    model = make_model(actor, "m")
    version = make_version(actor, model, description="old")
    services.version_delete(version=version, actor=actor)
    before = counts()

    with pytest.raises(NotFound) as excinfo:
        services.version_update(version=version, description="new", actor=actor)

    assert excinfo.value.message == "Model Version (name=m, version=1) not found"
    assert counts() == before
    assert ModelVersion.objects.get().description == "old"


def test_version_transition_moves_the_stage_and_records_comment(actor):
    model = make_model(actor, "m")
    version = make_version(actor, model)

    moved = services.version_transition(
        version=version, stage=Stage.STAGING, comment="looks good", actor=actor
    )

    assert moved.stage == Stage.STAGING
    assert ModelVersion.objects.get().stage == "Staging"
    event = Event.objects.get(seq=3)
    assert event.type == "model_version.stage_transitioned"
    assert event.version == 1
    assert event.comment == "looks good"
    assert (event.before["stage"], event.after["stage"]) == ("None", "Staging")


def test_version_transition_without_archiving_leaves_the_others(actor):
    model = make_model(actor, "m")
    v1, v2 = make_version(actor, model), make_version(actor, model)
    services.version_transition(version=v1, stage=Stage.PRODUCTION, actor=actor)

    services.version_transition(version=v2, stage=Stage.PRODUCTION, actor=actor)

    stages = dict(ModelVersion.objects.values_list("version", "stage"))
    assert stages == {1: "Production", 2: "Production"}


@pytest.mark.parametrize("stage", [Stage.STAGING, Stage.PRODUCTION])
def test_archive_existing_versions_archives_exactly_the_others_in_that_stage(actor, stage):
    model = make_model(actor, "m")
    other_model = make_model(actor, "other")
    versions = [make_version(actor, model) for _ in range(6)]
    foreign = make_version(actor, other_model)
    other_stage = Stage.PRODUCTION if stage == Stage.STAGING else Stage.STAGING
    for number, target in [(1, stage), (2, stage), (3, other_stage), (4, stage), (5, stage)]:
        services.version_transition(version=versions[number - 1], stage=target, actor=actor)
    services.version_transition(version=foreign, stage=stage, actor=actor)
    # A deleted version keeps its stage; archiving must not touch it.
    services.version_delete(version=versions[4], actor=actor)
    since = last_seq()

    services.version_transition(
        version=versions[5], stage=stage, archive_existing=True, comment="promote", actor=actor
    )

    stages = dict(ModelVersion.objects.filter(model=model).values_list("version", "stage"))
    assert stages == {
        1: "Archived",
        2: "Archived",
        3: other_stage.value,
        4: "Archived",
        5: stage.value,
        6: stage.value,
    }
    assert ModelVersion.objects.get(pk=foreign.pk).stage == stage.value
    moved = list(
        Event.objects.filter(seq__gt=since).values_list("type", "version", "comment", "after")
    )
    assert [(t, v, c) for t, v, c, _ in moved] == [
        ("model_version.stage_transitioned", 1, f"Archived because version 6 moved to {stage}."),
        ("model_version.stage_transitioned", 2, f"Archived because version 6 moved to {stage}."),
        ("model_version.stage_transitioned", 4, f"Archived because version 6 moved to {stage}."),
        ("model_version.stage_transitioned", 6, "promote"),
    ]
    assert [after["stage"] for *_, after in moved] == ["Archived"] * 3 + [stage.value]


def test_archive_existing_versions_when_nobody_is_there_records_one_event(actor):
    model = make_model(actor, "m")
    version = make_version(actor, model)
    since = last_seq()

    services.version_transition(
        version=version, stage=Stage.PRODUCTION, archive_existing=True, actor=actor
    )

    assert event_types(since) == ["model_version.stage_transitioned"]
    assert ModelVersion.objects.get().stage == "Production"


@pytest.mark.parametrize("stage", [Stage.NONE, Stage.ARCHIVED])
def test_archive_existing_versions_is_refused_for_other_stages(actor, stage):
    model = make_model(actor, "m")
    v1, v2 = make_version(actor, model), make_version(actor, model)
    services.version_transition(version=v1, stage=stage, actor=actor)
    before = counts()

    with pytest.raises(InvalidParameter) as excinfo:
        services.version_transition(version=v2, stage=stage, archive_existing=True, actor=actor)

    assert list(excinfo.value.fields) == ["archive_existing_versions"]
    assert counts() == before
    assert dict(ModelVersion.objects.values_list("version", "stage")) == {
        1: stage.value,
        2: "None",
    }


def test_version_transition_of_a_deleted_version_is_refused(actor):
    model = make_model(actor, "m")
    version = make_version(actor, model)
    services.version_delete(version=version, actor=actor)
    before = counts()

    with pytest.raises(NotFound):
        services.version_transition(version=version, stage=Stage.PRODUCTION, actor=actor)

    assert counts() == before
    assert ModelVersion.objects.get().stage == "None"


def test_version_delete_is_soft_and_removes_its_aliases(actor):
    model = make_model(actor, "m")
    v1, v2 = make_version(actor, model), make_version(actor, model)
    services.alias_set(model=model, alias="prod", version=1, actor=actor)
    services.alias_set(model=model, alias="champion", version=1, actor=actor)
    services.alias_set(model=model, alias="canary", version=2, actor=actor)
    since = last_seq()

    services.version_delete(version=v1, actor=actor)

    v1.refresh_from_db()
    assert v1.deleted_at is not None
    assert v1.is_deleted is True
    assert ModelVersion.objects.count() == 2
    assert live_numbers(model) == [2]
    assert list(ModelAlias.objects.values_list("alias", "version__version")) == [("canary", 2)]
    events = list(
        Event.objects.filter(seq__gt=since).values_list("type", "version", "before", "comment")
    )
    assert events == [
        (
            "model_version_alias.deleted",
            1,
            {"alias": "champion", "version": 1},
            "Removed with version 1.",
        ),
        (
            "model_version_alias.deleted",
            1,
            {"alias": "prod", "version": 1},
            "Removed with version 1.",
        ),
        (
            "model_version.deleted",
            1,
            {
                "name": "m",
                "version": 1,
                "stage": "None",
                "source": "s3://models/fraud/1",
                "run_id": "",
                "run_link": "",
                "description": "",
                "status": "READY",
                "tags": {},
                "aliases": ["champion", "prod"],
                "deleted": False,
            },
            "",
        ),
    ]
    with pytest.raises(NotFound):
        selectors.version_get(actor=Actor.system(), model=model, version=1)
    assert selectors.version_get(actor=Actor.system(), model=model, version=2).pk == v2.pk


def test_version_delete_twice_is_refused_the_second_time(actor):
    model = make_model(actor, "m")
    version = make_version(actor, model)
    services.version_delete(version=version, actor=actor)
    before = counts()

    with pytest.raises(NotFound):
        services.version_delete(version=version, actor=actor)

    assert counts() == before


def test_version_tag_set_adds_then_overwrites(actor):
    model = make_model(actor, "m")
    version = make_version(actor, model)

    services.version_tag_set(version=version, key="validation", value="pending", actor=actor)
    services.version_tag_set(version=version, key="validation", value="passed", actor=actor)

    assert list(version.tags.values_list("key", "value")) == [("validation", "passed")]
    first, second = Event.objects.filter(seq__gt=2).order_by("seq")
    assert first.type == second.type == "model_version_tag.set"
    assert first.version == 1
    assert (first.before, first.after) == (None, {"key": "validation", "value": "pending"})
    assert second.before == {"key": "validation", "value": "pending"}
    assert second.after == {"key": "validation", "value": "passed"}


@pytest.mark.parametrize(
    ("key", "value", "field"), [("k" * 251, "v", "key"), ("k", "v" * 5001, "value")]
)
def test_version_tag_set_refuses_invalid_tags_and_changes_nothing(actor, key, value, field):
    model = make_model(actor, "m")
    version = make_version(actor, model)
    before = counts()

    with pytest.raises(InvalidParameter) as excinfo:
        services.version_tag_set(version=version, key=key, value=value, actor=actor)

    assert list(excinfo.value.fields) == [field]
    assert counts() == before


def test_version_tag_set_on_a_deleted_version_is_refused(actor):
    model = make_model(actor, "m")
    version = make_version(actor, model)
    services.version_delete(version=version, actor=actor)
    before = counts()

    with pytest.raises(NotFound):
        services.version_tag_set(version=version, key="k", value="v", actor=actor)

    assert counts() == before


def test_version_tag_delete_removes_the_tag_and_records_it(actor):
    model = make_model(actor, "m")
    version = make_version(actor, model, tags={"a": "1", "b": "2"})

    assert services.version_tag_delete(version=version, key="b", actor=actor) is True
    assert services.version_tag_delete(version=version, key="b", actor=actor) is False

    assert list(version.tags.values_list("key", "value")) == [("a", "1")]
    assert event_types(since=2) == ["model_version_tag.deleted"]
    event = Event.objects.get(seq=3)
    assert (event.version, event.before, event.after) == (1, {"key": "b", "value": "2"}, None)


# --- aliases ----------------------------------------------------------------------------------


def test_alias_set_creates_then_moves_the_alias(actor):
    model = make_model(actor, "m")
    make_version(actor, model)
    make_version(actor, model)

    created = services.alias_set(model=model, alias="prod", version=1, actor=actor)
    moved = services.alias_set(model=model, alias="prod", version=2, actor=actor)

    assert created.pk == moved.pk
    assert list(ModelAlias.objects.values_list("alias", "version__version")) == [("prod", 2)]
    first, second = Event.objects.filter(seq__gt=3).order_by("seq")
    assert first.type == second.type == "model_version_alias.set"
    assert (first.version, first.before, first.after) == (1, None, {"alias": "prod", "version": 1})
    assert second.version == 2
    assert second.before == {"alias": "prod", "version": 1}
    assert second.after == {"alias": "prod", "version": 2}


def test_alias_set_with_the_current_expected_version_moves_it(actor):
    model = make_model(actor, "m")
    make_version(actor, model)
    make_version(actor, model)
    services.alias_set(model=model, alias="prod", version=1, actor=actor)

    services.alias_set(model=model, alias="prod", version=2, expected_version=1, actor=actor)

    assert ModelAlias.objects.get().version.version == 2


@pytest.mark.parametrize(
    ("expected", "message"),
    [
        (2, "Alias 'prod' of model 'm' points at version 1, not version 2; nothing was changed."),
        (3, "Alias 'prod' of model 'm' points at version 1, not version 3; nothing was changed."),
    ],
)
def test_alias_set_with_a_stale_expected_version_conflicts_and_changes_nothing(
    actor, expected, message
):
    model = make_model(actor, "m")
    for _ in range(3):
        make_version(actor, model)
    services.alias_set(model=model, alias="prod", version=1, actor=actor)
    updated_at = RegisteredModel.objects.get().updated_at
    before = counts()

    with pytest.raises(Conflict) as excinfo:
        services.alias_set(
            model=model, alias="prod", version=3, expected_version=expected, actor=actor
        )

    assert excinfo.value.message == message
    assert excinfo.value.fields == {"expected_version": ["The alias points at version 1."]}
    assert counts() == before
    assert ModelAlias.objects.get().version.version == 1
    assert RegisteredModel.objects.get().updated_at == updated_at


def test_alias_set_with_an_expected_version_on_a_new_alias_conflicts(actor):
    model = make_model(actor, "m")
    make_version(actor, model)
    before = counts()

    with pytest.raises(Conflict) as excinfo:
        services.alias_set(model=model, alias="prod", version=1, expected_version=1, actor=actor)

    assert excinfo.value.fields == {"expected_version": ["The alias points at no version."]}
    assert counts() == before


@pytest.mark.parametrize(
    "alias",
    [
        "",
        "latest",
        "LATEST",
        "Latest",
        "v1",
        "V12",
        "v007",
        "a" * 256,
        "has space",
        "dot.ted",
        "sl/ash",
        "col:on",
        "at@sign",
        None,
    ],
)
def test_alias_set_refuses_invalid_names_and_changes_nothing(actor, alias):
    model = make_model(actor, "m")
    make_version(actor, model)
    before = counts()

    with pytest.raises(InvalidParameter) as excinfo:
        services.alias_set(model=model, alias=alias, version=1, actor=actor)

    assert list(excinfo.value.fields) == ["alias"]
    assert counts() == before


@pytest.mark.parametrize(
    "alias", ["champion", "prod-eu_1", "a" * 255, "v1a", "version", "latest2", "ünïcode", "_"]
)
def test_alias_set_accepts_valid_names(actor, alias):
    model = make_model(actor, "m")
    make_version(actor, model)

    services.alias_set(model=model, alias=alias, version=1, actor=actor)

    assert list(ModelAlias.objects.values_list("alias", flat=True)) == [alias]


@pytest.mark.parametrize("number", [2, 99])
def test_alias_set_to_a_missing_version_is_refused(actor, number):
    model = make_model(actor, "m")
    make_version(actor, model)
    make_version(actor, model)
    services.version_delete(version=ModelVersion.objects.get(version=2), actor=actor)
    before = counts()

    with pytest.raises(NotFound) as excinfo:
        services.alias_set(model=model, alias="prod", version=number, actor=actor)

    assert excinfo.value.message == f"Model Version (name=m, version={number}) not found"
    assert counts() == before


def test_alias_set_cannot_point_at_another_models_version(actor):
    model = make_model(actor, "m")
    other = make_model(actor, "other")
    make_version(actor, other)
    before = counts()

    with pytest.raises(NotFound):
        services.alias_set(model=model, alias="prod", version=1, actor=actor)

    assert counts() == before


def test_alias_delete_removes_the_alias_and_records_it(actor):
    model = make_model(actor, "m")
    make_version(actor, model)
    services.alias_set(model=model, alias="prod", version=1, actor=actor)

    assert services.alias_delete(model=model, alias="prod", actor=actor) is True

    assert ModelAlias.objects.count() == 0
    event = Event.objects.order_by("-seq").first()
    assert event.type == "model_version_alias.deleted"
    assert (event.version, event.before, event.after) == (1, {"alias": "prod", "version": 1}, None)


def test_alias_delete_of_a_missing_alias_returns_false_and_records_nothing(actor):
    model = make_model(actor, "m")
    before = counts()

    assert services.alias_delete(model=model, alias="prod", actor=actor) is False

    assert counts() == before


def test_every_change_bumps_the_models_update_time(actor):
    model = make_model(actor, "m")
    version = make_version(actor, model)
    stamps = [RegisteredModel.objects.get().updated_at]
    calls = [
        lambda: services.model_tag_set(model=model, key="k", value="v", actor=actor),
        lambda: services.version_tag_set(version=version, key="k", value="v", actor=actor),
        lambda: services.alias_set(model=model, alias="prod", version=1, actor=actor),
        lambda: services.version_update(version=version, description="d", actor=actor),
        lambda: services.version_transition(version=version, stage=Stage.STAGING, actor=actor),
        lambda: services.alias_delete(model=model, alias="prod", actor=actor),
        lambda: services.version_tag_delete(version=version, key="k", actor=actor),
        lambda: services.model_tag_delete(model=model, key="k", actor=actor),
    ]

    for call in calls:
        call()
        stamps.append(RegisteredModel.objects.get().updated_at)

    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(calls) + 1
