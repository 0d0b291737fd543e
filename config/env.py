"""Secrets from the environment, or from files the environment names.

Orchestrators hand secrets over as files (Docker and Kubernetes secrets mounted under
/run/secrets/): `SECRET_KEY_FILE=/run/secrets/secret_key` keeps the key out of the environment,
which every child process inherits and crash reports tend to print.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def env_secret(name: str) -> str | None:
    """`name` from the environment, else the stripped content of the file `name`_FILE names.

    None when neither is set (an empty value counts as unset). Setting both, or naming a file
    that cannot be read or is empty, is a configuration error.
    """
    file_var = f"{name}_FILE"
    value = os.environ.get(name, "")
    path = os.environ.get(file_var, "")
    if value and path:
        raise ImproperlyConfigured(f"Both {name} and {file_var} are set: set only one of them.")
    if not path:
        return value or None
    try:
        content = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ImproperlyConfigured(
            f"{file_var} names {path}, which cannot be read: {exc.strerror or exc}."
        ) from exc
    if not content:
        raise ImproperlyConfigured(f"{file_var} names {path}, which is empty.")
    return content


def env_secret_list(name: str) -> list[str]:
    """A comma-separated list of secrets (rotation fallbacks), from `name` or `name`_FILE."""
    return [item.strip() for item in (env_secret(name) or "").split(",") if item.strip()]
