"""Every write to the registry goes through these functions (see registry/services/*.py)."""

from registry.services.aliases import alias_delete, alias_set
from registry.services.models import (
    model_create,
    model_delete,
    model_lock,
    model_rename,
    model_tag_delete,
    model_tag_set,
    model_update,
)
from registry.services.permissions import permissions_of, permissions_update
from registry.services.versions import (
    version_create,
    version_delete,
    version_tag_delete,
    version_tag_set,
    version_transition,
    version_update,
)

__all__ = [
    "alias_delete",
    "alias_set",
    "model_create",
    "model_delete",
    "model_lock",
    "model_rename",
    "model_tag_delete",
    "model_tag_set",
    "model_update",
    "permissions_of",
    "permissions_update",
    "version_create",
    "version_delete",
    "version_tag_delete",
    "version_tag_set",
    "version_transition",
    "version_update",
]
