"""Refused attempts that matter, kept in the history although they changed nothing.

A write an approval policy blocks (a direct transition to a guarded stage, a protected alias set
or removed) and a review the rules refuse (self-approval, a level too low) are recorded as
`…_refused` events. The refused call rolls back, so its event cannot be written in its own
transaction: the service notes the refusal on the error it raises (`refusal_note`), and once the
service's transaction has rolled back, `refusals_recorded` appends the event in a transaction of
its own. The caller still gets the error, and the API the same 4xx.

Inside a caller's transaction the record is a savepoint of it: kept when the caller handles the
error and commits (an admin action), gone when the error rolls the caller back too (the admin's
change form), in which case the caller records it again with `refusal_record` once outside.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from django.db import transaction

from accounts.actors import Actor
from config.errors import DomainError, PermissionDenied
from registry.events import event_record
from registry.models import Event, RegisteredModel

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Refusal:
    """The event a refused attempt leaves: `before` the subject as it was (and stayed),
    `after` what was asked for, with the reason under `refusal`."""

    type: str
    actor: Actor
    model: RegisteredModel
    version: int | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] = field(default_factory=dict)
    comment: str = ""
    event: Event | None = None


def refusal_note(error: DomainError, refusal: Refusal) -> DomainError:
    """Attach `refusal` to `error`, with the error's message as the reason; returns `error`."""
    if refusal.actor.user is not None:  # only a signed-in user's attempt says who tried
        refusal.after = {**refusal.after, "refusal": error.message}
        error.refusal = refusal
    return error


@contextmanager
def refusal_noted(describe: Callable[[], Refusal]) -> Iterator[None]:
    """Note the refusal `describe()` builds on a PermissionDenied raised in the block (built
    only then, so a write that passes costs nothing more)."""
    try:
        yield
    except PermissionDenied as error:
        refusal_note(error, describe())
        raise


def refusal_record(error: DomainError) -> Event | None:
    """Append the refusal noted on `error`, unless the history holds it already."""
    refusal = error.refusal
    if not isinstance(refusal, Refusal):
        return None
    recorded = refusal.event
    if recorded is not None and Event.objects.filter(seq=recorded.seq, hash=recorded.hash).exists():
        return recorded
    with transaction.atomic():
        refusal.event = event_record(
            type=refusal.type,
            actor=refusal.actor,
            model=refusal.model,
            version=refusal.version,
            before=refusal.before,
            after=refusal.after,
            comment=refusal.comment,
        )
    return refusal.event


def refusals_recorded(service: Callable[P, R]) -> Callable[P, R]:
    """Record the refusals a service notes, after its transaction rolled back.

    Goes above `@transaction.atomic`, so the service's own transaction has ended (or its
    savepoint has been rolled back) when the record is written.
    """

    @functools.wraps(service)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return service(*args, **kwargs)
        except DomainError as error:
            refusal_record(error)
            raise

    return wrapper
