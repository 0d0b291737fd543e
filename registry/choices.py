from django.db import models


class Stage(models.TextChoices):
    NONE = "None", "None"
    STAGING = "Staging", "Staging"
    PRODUCTION = "Production", "Production"
    ARCHIVED = "Archived", "Archived"

    @classmethod
    def parse(cls, value: str) -> "Stage":
        """The canonical stage for a case-insensitive name; ValueError when there is none."""
        for stage in cls:
            if stage.value.lower() == str(value).strip().lower():
                return stage
        raise ValueError(value)


class VersionStatus(models.TextChoices):
    READY = "READY", "Ready"


class EventType(models.TextChoices):
    MODEL_CREATED = "registered_model.created"
    MODEL_UPDATED = "registered_model.updated"
    MODEL_RENAMED = "registered_model.renamed"
    MODEL_DELETED = "registered_model.deleted"
    MODEL_PERMISSIONS_UPDATED = "registered_model_permissions.updated"
    MODEL_TAG_SET = "registered_model_tag.set"
    MODEL_TAG_DELETED = "registered_model_tag.deleted"
    VERSION_CREATED = "model_version.created"
    VERSION_UPDATED = "model_version.updated"
    VERSION_DELETED = "model_version.deleted"
    VERSION_STAGE_TRANSITIONED = "model_version.stage_transitioned"
    VERSION_TAG_SET = "model_version_tag.set"
    VERSION_TAG_DELETED = "model_version_tag.deleted"
    ALIAS_SET = "model_version_alias.set"
    ALIAS_DELETED = "model_version_alias.deleted"
    HISTORY_EXPORTED = "history.exported"
    # Refused attempts that matter (registry/refusals.py): nothing changed, the attempt is kept.
    VERSION_STAGE_TRANSITION_REFUSED = "model_version.stage_transition_refused"
    VERSION_DELETE_REFUSED = "model_version.delete_refused"
    ALIAS_SET_REFUSED = "model_version_alias.set_refused"
    ALIAS_DELETE_REFUSED = "model_version_alias.delete_refused"


class Outcome(models.TextChoices):
    """What came of the action an event records; a function of its type (see event_outcome)."""

    DONE = "done"  # the change was made
    REFUSED = "refused"  # a refused attempt: nothing changed
    FAILED = "failed"  # an approved transition request could not be applied


REFUSED_SUFFIX = "_refused"


def event_outcome(type: str) -> Outcome:
    """The outcome an event type records. Being derived from the type, it is covered by the
    event's hash without a column of its own, and readers of older events get it too."""
    if type.endswith(REFUSED_SUFFIX):
        return Outcome.REFUSED
    if type.endswith(".failed"):
        return Outcome.FAILED
    return Outcome.DONE
