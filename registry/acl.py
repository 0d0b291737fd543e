"""Reading an access-control list from a request body (native and Databricks routes alike)."""

from __future__ import annotations

from typing import Any

from config.errors import InvalidParameter
from registry.permissions import Level


def acl_parse(entries: Any) -> tuple[dict[str, Level | None], dict[str, Level | None]]:
    """`[{"user_name"|"group_name": …, "permission_level": …}]` as (users, groups) level maps."""
    if not isinstance(entries, list):
        raise InvalidParameter(
            "access_control_list must be a list.", fields={"access_control_list": ["Not a list."]}
        )
    users: dict[str, Level | None] = {}
    groups: dict[str, Level | None] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidParameter(
                "Each access_control_list entry must be an object.",
                fields={"access_control_list": ["Entries must be objects."]},
            )
        if "service_principal_name" in entry:
            raise InvalidParameter(
                "Service principals are not supported; grant to a user_name or group_name.",
                fields={"access_control_list": ["service_principal_name is not supported."]},
            )
        principals = [key for key in ("user_name", "group_name") if entry.get(key)]
        if len(principals) != 1 or not isinstance(entry[principals[0]], str):
            raise InvalidParameter(
                "Each access_control_list entry names exactly one user_name or group_name.",
                fields={"access_control_list": ["Name one user_name or group_name."]},
            )
        raw_level = entry.get("permission_level")
        try:
            level = Level.parse(raw_level)
        except ValueError:
            names = ", ".join(level.name for level in Level if level is not Level.NONE)
            raise InvalidParameter(
                f"Invalid permission_level '{raw_level}': expected one of {names}.",
                fields={"access_control_list": [f"permission_level must be one of {names}."]},
            ) from None
        target = users if principals[0] == "user_name" else groups
        target[entry[principals[0]]] = level
    return users, groups
