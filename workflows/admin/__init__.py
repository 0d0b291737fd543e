"""Admin screens of the approval workflow. Every change goes through the workflow services with
the admin actor, so the history records it and the same rules hold as in the API."""

from workflows.admin.comments import CommentAdmin
from workflows.admin.policies import PolicyAdmin, PolicyForm
from workflows.admin.requests import TransitionRequestAdmin

__all__ = ["CommentAdmin", "PolicyAdmin", "PolicyForm", "TransitionRequestAdmin"]
