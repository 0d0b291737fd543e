"""Approval policies, transition requests and their reviews, and comments on versions."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from registry.models import ModelVersion, RegisteredModel
from workflows.choices import Decision, RequestStatus

TARGET_MAX_LENGTH = 262  # "alias:" + a 255-character alias


class Policy(models.Model):
    """What it takes to reach a target (a stage, or `alias:<name>`) of one model or of all."""

    model = models.ForeignKey(
        RegisteredModel, null=True, blank=True, on_delete=models.CASCADE, related_name="policies"
    )
    target = models.CharField(max_length=TARGET_MAX_LENGTH)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    approver_level = models.CharField(max_length=40)
    allow_self_approval = models.BooleanField(default=False)
    required_tags = models.JSONField(default=dict, blank=True)
    expires_after_hours = models.PositiveIntegerField(null=True, blank=True, default=168)
    archive_existing_versions = models.BooleanField(default=False)
    move_alias = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "policies"
        ordering = ["model_id", "target"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "target"],
                condition=Q(model__isnull=False),
                name="workflows_policy_model_target",
            ),
            models.UniqueConstraint(
                fields=["target"],
                condition=Q(model__isnull=True),
                name="workflows_policy_registry_target",
            ),
            models.CheckConstraint(
                condition=Q(required_approvals__gte=1), name="workflows_policy_approvals_min"
            ),
        ]

    def __str__(self) -> str:
        scope = self.model.name if self.model is not None else "registry-wide"
        return f"{self.target} ({scope})"


class TransitionRequest(models.Model):
    """Someone asks for a version to reach a target; reviewers decide; a task applies it."""

    model = models.ForeignKey(
        RegisteredModel, on_delete=models.CASCADE, related_name="transition_requests"
    )
    version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="transition_requests"
    )
    target = models.CharField(max_length=TARGET_MAX_LENGTH)
    from_stage = models.CharField(max_length=16)
    status = models.CharField(
        max_length=16, choices=RequestStatus.choices, default=RequestStatus.PENDING
    )
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    requester_name = models.CharField(max_length=150)
    comment = models.TextField(blank=True, default="")
    # The rules in force when the request was made (a later policy change does not move them).
    policy_id_at_creation = models.BigIntegerField(null=True, blank=True)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    approver_level = models.CharField(max_length=40)
    allow_self_approval = models.BooleanField(default=False)
    required_tags = models.JSONField(default=dict, blank=True)
    archive_existing_versions = models.BooleanField(default=False)
    move_alias = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    status_reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "model"], name="workflows_request_status")]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "target", "requester"],
                condition=Q(status="PENDING"),
                name="workflows_one_open_request",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.model.name} v{self.version.version} → {self.target}"

    @property
    def is_alias_target(self) -> bool:
        return self.target.startswith("alias:")


class Review(models.Model):
    """One reviewer's decision on a request; each reviewer decides once.

    The requester and the version's creator are copied here so the database itself refuses a
    self-approval when the policy forbids it, whatever code path wrote the row.
    """

    request = models.ForeignKey(TransitionRequest, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    reviewer_name = models.CharField(max_length=150)
    decision = models.CharField(max_length=8, choices=Decision.choices)
    comment = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    requester_id_copy = models.BigIntegerField(null=True)
    version_creator_id_copy = models.BigIntegerField(null=True)
    self_approval_allowed = models.BooleanField(default=False)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["request", "reviewer"], name="workflows_review_once"),
            models.CheckConstraint(
                condition=Q(self_approval_allowed=True)
                | Q(decision="REJECT")
                | (
                    (Q(requester_id_copy__isnull=True) | ~Q(reviewer_id=F("requester_id_copy")))
                    & (
                        Q(version_creator_id_copy__isnull=True)
                        | ~Q(reviewer_id=F("version_creator_id_copy"))
                    )
                ),
                name="workflows_no_self_approval",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reviewer_name} {self.decision} #{self.request_id}"


class Comment(models.Model):
    """A comment on a model version; its author may edit or delete it."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_name = models.CharField(max_length=150)
    text = models.TextField()
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.author_name} on {self.version}"
