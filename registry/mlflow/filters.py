"""The MLflow search filter grammar, parsed and translated to ORM conditions.

A filter is comparisons joined by AND: `name`, `tags.<key>` / `tag.<key>` (keys bare, quoted or
back-ticked) and, for versions, `run_id` (also IN), `source_path` and numeric `version_number`.
Tag clauses become EXISTS subqueries, so a whole search is one SQL statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from django.db.models import Exists, F, Lookup, OuterRef, Q

from config.errors import InvalidParameter
from registry.models import ModelVersionTag, RegisteredModelTag

IS_PROMPT_TAG_KEY = "mlflow.prompt.is_prompt"

# Bounds that keep one search one reasonable SQL statement on every database.
MAX_CLAUSES = 50
MAX_LIST_ITEMS = 10_000

Kind = Literal["models", "versions"]


def invalid(message: str, field: str = "filter") -> InvalidParameter:
    return InvalidParameter(message, fields={field: [message]})


# --- LIKE / ILIKE as expressions ------------------------------------------------------------


def _like_to_glob(pattern: str) -> str:
    """A LIKE pattern (`%`, `_`, backslash escapes) as an SQLite GLOB pattern (case-sensitive)."""
    out: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            literal = next(chars, "\\")
            out.append(f"[{literal}]" if literal in "*?[" else literal)
        elif char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        elif char in "*?[":
            out.append(f"[{char}]")
        else:
            out.append(char)
    return "".join(out)


def _like_pattern(pattern: str) -> str:
    """A trailing lone backslash would escape nothing (PostgreSQL refuses it): make it literal."""
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return pattern + "\\" if trailing % 2 else pattern


class Like(Lookup):
    """`lhs LIKE pattern`, case-sensitive on every database (SQLite's LIKE is not: use GLOB)."""

    lookup_name = "mlflow_like"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        if connection.vendor == "sqlite":
            return f"{lhs} GLOB %s", [*lhs_params, _like_to_glob(_like_pattern(self.rhs))]
        return f"{lhs} LIKE %s", [*lhs_params, _like_pattern(self.rhs)]


class ILike(Lookup):
    """`lhs ILIKE pattern`, case-insensitive."""

    lookup_name = "mlflow_ilike"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        if connection.vendor == "postgresql":
            return f"{lhs} ILIKE %s", [*lhs_params, _like_pattern(self.rhs)]
        if connection.vendor == "sqlite":
            return f"{lhs} LIKE %s ESCAPE '\\'", [*lhs_params, _like_pattern(self.rhs)]
        return f"UPPER({lhs}) LIKE UPPER(%s)", [*lhs_params, _like_pattern(self.rhs)]


# --- the filter grammar ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    """One `identifier comparator value` clause of a filter."""

    type: Literal["attribute", "tag"]
    key: str
    comparator: str
    value: str | int | tuple[str, ...]


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:''|\\.|[^'\\])*'|"(?:""|\\.|[^"\\])*")
  | (?P<backtick>`[^`]*`)
  | (?P<number>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<punct>[(),.])
  | (?P<word>[A-Za-z_][\w]*)
  """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    value: Any


def _unquote(text: str) -> str:
    # As MLflow does: the text between the quotes, escapes and all, taken as it is.
    return text[1:-1]


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if match is None:
            raise invalid(
                f"Invalid filter '{text}': unexpected character {text[position]!r} "
                f"at position {position}."
            )
        position = match.end()
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "ws":
            continue
        if kind == "string":
            tokens.append(_Token("string", raw, _unquote(raw)))
        elif kind == "backtick":
            tokens.append(_Token("backtick", raw, raw[1:-1]))
        elif kind == "number":
            tokens.append(_Token("number", raw, raw))
        elif kind == "word":
            tokens.append(_Token("word", raw, raw))
        else:
            tokens.append(_Token(kind, raw, raw))
    return tokens


class _Parser:
    def __init__(self, text: str, kind: Kind) -> None:
        self.text = text
        self.kind = kind
        self.tokens = _tokenize(text)
        self.position = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise invalid(f"Invalid filter '{self.text}': it ends too early.")
        self.position += 1
        return token

    def fail(self, what: str) -> InvalidParameter:
        token = self.peek()
        found = f"'{token.text}'" if token else "the end"
        return invalid(f"Invalid filter '{self.text}': expected {what}, found {found}.")

    def parse(self) -> list[Comparison]:
        comparisons = [self.comparison()]
        while (token := self.peek()) is not None:
            if token.kind == "word" and token.text.upper() == "AND":
                self.position += 1
                comparisons.append(self.comparison())
                if len(comparisons) > MAX_CLAUSES:
                    raise invalid(f"A filter may join at most {MAX_CLAUSES} comparisons.")
            elif token.kind == "word" and token.text.upper() == "OR":
                raise invalid(
                    f"Invalid filter '{self.text}': only AND is supported to join clauses, not OR."
                )
            else:
                raise self.fail("AND")
        return comparisons

    def identifier(self) -> tuple[Literal["attribute", "tag"], str]:
        token = self.take()
        if token.kind == "backtick":
            return "attribute", token.value
        if token.kind == "string":
            return "attribute", token.value
        if token.kind != "word":
            self.position -= 1
            raise self.fail("an attribute or tag name")
        following = self.peek()
        if following is None or following.kind != "punct" or following.text != ".":
            return "attribute", token.text
        self.position += 1
        entity = token.text
        if entity not in ("attribute", "attributes", "tag", "tags"):
            raise invalid(
                f"Invalid entity type '{entity}' in filter '{self.text}'. Valid entity types are "
                "'attribute', 'tag' and 'tags'."
            )
        key_token = self.take()
        if key_token.kind in ("backtick", "string"):
            key = key_token.value
        elif key_token.kind == "word":
            # A bare dotted key such as tags.team.owner.
            parts = [key_token.text]
            while (dot := self.peek()) is not None and dot.kind == "punct" and dot.text == ".":
                self.position += 1
                part = self.take()
                if part.kind not in ("word", "number"):
                    self.position -= 1
                    raise self.fail("a key")
                parts.append(part.text)
            key = ".".join(parts)
        else:
            self.position -= 1
            raise self.fail("a key")
        if not key:
            raise invalid(f"Invalid filter '{self.text}': empty key.")
        return ("tag" if entity in ("tag", "tags") else "attribute"), key

    def comparator(self) -> str:
        token = self.take()
        if token.kind == "op":
            return {"==": "=", "<>": "!="}.get(token.text, token.text)
        if token.kind == "word":
            word = token.text.upper()
            if word in ("LIKE", "ILIKE", "IN"):
                return word
            if word == "NOT":
                following = self.peek()
                if following is not None and following.kind == "word":
                    if following.text.upper() == "IN":
                        self.position += 1
                        return "NOT IN"
                    if following.text.upper() in ("LIKE", "ILIKE"):
                        self.position += 1
                        raise invalid(
                            f"Invalid comparator 'NOT {following.text.upper()}' in filter "
                            f"'{self.text}'."
                        )
        self.position -= 1
        raise self.fail("a comparison operator (=, !=, LIKE, ILIKE ...)")

    def value(self) -> str | int | tuple[str, ...]:
        token = self.take()
        if token.kind == "string":
            return token.value
        if token.kind == "number":
            try:
                return int(token.value)
            except ValueError:
                raise invalid(
                    f"Invalid filter '{self.text}': '{token.value}' is not a whole number."
                ) from None
        if token.kind == "punct" and token.text == "(":
            items: list[str] = []
            while True:
                item = self.take()
                if item.kind != "string":
                    self.position -= 1
                    raise self.fail("a quoted string in the list")
                items.append(item.value)
                if len(items) > MAX_LIST_ITEMS:
                    raise invalid(f"A list in a filter may hold at most {MAX_LIST_ITEMS} values.")
                separator = self.take()
                if separator.kind == "punct" and separator.text == ")":
                    return tuple(items)
                if not (separator.kind == "punct" and separator.text == ","):
                    self.position -= 1
                    raise self.fail("',' or ')'")
        self.position -= 1
        raise self.fail("a quoted value")

    def comparison(self) -> Comparison:
        type_, key = self.identifier()
        comparator = self.comparator()
        value = self.value()
        return _check(Comparison(type_, key, comparator, value), self.kind, self.text)


_INT_LIMIT = 2**40
_STRING_COMPARATORS = ("=", "!=", "LIKE", "ILIKE")
_NUMERIC_COMPARATORS = ("=", "!=", "<", "<=", ">", ">=")
_MODEL_ATTRIBUTES = ("name",)
_VERSION_ATTRIBUTES = ("name", "run_id", "source_path", "version_number")


def _check(comparison: Comparison, kind: Kind, text: str) -> Comparison:
    """Refuse what the grammar allows but the entity does not (unknown keys, wrong operators)."""
    key, comparator, value = comparison.key, comparison.comparator, comparison.value
    if comparison.type == "tag":
        if comparator not in _STRING_COMPARATORS:
            raise invalid(f"Invalid comparator '{comparator}' for tag '{key}' in '{text}'.")
        if not isinstance(value, str):
            raise invalid(
                f"Expected a quoted string value for tag '{key}' (e.g. 'my-value'), "
                f"in filter '{text}'."
            )
        return comparison
    valid = _MODEL_ATTRIBUTES if kind == "models" else _VERSION_ATTRIBUTES
    if key not in valid:
        raise invalid(
            f"Invalid attribute key '{key}' specified. Valid keys are {', '.join(valid)}."
        )
    if key == "version_number":
        if comparator not in _NUMERIC_COMPARATORS:
            raise invalid(f"Invalid comparator '{comparator}' for attribute {key} in '{text}'.")
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise invalid(f"Invalid value for numeric attribute '{key}': {value!r}") from None
        if not isinstance(value, int):
            raise invalid(f"Invalid value for numeric attribute '{key}': {value!r}")
        # Versions are 32-bit: clamping keeps every comparison's answer and the database's
        # integer range.
        value = max(-_INT_LIMIT, min(_INT_LIMIT, value))
        return Comparison("attribute", key, comparator, value)
    if comparator in ("IN", "NOT IN"):
        if kind == "versions" and key == "run_id":
            if not isinstance(value, tuple) or not value:
                raise invalid(f"Expected a list of quoted strings after {comparator} in '{text}'.")
            return comparison
        raise invalid(
            f"Invalid comparator '{comparator}' for attribute '{key}': only run_id of a model "
            "version supports IN."
        )
    if comparator not in _STRING_COMPARATORS:
        raise invalid(f"Invalid comparator '{comparator}' for attribute '{key}' in '{text}'.")
    if not isinstance(value, str):
        raise invalid(
            f"Expected a quoted string value for attribute '{key}' (e.g. 'my-value'), "
            f"in filter '{text}'."
        )
    return comparison


def parse_filter(text: str | None, kind: Kind) -> list[Comparison]:
    """The comparisons of an MLflow filter string; INVALID_PARAMETER_VALUE when it has none."""
    if text is None or not text.strip():
        return []
    return _Parser(text, kind).parse()


# --- filters as ORM conditions --------------------------------------------------------------


def _string_condition(field: str, comparator: str, value: Any) -> Q:
    if comparator == "=":
        return Q(**{field: value})
    if comparator == "!=":
        return ~Q(**{field: value})
    if comparator == "LIKE":
        return Q(Like(F(field), value))
    if comparator == "ILIKE":
        return Q(ILike(F(field), value))
    if comparator == "IN":
        return Q(**{f"{field}__in": list(value)})
    if comparator == "NOT IN":
        return ~Q(**{f"{field}__in": list(value)})
    raise invalid(f"Invalid comparator '{comparator}'.")  # unreachable after _check


def _numeric_condition(field: str, comparator: str, value: int) -> Q:
    lookups = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
    if comparator == "!=":
        return ~Q(**{field: value})
    return Q(**{f"{field}__{lookups[comparator]}": value})


def _tag_condition(tag_model: type, owner_field: str, comparison: Comparison) -> Q:
    owner = {owner_field: OuterRef("pk")}
    matching = tag_model.objects.filter(  # type: ignore[attr-defined]
        _string_condition("value", comparison.comparator, comparison.value),
        key=comparison.key,
        **owner,
    )
    condition = Q(Exists(matching))
    # MLflow 3 clients append tag.`mlflow.prompt.is_prompt` != 'true' to every model search:
    # a model without that tag is "not a prompt", so for that key (and only there) a missing
    # tag passes `!= 'true'` and `= 'false'`. Any other comparison with a missing tag is false.
    if comparison.key == IS_PROMPT_TAG_KEY and (
        (comparison.comparator == "!=" and comparison.value == "true")
        or (comparison.comparator == "=" and comparison.value == "false")
    ):
        present = tag_model.objects.filter(key=comparison.key, **owner)  # type: ignore[attr-defined]
        condition |= ~Q(Exists(present))
    return condition


def model_filter(comparisons: list[Comparison]) -> Q:
    condition = Q()
    for comparison in comparisons:
        if comparison.type == "tag":
            condition &= _tag_condition(RegisteredModelTag, "model", comparison)
        else:
            condition &= _string_condition("name", comparison.comparator, comparison.value)
    return condition


_VERSION_FIELDS = {"name": "model__name", "source_path": "source", "run_id": "run_id"}


def version_filter(comparisons: list[Comparison]) -> Q:
    condition = Q()
    for comparison in comparisons:
        if comparison.type == "tag":
            condition &= _tag_condition(ModelVersionTag, "version", comparison)
        elif comparison.key == "version_number":
            condition &= _numeric_condition("version", comparison.comparator, comparison.value)  # type: ignore[arg-type]
        else:
            field = _VERSION_FIELDS[comparison.key]
            clause = _string_condition(field, comparison.comparator, comparison.value)
            if comparison.key == "run_id":
                # A version without a run has no run_id (NULL in MLflow): no comparison holds.
                clause &= ~Q(run_id="")
            condition &= clause
    return condition
