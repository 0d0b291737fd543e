"""Input and output shapes of the native registry API."""

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api import InputSerializer
from config.openapi import NO_NUL, NOT_BLANK
from registry.choices import Stage, event_outcome
from registry.models import (
    NAME_MAX_LENGTH,
    TAG_KEY_MAX_LENGTH,
    TAG_VALUE_MAX_LENGTH,
    Event,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
)
from registry.permissions import GRANTABLE
from registry.validation import (
    MODEL_NAME_PATTERN,
    RUN_ID_MAX_LENGTH,
    SOURCE_PATTERN,
)


def model_name_field() -> serializers.CharField:
    """A new model name, with validate_model_name's rules (the schema shows them)."""
    return serializers.CharField(
        max_length=NAME_MAX_LENGTH,
        trim_whitespace=False,
        validators=[RegexValidator(MODEL_NAME_PATTERN, "No '/', ':' or NUL, and not blank.")],
    )


@extend_schema_field(
    {
        "type": "object",
        # OpenAPI 3.0 has no `propertyNames`: the rule on keys is said in words.
        "description": f"Tag keys: at most {TAG_KEY_MAX_LENGTH} letters, digits, spaces and "
        "`_ - . / :` (`\\w` as in Python), not starting with `/`, no `..` segment.",
        "additionalProperties": {
            "type": "string",
            "maxLength": TAG_VALUE_MAX_LENGTH,
            "pattern": NO_NUL,
        },
    }
)
class TagsField(serializers.DictField):
    """Tags as a `{key: value}` object (keys: letters, digits, spaces and `_ - . / :`)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(child=serializers.CharField(allow_blank=True), **kwargs)  # type: ignore[arg-type]

    def to_representation(self, value: object) -> dict[str, str]:
        return {tag.key: tag.value for tag in value.all()}  # type: ignore[attr-defined]


# --- output ---------------------------------------------------------------------------------


class ModelAliasRefSerializer(serializers.Serializer):
    alias = serializers.CharField()
    version = serializers.IntegerField(source="version.version")


class ModelOutSerializer(serializers.ModelSerializer):
    tags = TagsField(read_only=True)
    aliases = ModelAliasRefSerializer(many=True, read_only=True)
    created_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = RegisteredModel
        fields = [
            "id",
            "name",
            "description",
            "tags",
            "aliases",
            "last_version",
            "created_by",
            "created_at",
            "updated_at",
        ]


class VersionOutSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    tags = TagsField(read_only=True)
    aliases: serializers.Field = serializers.SlugRelatedField(
        slug_field="alias", many=True, read_only=True
    )
    created_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = ModelVersion
        fields = [
            "model",
            "version",
            "stage",
            "status",
            "source",
            "run_id",
            "run_link",
            "description",
            "tags",
            "aliases",
            "created_by",
            "created_at",
            "updated_at",
        ]


class AliasOutSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    version = serializers.IntegerField(source="version.version", read_only=True)

    class Meta:
        model = ModelAlias
        fields = ["model", "alias", "version", "updated_at"]


class EventOutSerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField()
    outcome = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = [
            "seq",
            "type",
            "outcome",
            "created_at",
            "actor",
            "source",
            "request_id",
            "model",
            "version",
            "before",
            "after",
            "comment",
            "prev_hash",
            "hash",
        ]

    def get_outcome(self, event: Event) -> str:
        return event_outcome(event.type).value

    def get_actor(self, event: Event) -> dict:
        return {
            "id": event.actor_id,
            "name": event.actor_name,
            "token": event.actor_token,
            "client_ip": event.client_ip,
        }

    def get_model(self, event: Event) -> dict:
        return {"id": event.model_id, "name": event.model_name}


# --- input ----------------------------------------------------------------------------------


class ModelCreateInSerializer(InputSerializer):
    name = model_name_field()
    description = serializers.CharField(required=False, allow_blank=True, default="")
    tags = TagsField(required=False, default=dict)


class ModelUpdateInSerializer(InputSerializer):
    description = serializers.CharField(allow_blank=True)


class ModelRenameInSerializer(InputSerializer):
    new_name = model_name_field()


class VersionCreateInSerializer(InputSerializer):
    source = serializers.CharField(  # type: ignore[assignment]
        trim_whitespace=False,
        validators=[RegexValidator(SOURCE_PATTERN, "Not blank, and no '..' path segment.")],
    )
    run_id = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=RUN_ID_MAX_LENGTH
    )
    run_link = serializers.CharField(required=False, allow_blank=True, default="")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    tags = TagsField(required=False, default=dict)


class VersionUpdateInSerializer(InputSerializer):
    description = serializers.CharField(allow_blank=True)


@extend_schema_field({"type": "string", "enum": [stage.value for stage in Stage]})
class StageField(serializers.CharField):
    """A stage name (any case is accepted)."""


class VersionStageInSerializer(InputSerializer):
    stage = StageField()
    archive_existing_versions = serializers.BooleanField(required=False, default=False)
    comment = serializers.CharField(required=False, allow_blank=True, default="")

    def validate_stage(self, value: str) -> Stage:
        try:
            return Stage.parse(value)
        except ValueError:
            choices = ", ".join(stage.value for stage in Stage)
            raise serializers.ValidationError(f"Expected one of {choices}.") from None


class TagSetInSerializer(InputSerializer):
    value = serializers.CharField(
        allow_blank=True, max_length=TAG_VALUE_MAX_LENGTH, trim_whitespace=False
    )


class AliasSetInSerializer(InputSerializer):
    version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    expected_version = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, max_value=2**31 - 1
    )


def _acl_entry(principal: str) -> dict[str, object]:
    return {
        "type": "object",
        "properties": {
            principal: {"type": "string", "pattern": NOT_BLANK},
            "permission_level": {"type": "string", "enum": [level.name for level in GRANTABLE]},
        },
        "required": [principal, "permission_level"],
        "additionalProperties": False,
    }


class AclEntryInSerializer(InputSerializer):
    """One grant: to a user or to a group (exactly one of the two names)."""

    user_name = serializers.CharField(required=False)
    group_name = serializers.CharField(required=False)
    permission_level = serializers.ChoiceField(choices=[level.name for level in GRANTABLE])

    def validate(self, attrs: dict[str, object]) -> dict[str, object]:
        if ("user_name" in attrs) == ("group_name" in attrs):
            raise serializers.ValidationError("Name exactly one of user_name or group_name.")
        return attrs


@extend_schema_field(
    {"type": "array", "items": {"oneOf": [_acl_entry("user_name"), _acl_entry("group_name")]}}
)
class AclField(serializers.ListField):
    """The entries of an access-control list (registry.acl.acl_parse reads them)."""


class PermissionsInSerializer(InputSerializer):
    access_control_list = AclField(
        child=AclEntryInSerializer(),
        help_text="[{user_name | group_name, permission_level}]; PUT replaces, PATCH merges.",
    )
