"""The MLflow filter grammar and order_by parser, without a database."""

from __future__ import annotations

import pytest

from config.errors import InvalidParameter
from registry.mlflow.filters import Comparison, _like_pattern, _like_to_glob, parse_filter
from registry.mlflow.search import SortKey, parse_max_results, parse_order_by


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("   ", []),
        ("name = 'a'", [Comparison("attribute", "name", "=", "a")]),
        # As on MLflow, the text between the quotes is taken as it is.
        ("name = 'it''s'", [Comparison("attribute", "name", "=", "it''s")]),
        ('name = "it\'s"', [Comparison("attribute", "name", "=", "it's")]),
        ("name LIKE '100\\%'", [Comparison("attribute", "name", "LIKE", "100\\%")]),
        ("attribute.name != 'x'", [Comparison("attribute", "name", "!=", "x")]),
        ("name like 'a%'", [Comparison("attribute", "name", "LIKE", "a%")]),
        ("name ILIKE '%B_'", [Comparison("attribute", "name", "ILIKE", "%B_")]),
        ("tags.team = 'risk'", [Comparison("tag", "team", "=", "risk")]),
        ("tag.`a.b c` = ''", [Comparison("tag", "a.b c", "=", "")]),
        ('tags."quoted key" != "v"', [Comparison("tag", "quoted key", "!=", "v")]),
        ("tags.team.owner = 'x'", [Comparison("tag", "team.owner", "=", "x")]),
        (
            "name = 'a' and tags.x = 'y' AND tag.`mlflow.prompt.is_prompt` != 'true'",
            [
                Comparison("attribute", "name", "=", "a"),
                Comparison("tag", "x", "=", "y"),
                Comparison("tag", "mlflow.prompt.is_prompt", "!=", "true"),
            ],
        ),
    ],
)
def test_model_filters_parse(text, expected):
    assert parse_filter(text, "models") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("run_id IN ('a', 'b')", [Comparison("attribute", "run_id", "IN", ("a", "b"))]),
        ("run_id in ('a')", [Comparison("attribute", "run_id", "IN", ("a",))]),
        ("run_id NOT IN ('a')", [Comparison("attribute", "run_id", "NOT IN", ("a",))]),
        ("version_number >= 3", [Comparison("attribute", "version_number", ">=", 3)]),
        ("version_number = '3'", [Comparison("attribute", "version_number", "=", 3)]),
        ("version_number<>2", [Comparison("attribute", "version_number", "!=", 2)]),
        (
            "version_number < 10000000000000000000000",
            [Comparison("attribute", "version_number", "<", 2**40)],
        ),
        ("source_path LIKE 's3://%'", [Comparison("attribute", "source_path", "LIKE", "s3://%")]),
        ("tags.k = 'v'", [Comparison("tag", "k", "=", "v")]),
    ],
)
def test_version_filters_parse(text, expected):
    assert parse_filter(text, "versions") == expected


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("name = 'a' OR name = 'b'", "models"),
        ("(name = 'a')", "models"),
        ("name = a", "models"),
        ("name =", "models"),
        ("name 'a'", "models"),
        ("name = 'a' name = 'b'", "models"),
        ("name = 'a' AND", "models"),
        ("name IN ('a')", "models"),
        ("run_id IN ('a')", "models"),
        ("creation_timestamp > 1", "models"),
        ("metrics.x > 1", "models"),
        ("tags.x > 'a'", "models"),
        ("tags.x = 1", "models"),
        ("name = 'unterminated", "models"),
        ("name IN ('a')", "versions"),
        ("run_id IN ()", "versions"),
        ("run_id IN ('a', 1)", "versions"),
        ("run_id = ('a')", "versions"),
        ("version_number LIKE '1'", "versions"),
        ("version_number = 1.5", "versions"),
        ("version_number = 'x'", "versions"),
        ("current_stage = 'None'", "versions"),
        ("name NOT LIKE 'a'", "versions"),
        ("name = 'a'; drop table x", "versions"),
    ],
)
def test_invalid_filters_are_invalid_parameter_value(text, kind):
    with pytest.raises(InvalidParameter):
        parse_filter(text, kind)


def test_order_by_defaults_and_tiebreaks():
    assert parse_order_by([], "models") == [
        SortKey("name", True, "str"),
        SortKey("pk", True, "int"),
    ]
    assert parse_order_by(["timestamp DESC"], "models") == [
        SortKey("updated_at", False, "datetime"),
        SortKey("name", True, "str"),
        SortKey("pk", True, "int"),
    ]
    assert parse_order_by([], "versions") == [
        SortKey("updated_at", False, "datetime"),
        SortKey("model__name", True, "str"),
        SortKey("version", False, "int"),
        SortKey("pk", True, "int"),
    ]
    assert parse_order_by(["version_number", "attribute.name desc"], "versions") == [
        SortKey("version", True, "int"),
        SortKey("model__name", False, "str"),
        SortKey("pk", True, "int"),
    ]


@pytest.mark.parametrize(
    ("order_by", "kind"),
    [
        (["creation_timestamp"], "models"),
        (["timestamp", "last_updated_timestamp"], "models"),
        (["name", "name DESC"], "models"),
        (["name sideways"], "models"),
        (["current_stage"], "versions"),
        (["tags.x"], "versions"),
    ],
)
def test_invalid_order_by(order_by, kind):
    with pytest.raises(InvalidParameter):
        parse_order_by(order_by, kind)


def test_max_results():
    assert parse_max_results(None, "models") == 100
    assert parse_max_results("0", "models") == 0
    assert parse_max_results(1000, "models") == 1000
    assert parse_max_results(None, "versions") == 200_000
    for raw, kind in (("1001", "models"), ("0", "versions"), ("-1", "models"), (True, "models")):
        with pytest.raises(InvalidParameter):
            parse_max_results(raw, kind)


@pytest.mark.parametrize(
    ("like", "glob"),
    [
        ("a%", "a*"),
        ("a_b", "a?b"),
        ("100\\%", "100%"),
        ("a*b?[c]", "a[*]b[?][[]c]"),
        ("\\_x", "_x"),
    ],
)
def test_like_patterns_become_case_sensitive_globs(like, glob):
    assert _like_to_glob(like) == glob


@pytest.mark.parametrize(
    ("pattern", "safe"),
    [("a\\", "a\\\\"), ("a\\\\", "a\\\\"), ("a\\\\\\", "a\\\\\\\\"), ("a%", "a%")],
)
def test_a_trailing_lone_escape_becomes_literal(pattern, safe):
    assert _like_pattern(pattern) == safe


def test_filters_are_bounded():
    fifty = " AND ".join(["name = 'a'"] * 50)
    assert len(parse_filter(fifty, "models")) == 50
    with pytest.raises(InvalidParameter):
        parse_filter(fifty + " AND name = 'b'", "models")
    many = ", ".join(["'r'"] * 10_001)
    with pytest.raises(InvalidParameter):
        parse_filter(f"run_id IN ({many})", "versions")
