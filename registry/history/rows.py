"""Reading events fast, for the passes over the whole log (verification, exports).

The ORM's per-row conversions (a datetime parsed from the database and formatted again, JSON
decoded by a converter) cost more than the work itself on a million rows. These expressions let
the database hand over the time already in the canonical UTC form and the snapshots as JSON
text, to be embedded as they are (exports) or decoded once (verification).
"""

from __future__ import annotations

from django.db import connection
from django.db.models import CharField, F, Func, TextField
from django.db.models.expressions import Combinable
from django.db.models.functions import Cast


def utc_text(field: str = "created_at") -> Combinable:
    """The timestamp as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (events.event_timestamp) on PostgreSQL;
    elsewhere the field itself, formatted in Python."""
    if connection.vendor == "postgresql":
        return Func(
            F(field),
            template="to_char(%(expressions)s AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')',
            output_field=CharField(),
        )
    return F(field)


def json_text(field: str) -> Cast:
    """A JSON column as its text (SQL NULL stays None)."""
    return Cast(field, output_field=TextField())
