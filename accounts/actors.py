"""Who is acting: passed explicitly to every service and recorded on every event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

    from accounts.models import ApiToken


class Source:
    API = "api"
    MLFLOW = "mlflow"
    ADMIN = "admin"
    TASK = "task"
    SHELL = "shell"


@dataclass(frozen=True, slots=True)
class Actor:
    """The user (or the system) behind a change, and where the change came from."""

    user: User | None
    source: str = Source.SHELL
    token_prefix: str = ""
    token: ApiToken | None = None
    request_id: str = ""
    client_ip: str = ""
    # Reads may use permission levels computed in the last MODELGATE_POLL_AUTH_TTL seconds
    # (the poll path only; see registry/api/polling.py).
    recent_permissions: bool = False
    # The registry itself acting (a task applying an approval, a migration): every level.
    is_system: bool = False
    # Per-actor memo of permission look-ups (registry-wide level, groups), filled on first use.
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.user is not None else None

    @property
    def name(self) -> str:
        if self.user is None:
            return "system"
        return self.user.get_username()

    @classmethod
    def system(cls, source: str = Source.TASK, request_id: str = "") -> Actor:
        """The registry itself; `request_id` names the run (a task's id, a command's)."""
        return cls(user=None, source=source, is_system=True, request_id=request_id)

    @classmethod
    def shell(cls, user: User | None = None) -> Actor:
        """Someone running a management command: the user it names, else the system. Each
        run gets its own request id, so its events can be told apart from other runs'."""
        request_id = uuid.uuid4().hex
        if user is None:
            return cls.system(source=Source.SHELL, request_id=request_id)
        return cls(user=user, source=Source.SHELL, request_id=request_id)

    @classmethod
    def of_request(cls, request: Any, source: str = Source.API) -> Actor:
        """The request's actor, made once per request: it memoises permission look-ups, so
        every check in one request shares them."""
        actor = getattr(request, "_modelgate_actor", None)
        if actor is None:
            actor = cls.from_request(request, source=source)
            request._modelgate_actor = actor
        return actor

    @classmethod
    def from_request(
        cls, request: Any, source: str = Source.API, recent_permissions: bool = False
    ) -> Actor:
        user: User | AnonymousUser | None = getattr(request, "user", None)
        from accounts.models import ApiToken

        auth = getattr(request, "auth", None)
        return cls(
            user=user if user is not None and user.is_authenticated else None,  # type: ignore[arg-type]
            source=source,
            token_prefix=auth.prefix if isinstance(auth, ApiToken) else "",
            token=auth if isinstance(auth, ApiToken) else None,
            request_id=getattr(request, "request_id", ""),
            client_ip=request.META.get("REMOTE_ADDR", ""),
            recent_permissions=recent_permissions,
        )
