"""Checks other apps plug into guarded registry writes, named in MODELGATE_WRITE_GUARDS.

The registry does not know about approval policies (workflows depends on registry, not the other
way round). Stage transitions and alias moves call `guards_check` inside their transaction, after
taking their locks; a guard raises PermissionDenied to refuse the write, whoever the actor is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from accounts.actors import Actor
from registry.models import ModelVersion, RegisteredModel


@dataclass(frozen=True)
class GuardedWrite:
    """A write a policy may guard: a version moving to a stage, or an alias set or removed."""

    model: RegisteredModel
    target: str  # a stage ("Production") or an alias ("alias:production")
    version: ModelVersion | None
    actor: Actor
    # The approved transition request being applied, if this write is its application.
    approval: int | None = None


Guard = Callable[[GuardedWrite], None]


@cache
def _guards(paths: tuple[str, ...]) -> list[Guard]:
    return [import_string(path) for path in paths]


def guards_check(write: GuardedWrite) -> None:
    for guard in _guards(tuple(settings.MODELGATE_WRITE_GUARDS)):
        guard(write)


def alias_target(alias: str) -> str:
    return f"alias:{alias}"
