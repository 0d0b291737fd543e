"""Registered models, their versions, tags and aliases, and the one event log."""

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models import Q
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from registry.choices import Stage, VersionStatus

NAME_MAX_LENGTH = 256
ALIAS_MAX_LENGTH = 255
TAG_KEY_MAX_LENGTH = 250
TAG_VALUE_MAX_LENGTH = 5000


class RegisteredModel(models.Model):
    """A named model; its versions are numbered 1, 2, 3 … from `last_version`."""

    name = models.CharField(max_length=NAME_MAX_LENGTH, unique=True)
    description = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(db_index=True)
    # Highest version number ever assigned; taken under the row lock, never decremented, so a
    # deleted version's number is never reused.
    last_version = models.PositiveIntegerField(default=0)
    # MLflow 3 deployment-job link, stored as given (the state is a DeploymentJobConnection name).
    deployment_job_id = models.CharField(max_length=255, blank=True, default="")
    deployment_job_state = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        ordering = ["name"]
        permissions = [
            ("can_read", "Can read (see the model, versions, aliases, history)"),
            ("can_edit", "Can edit (versions, descriptions, tags, unprotected aliases)"),
            ("can_manage_staging_versions", "Can manage staging versions"),
            ("can_manage_production_versions", "Can manage production versions"),
            ("can_manage", "Can manage (rename, delete, permissions, webhooks)"),
        ]

    def __str__(self) -> str:
        return self.name


class RegisteredModelTag(models.Model):
    """A key/value tag on a registered model."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="tags")
    key = models.CharField(max_length=TAG_KEY_MAX_LENGTH)
    value = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "key"], name="registry_model_tag_unique")
        ]
        indexes = [models.Index(fields=["key"], name="registry_model_tag_key")]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class ModelVersionQuerySet(models.QuerySet["ModelVersion"]):
    def live(self) -> "ModelVersionQuerySet":
        return self.filter(deleted_at__isnull=True)


class ModelVersion(models.Model):
    """One numbered version of a registered model. Deleting it is soft."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    source = models.TextField(blank=True, default="")
    # Where the artifacts really are when `source` names another version (`models:/name/N`).
    storage_location = models.TextField(blank=True, default="")
    run_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    run_link = models.TextField(blank=True, default="")
    description = models.TextField(blank=True, default="")
    status = models.CharField(
        max_length=32, choices=VersionStatus.choices, default=VersionStatus.READY
    )
    status_message = models.TextField(blank=True, default="")
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.NONE)
    # MLflow 3 fields, stored as given.
    mlflow_model_id = models.CharField(max_length=64, blank=True, default="")
    params = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=list, blank=True)
    deployment_job_state = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["model_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="registry_version_unique")
        ]
        indexes = [
            models.Index(
                fields=["model", "stage", "-version"],
                name="registry_version_live_stage",
                condition=Q(deleted_at__isnull=True),
            ),
            models.Index(fields=["updated_at"], name="registry_version_updated"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.version}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class ModelVersionTag(models.Model):
    """A key/value tag on a model version."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="tags")
    key = models.CharField(max_length=TAG_KEY_MAX_LENGTH)
    value = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "key"], name="registry_version_tag_unique")
        ]
        indexes = [models.Index(fields=["key"], name="registry_version_tag_key")]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class ModelAlias(models.Model):
    """A named pointer from a registered model to one of its versions."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=ALIAS_MAX_LENGTH)
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="aliases")
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["alias"]
        constraints = [
            models.UniqueConstraint(fields=["model", "alias"], name="registry_alias_unique")
        ]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.alias}"


def append_only_triggers() -> list[pgtrigger.Trigger]:
    """PostgreSQL triggers that refuse UPDATE, DELETE and TRUNCATE on a table (a no-op elsewhere).

    They are created by migrations, only on PostgreSQL (django-pgtrigger skips other vendors).
    The hash chain and signed checkpoints detect tampering; these make the accidental or casual
    kind impossible: no application code, admin action or stray SQL can edit the history.
    """
    refuse = (
        "RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP "
        "USING HINT = 'History is never edited or deleted; see docs/auditing.md.'; "
        "RETURN NULL;"
    )
    return [
        pgtrigger.Trigger(
            name="append_only",
            level=pgtrigger.Row,
            when=pgtrigger.Before,
            operation=pgtrigger.Update | pgtrigger.Delete,
            func=refuse,
        ),
        pgtrigger.Trigger(
            name="append_only_truncate",
            level=pgtrigger.Statement,
            when=pgtrigger.Before,
            operation=pgtrigger.Truncate,
            func=refuse,
        ),
    ]


class Event(models.Model):
    """One change, appended in the transaction that made it; never updated or deleted.

    Model and user are kept as plain ids and text, not foreign keys, so the row survives their
    deletion unchanged and the hash chain stays verifiable.
    """

    seq = models.BigIntegerField(primary_key=True)
    type = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_name = models.CharField(max_length=150)
    actor_token = models.CharField(max_length=32, blank=True, default="")
    source = models.CharField(max_length=16)
    request_id = models.CharField(max_length=64, blank=True, default="")
    client_ip = models.CharField(max_length=64, blank=True, default="")
    model_id = models.BigIntegerField(null=True, blank=True)
    model_name = models.CharField(max_length=NAME_MAX_LENGTH, blank=True, default="")
    version = models.PositiveIntegerField(null=True, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    comment = models.TextField(blank=True, default="")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]
        indexes = [
            models.Index(fields=["model_id", "seq"], name="registry_event_model"),
            models.Index(fields=["model_name", "seq"], name="registry_event_model_name"),
            models.Index(fields=["actor_name", "seq"], name="registry_event_actor"),
        ]
        triggers = append_only_triggers()

    def __str__(self) -> str:
        return f"#{self.seq} {self.type}"


class EventChainHead(models.Model):
    """The last sequence number and hash; its row lock serialises appends to the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)
    # When a writer last queued the publishing task (None: no task waiting). Read and set under
    # the row lock every append takes anyway, so one task is queued per burst of events, not
    # one per event; the task clears it before it reads the outbox (registry/publishing.py).
    publish_queued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"head #{self.seq}"


class EventCheckpoint(models.Model):
    """A signed statement that the chain ended at `seq` with `hash` at `created_at`.

    Kept apart from the events and signed with a key that is not in the database, so cutting off
    the tail of the log, or rewriting it with recomputed hashes, no longer matches a checkpoint.
    """

    seq = models.BigIntegerField(db_index=True)
    hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    # Which key signed it (a fingerprint, not the key), so keys can be rotated.
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq", "pk"]
        triggers = append_only_triggers()

    def __str__(self) -> str:
        return f"checkpoint #{self.seq}"


class EventOutbox(models.Model):
    """An event not yet handed to every consumer; the row is deleted once it has been."""

    event = models.OneToOneField(Event, primary_key=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"outbox #{self.event_id}"


class RegisteredModelUserGrant(UserObjectPermissionBase):
    """A user's level on one model (django-guardian, direct foreign key: goes with the model)."""

    content_object = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["user", "content_object"], name="registry_user_grant")]


class RegisteredModelGroupGrant(GroupObjectPermissionBase):
    """A group's level on one model (django-guardian, direct foreign key: goes with the model)."""

    content_object = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["group", "content_object"], name="registry_group_grant")]
