"""The approval policy as a registry write guard (settings.MODELGATE_WRITE_GUARDS)."""

from __future__ import annotations

from config.errors import PermissionDenied
from registry.guards import GuardedWrite
from workflows.choices import RequestStatus
from workflows.models import TransitionRequest
from workflows.policies import ALIAS_PREFIX, policy_effective

REQUEST_FLOW = (
    "ask for it with a transition request (POST /api/v1/transition-requests/, or "
    "transition-requests/create on the MLflow routes)"
)


def _applies(write: GuardedWrite) -> bool:
    """Whether this write is the application of an approved request that covers it."""
    if write.approval is None:
        return False
    request = TransitionRequest.objects.filter(
        pk=write.approval, model=write.model, status=RequestStatus.APPROVED
    ).first()
    if request is None:
        return False
    moved_alias = ALIAS_PREFIX + request.move_alias if request.move_alias else None
    return write.target in (request.target, moved_alias)


def policy_guard(write: GuardedWrite) -> None:
    """Refuse a direct write to a target a policy guards, for everyone, superusers included."""
    if policy_effective(write.model, write.target) is None or _applies(write):
        return
    if write.target.startswith(ALIAS_PREFIX):
        what = f"Alias '{write.target.removeprefix(ALIAS_PREFIX)}'"
    else:
        what = f"Stage {write.target}"
    raise PermissionDenied(
        f"{what} of model '{write.model.name}' is protected by an approval policy: {REQUEST_FLOW}."
    )
