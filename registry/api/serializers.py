"""Input and output shapes of the native registry API."""

from rest_framework import serializers

from config.api import InputSerializer
from registry.choices import Stage
from registry.models import (
    NAME_MAX_LENGTH,
    TAG_VALUE_MAX_LENGTH,
    Event,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
)


class TagsField(serializers.DictField):
    """Tags as a `{key: value}` object."""

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

    class Meta:
        model = Event
        fields = [
            "seq",
            "type",
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

    def get_actor(self, event: Event) -> dict:
        return {"id": event.actor_id, "name": event.actor_name, "token": event.actor_token}

    def get_model(self, event: Event) -> dict:
        return {"id": event.model_id, "name": event.model_name}


# --- input ----------------------------------------------------------------------------------


class ModelCreateInSerializer(InputSerializer):
    name = serializers.CharField(max_length=NAME_MAX_LENGTH + 1, trim_whitespace=False)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    tags = TagsField(required=False, default=dict)


class ModelUpdateInSerializer(InputSerializer):
    description = serializers.CharField(allow_blank=True)


class ModelRenameInSerializer(InputSerializer):
    new_name = serializers.CharField(max_length=NAME_MAX_LENGTH + 1, trim_whitespace=False)


class VersionCreateInSerializer(InputSerializer):
    source = serializers.CharField(trim_whitespace=False)  # type: ignore[assignment]
    run_id = serializers.CharField(required=False, allow_blank=True, default="")
    run_link = serializers.CharField(required=False, allow_blank=True, default="")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    tags = TagsField(required=False, default=dict)


class VersionUpdateInSerializer(InputSerializer):
    description = serializers.CharField(allow_blank=True)


class VersionStageInSerializer(InputSerializer):
    stage = serializers.CharField()
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


class PermissionsInSerializer(InputSerializer):
    access_control_list = serializers.ListField(
        child=serializers.DictField(),
        help_text="[{user_name | group_name, permission_level}]; PUT replaces, PATCH merges.",
    )
