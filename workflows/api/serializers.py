from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api import InputSerializer
from registry.api.serializers import TagsField
from registry.permissions import GRANTABLE
from workflows.models import Comment, Policy, Review, TransitionRequest

# What parse_target and validate_alias accept, as OpenAPI patterns (a stage in any case works
# too; the schema names the canonical spelling).
_ALIAS = r"(?![Ll][Aa][Tt][Ee][Ss][Tt]$)(?![Vv][0-9]+$)[\w-]{1,255}"
TARGET_PATTERN = rf"^(Staging|Production|Archived|alias:{_ALIAS})$"
ALIAS_OR_EMPTY_PATTERN = rf"^(?:{_ALIAS})?$"


@extend_schema_field({"type": "string", "pattern": TARGET_PATTERN})
class TargetField(serializers.CharField):
    """Staging, Production, Archived or alias:<name> (workflows.policies.parse_target)."""


@extend_schema_field({"type": "string", "enum": [level.name for level in GRANTABLE]})
class LevelField(serializers.CharField):
    """A permission level name (any case is accepted)."""


class PolicyOutSerializer(serializers.ModelSerializer):
    model = serializers.SerializerMethodField()

    class Meta:
        model = Policy
        fields = [
            "id",
            "model",
            "target",
            "required_approvals",
            "approver_level",
            "allow_self_approval",
            "required_tags",
            "expires_after_hours",
            "archive_existing_versions",
            "move_alias",
            "created_at",
            "updated_at",
        ]

    def get_model(self, policy: Policy) -> str | None:
        return policy.model.name if policy.model is not None else None


class _PolicyFields(InputSerializer):
    required_approvals = serializers.IntegerField(min_value=1, max_value=100, required=False)
    approver_level = LevelField(required=False)
    allow_self_approval = serializers.BooleanField(required=False)
    required_tags = TagsField(required=False)
    expires_after_hours = serializers.IntegerField(
        min_value=1, max_value=8760, required=False, allow_null=True
    )
    archive_existing_versions = serializers.BooleanField(
        required=False, help_text="Staging and Production targets only."
    )
    move_alias = serializers.CharField(
        required=False,
        allow_blank=True,
        validators=[RegexValidator(ALIAS_OR_EMPTY_PATTERN, "Not a valid alias name.")],
        help_text="An alias the applied request moves too; stage targets only.",
    )


class PolicyCreateInSerializer(_PolicyFields):
    model = serializers.CharField(allow_null=True, help_text="A model name, or null for all.")
    target = TargetField()


class PolicyUpdateInSerializer(_PolicyFields):
    pass


class ReviewOutSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer_name")

    class Meta:
        model = Review
        fields = ["reviewer", "decision", "comment", "created_at"]


class RequestOutSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name")
    version = serializers.IntegerField(source="version.version")
    requester = serializers.CharField(source="requester_name")
    reviews = ReviewOutSerializer(many=True, read_only=True)
    approvals_missing = serializers.SerializerMethodField()

    class Meta:
        model = TransitionRequest
        fields = [
            "id",
            "model",
            "version",
            "target",
            "from_stage",
            "status",
            "status_reason",
            "requester",
            "comment",
            "required_approvals",
            "approvals_missing",
            "approver_level",
            "allow_self_approval",
            "required_tags",
            "archive_existing_versions",
            "move_alias",
            "reviews",
            "created_at",
            "updated_at",
            "expires_at",
            "decided_at",
            "applied_at",
        ]

    def get_approvals_missing(self, request: TransitionRequest) -> int:
        approvals = sum(1 for review in request.reviews.all() if review.decision == "APPROVE")
        return max(0, request.required_approvals - approvals)


class RequestCreateInSerializer(InputSerializer):
    model = serializers.CharField()
    version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    target = TargetField()
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class DecisionInSerializer(InputSerializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class CommentOutSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author_name")
    model = serializers.CharField(source="version.model.name")
    version = serializers.IntegerField(source="version.version")

    class Meta:
        model = Comment
        fields = ["id", "model", "version", "author", "text", "created_at", "updated_at"]


class CommentInSerializer(InputSerializer):
    text = serializers.CharField(max_length=10_000)
