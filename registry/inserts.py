"""INSERT statements for the write path, built once per model.

The ORM compiles an INSERT on every save; on the version-create path that compilation cost more
than the database's work. These are the same statements (every local concrete field, values
prepared by each field as save() prepares them), built once and reused. Only for models whose
fields all take a plain `%s` placeholder, as the registry's do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
    return sql, prepared_values(connection, obj, fields)


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


def insert_select_sql(
    connection: BaseDatabaseWrapper,
    model: type[Model],
    computed: Mapping[str, str],
    *,
    source: str,
    returning: str = "",
) -> tuple[str, tuple[Field[Any, Any], ...]]:
    """`INSERT INTO <model> (...) SELECT ... FROM <source>` for a statement of several steps
    (PostgreSQL): every local concrete field but the auto primary key, the fields named in
    `computed` taking those SQL expressions (over `source`), the others a parameter each, in the
    order of the fields returned.

    A parameter in a SELECT list has no column type to take: each is cast to its column's type,
    without a length (an explicit cast to varchar(n) would cut a longer value short; the
    column's own assignment still refuses it).
    """
    meta = model._meta
    fields = [field for field in meta.local_concrete_fields if field is not meta.auto_field]
    quote = connection.ops.quote_name
    values = ", ".join(
        computed.get(field.name)
        or f"CAST(%s AS {re.sub(r'[(].*[)]', '', field.db_type(connection) or '')})"
        for field in fields
    )
    columns = ", ".join(quote(field.column) for field in fields)
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT {values} FROM {source}"  # noqa: S608
    if returning:
        sql += f" RETURNING {returning}"
    return sql, tuple(field for field in fields if field.name not in computed)


def prepared_values(
    connection: BaseDatabaseWrapper, obj: Model, fields: tuple[Field[Any, Any], ...]
) -> list[Any]:
    """The values of `fields` of a new `obj`, prepared as save() prepares them."""
    return [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]
