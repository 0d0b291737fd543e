from __future__ import annotations

from rest_framework import serializers

from config.api import InputSerializer
from workflows.models import Comment, Policy, Review, TransitionRequest


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
    approver_level = serializers.CharField(required=False)
    allow_self_approval = serializers.BooleanField(required=False)
    required_tags = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False
    )
    expires_after_hours = serializers.IntegerField(
        min_value=1, max_value=8760, required=False, allow_null=True
    )
    archive_existing_versions = serializers.BooleanField(required=False)
    move_alias = serializers.CharField(required=False, allow_blank=True)


class PolicyCreateInSerializer(_PolicyFields):
    model = serializers.CharField(allow_null=True, help_text="A model name, or null for all.")
    target = serializers.CharField(help_text="Staging, Production, Archived or alias:<name>.")


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
    target = serializers.CharField(help_text="Staging, Production, Archived or alias:<name>.")
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
