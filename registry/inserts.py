"""INSERT statements for the write path, built once per model.

The ORM compiles an INSERT on every save; on the version-create path that compilation cost more
than the database's work. These are the same statements (every local concrete field, values
prepared by each field as save() prepares them), built once and reused. Only for models whose
fields all take a plain `%s` placeholder, as the registry's do.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

from config.sql import prepared_cursor

_templates: dict[tuple[type[Model], str, bool], tuple[str, tuple[Field[Any, Any], ...]]] = {}


def _template(
    connection: BaseDatabaseWrapper, model: type[Model], returning_pk: bool
) -> tuple[str, tuple[Field[Any, Any], ...]]:
    key = (model, connection.vendor, returning_pk)
    template = _templates.get(key)
    if template is not None:
        return template
    meta = model._meta
    fields = tuple(
        field
        for field in meta.local_concrete_fields
        if not (returning_pk and field is meta.auto_field)
    )
    if any(hasattr(field, "get_placeholder") for field in fields):
        raise TypeError(f"{meta.label} has a field with its own placeholder")
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    values = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({values})"  # noqa: S608
    if returning_pk:
        sql += f" RETURNING {quote(meta.pk.column)}"
    _templates[key] = (sql, fields)
    return sql, fields


def insert_sql(
    connection: BaseDatabaseWrapper, obj: Model, *, returning_pk: bool = False
) -> tuple[str, list[Any]]:
    """The INSERT for `obj` and its parameters; with `returning_pk`, without the auto primary
    key, which the statement returns (PostgreSQL)."""
    sql, fields = _template(connection, type(obj), returning_pk)
    params = [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]
    return sql, params


def insert(connection: BaseDatabaseWrapper, obj: Model) -> None:
    """Save a new `obj` (auto primary key) with one prepared INSERT on PostgreSQL, with the ORM
    elsewhere."""
    if connection.vendor != "postgresql":
        obj.save(force_insert=True)
        return
    sql, params = insert_sql(connection, obj, returning_pk=True)
    with prepared_cursor(connection.alias) as cursor:
        cursor.execute(sql, params)
        (obj.pk,) = cursor.fetchone()
    obj._state.adding = False
    obj._state.db = connection.alias
