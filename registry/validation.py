"""Rules on names, tags, aliases and sources, shared by every door into the registry."""

import re

from config.errors import InvalidParameter
from config.openapi import PY_SPACE
from registry.choices import Stage
from registry.models import (
    ALIAS_MAX_LENGTH,
    NAME_MAX_LENGTH,
    TAG_KEY_MAX_LENGTH,
    TAG_VALUE_MAX_LENGTH,
)

# Matched whole (fullmatch): `$` alone also matches before a final newline.
_ALIAS_RE = re.compile(r"^[\w-]+$")
_VERSION_ALIAS_RE = re.compile(r"^v\d+$", re.IGNORECASE)
_TAG_KEY_RE = re.compile(r"^[\w\-./: ]+$")
# The same rules as OpenAPI patterns (config.openapi), for an alias or a tag key in a URL path
# (where a tag key cannot hold "/"); `\w` as in Python.
ALIAS_PATTERN = r"^(?![Ll][Aa][Tt][Ee][Ss][Tt]$)(?![Vv][0-9]+$)[\w-]+$"
TAG_KEY_PATH_PATTERN = r"^(?!\.\.$)[\w\-.: ]+$"
TAG_KEY_PATTERN = r"^(?!/)(?!(?:[^/]*/)*\.\.(?:/|$))[\w\-./: ]+$"
# validate_model_name and validate_source as patterns: no "/", ":" or NUL in a name, and
# something besides whitespace (str.strip's, spelled out); no ".." segment in a source.
MODEL_NAME_PATTERN = rf"^[^/:\u0000]*[^{PY_SPACE}/:\u0000][^/:\u0000]*$"
SOURCE_PATTERN = rf"^(?!(?:.*[/\\])?\.\.(?:[/\\]|$))[^\u0000]*[^{PY_SPACE}\u0000][^\u0000]*$"
RUN_ID_MAX_LENGTH = 64


def _fail(field: str, message: str) -> InvalidParameter:
    return InvalidParameter(message, fields={field: [message]})


def validate_model_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise _fail(field, "Registered model name must be a non-empty string.")
    if len(name) > NAME_MAX_LENGTH:
        raise _fail(field, f"Registered model name must be at most {NAME_MAX_LENGTH} characters.")
    if "/" in name or ":" in name:
        raise _fail(field, f"Invalid model name '{name}': it may not contain '/' or ':'.")
    if "\x00" in name:
        raise _fail(field, "Registered model name may not contain NUL characters.")
    return name


def validate_tag(key: object, value: object) -> tuple[str, str]:
    if not isinstance(key, str) or not key:
        raise _fail("key", "Tag key must be a non-empty string.")
    if len(key) > TAG_KEY_MAX_LENGTH:
        raise _fail(
            "key", f"Tag key '{key[:40]}…' exceeds the {TAG_KEY_MAX_LENGTH}-character limit."
        )
    if not _TAG_KEY_RE.fullmatch(key):
        raise _fail(
            "key",
            f"Invalid tag key '{key}': use letters, digits, spaces and _ - . / : only.",
        )
    if key.startswith("/") or ".." in key.split("/"):
        raise _fail("key", f"Invalid tag key '{key}': path traversal forms are not allowed.")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _fail("value", "Tag value must be a string.")
    if len(value) > TAG_VALUE_MAX_LENGTH:
        raise _fail(
            "value", f"Tag value for '{key}' exceeds the {TAG_VALUE_MAX_LENGTH}-character limit."
        )
    return key, value


def validate_tags(tags: object) -> dict[str, str]:
    """A list of {key, value} or a {key: value} mapping, validated, as a dict."""
    if tags is None:
        return {}
    pairs: list[tuple[object, object]]
    if isinstance(tags, dict):
        pairs = list(tags.items())
    elif isinstance(tags, list):
        pairs = []
        for item in tags:
            if not isinstance(item, dict):
                raise _fail("tags", "Each tag must be an object with 'key' and 'value'.")
            pairs.append((item.get("key"), item.get("value")))
    else:
        raise _fail("tags", "Tags must be a list of {key, value} objects or a mapping.")
    return dict(validate_tag(key, value) for key, value in pairs)


def validate_alias(alias: object) -> str:
    if not isinstance(alias, str) or not alias:
        raise _fail("alias", "Alias name must be a non-empty string.")
    if len(alias) > ALIAS_MAX_LENGTH:
        raise _fail("alias", f"Alias name must be at most {ALIAS_MAX_LENGTH} characters.")
    if not _ALIAS_RE.fullmatch(alias):
        raise _fail(
            "alias",
            f"Invalid alias name '{alias}': use letters, digits, underscores and hyphens only.",
        )
    if alias.lower() == "latest":
        raise _fail("alias", "'latest' is a reserved alias name.")
    if _VERSION_ALIAS_RE.fullmatch(alias):
        raise _fail(
            "alias",
            f"Invalid alias name '{alias}': 'v' followed by digits is reserved for versions.",
        )
    return alias


def validate_source(source: object) -> str:
    if not isinstance(source, str) or not source.strip():
        raise _fail("source", "Model version source must be a non-empty string.")
    if "\x00" in source:
        raise _fail("source", "Model version source may not contain NUL characters.")
    if ".." in re.split(r"[/\\]", source):
        raise _fail("source", f"Invalid model version source '{source}': '..' is not allowed.")
    return source


def validate_run_id(run_id: object) -> str:
    if run_id is None:
        return ""
    if not isinstance(run_id, str) or len(run_id) > RUN_ID_MAX_LENGTH:
        raise _fail("run_id", f"run_id must be a string of at most {RUN_ID_MAX_LENGTH} characters.")
    return run_id


def parse_stage(value: object, field: str = "stage") -> Stage:
    try:
        return Stage.parse(str(value))
    except ValueError:
        choices = ", ".join(stage.value for stage in Stage)
        raise _fail(field, f"Invalid stage '{value}': expected one of {choices}.") from None


def parse_version_number(value: object, field: str = "version") -> int:
    if isinstance(value, bool):
        raise _fail(field, f"Version must be a positive integer, got '{value}'.")
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise _fail(field, f"Version must be a positive integer, got '{value}'.") from None
    if number < 1 or number > 2**31 - 1:
        raise _fail(field, f"Version must be a positive integer, got '{value}'.")
    return number
