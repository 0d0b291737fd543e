"""Entry points of verify_history's worker processes.

Spawned interpreters import this module before Django is set up, so it imports nothing from
the apps at module level: `setup` configures Django, then `verify_range` loads the verifier.
"""

from __future__ import annotations

import os
from typing import Any


def setup(database_name: str) -> None:
    """Set Django up in a fresh worker, on the database the parent reads (under the test runner
    that is the test database, not the one the settings name)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.db import connection

    connection.settings_dict["NAME"] = database_name


def verify_range(start: int, end: int, last_checkpoint_pk: int, chunk_size: int) -> Any:
    from registry.history.verify import verify_range as verify

    return verify(start, end, last_checkpoint_pk, chunk_size)
