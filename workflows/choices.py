from django.db import models


class RequestStatus(models.TextChoices):
    PENDING = "PENDING"
    APPROVED = "APPROVED"  # quorum reached; the apply task has not finished yet
    APPLIED = "APPLIED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"


OPEN_STATUSES = (RequestStatus.PENDING, RequestStatus.APPROVED)


class Decision(models.TextChoices):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


class WorkflowEvent(models.TextChoices):
    POLICY_CREATED = "policy.created"
    POLICY_UPDATED = "policy.updated"
    POLICY_DELETED = "policy.deleted"
    REQUEST_CREATED = "transition_request.created"
    REQUEST_APPROVAL_RECORDED = "transition_request.approval_recorded"
    REQUEST_APPROVED = "transition_request.approved"
    REQUEST_REJECTED = "transition_request.rejected"
    REQUEST_CANCELLED = "transition_request.cancelled"
    REQUEST_EXPIRED = "transition_request.expired"
    REQUEST_APPLIED = "transition_request.applied"
    REQUEST_FAILED = "transition_request.failed"
    # Reviews the rules refused (registry/refusals.py): nothing changed, the attempt is kept.
    REQUEST_APPROVAL_REFUSED = "transition_request.approval_refused"
    REQUEST_REJECTION_REFUSED = "transition_request.rejection_refused"
    COMMENT_CREATED = "comment.created"
    COMMENT_UPDATED = "comment.updated"
    COMMENT_DELETED = "comment.deleted"
