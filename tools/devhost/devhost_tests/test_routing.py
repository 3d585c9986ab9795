"""Route templates as the Functions host (ASP.NET Core routing) matches them."""

from __future__ import annotations

import pytest

from devhost.routing import RouteTable, RouteTemplate, RouteTemplateError


def match(template: str, path: str) -> dict[str, str | None] | None:
    return RouteTemplate.parse(template).match(path)


def test_literal_segments_match_case_insensitively_and_keep_parameter_spelling():
    assert match("Products/{Name}", "products/CamelCase") == {"Name": "CamelCase"}
    assert match("products/{name}", "orders/x") is None


def test_a_plain_parameter_needs_one_non_empty_segment():
    assert match("a/{b}", "a") is None
    assert match("a/{b}", "a/x/y") is None
    assert match("a/{b}", "a/x/") == {"b": "x"}


def test_optional_parameter_arrives_as_none_when_left_out():
    assert match("items/{id:int?}", "items") == {"id": None}
    assert match("items/{id:int?}", "items/7") == {"id": "7"}
    assert match("items/{id:int?}", "items/seven") is None


def test_default_value_fills_a_missing_parameter():
    assert match("page/{n=1}", "page") == {"n": "1"}


@pytest.mark.parametrize(
    ("constraint", "good", "bad"),
    [
        ("int", "-12", "1.5"),
        ("int", "2147483647", "2147483648"),
        ("long", "2147483648", "x"),
        ("alpha", "abcXYZ", "abc1"),
        ("bool", "True", "yes"),
        ("guid", "6f9619ff-8b86-d011-b42d-00cf4fc964ff", "not-a-guid"),
        ("double", "1.5", "nan"),
        ("datetime", "2024-05-01T10:00:00", "yesterday"),
        ("min(3)", "3", "2"),
        ("max(3)", "3", "4"),
        ("range(1,5)", "5", "6"),
        ("minlength(2)", "ab", "a"),
        ("maxlength(2)", "ab", "abc"),
        ("length(2)", "ab", "abc"),
        ("length(2,3)", "abc", "abcd"),
        ("regex(^[a-z]{{2}}\\d$)", "ab1", "abc"),
    ],
)
def test_constraints(constraint, good, bad):
    template = "x/{v:" + constraint.replace("{{", "{").replace("}}", "}") + "}"
    assert match(template, f"x/{good}") == {"v": good}
    assert match(template, f"x/{bad}") is None


def test_chained_constraints_must_all_hold():
    assert match("x/{id:int:min(10)}", "x/10") == {"id": "10"}
    assert match("x/{id:int:min(10)}", "x/9") is None


def test_catch_all_takes_the_rest_of_the_path_and_may_be_empty():
    assert match("files/{*path}", "files/a/b/c.txt") == {"path": "a/b/c.txt"}
    assert match("files/{**path}", "files") == {"path": None}


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("a/{b}/{b}", "twice"),
        ("a/{*rest}/b", "catch-all"),
        ("a/{b?}/c", "optional"),
        ("a/{b:nosuch}", "unknown constraint"),
        ("a//b", "empty segment"),
        ("a/x{b}", "mixes"),
    ],
)
def test_templates_the_host_would_refuse(template, reason):
    with pytest.raises(RouteTemplateError, match=reason):
        RouteTemplate.parse(template)


def test_table_prefers_literals_then_constrained_then_plain_then_catch_all():
    table: RouteTable[str] = RouteTable()
    table.add(RouteTemplate.parse("a/{*rest}"), None, "catch-all")
    table.add(RouteTemplate.parse("a/{b}"), None, "plain")
    table.add(RouteTemplate.parse("a/{b:int}"), None, "int")
    table.add(RouteTemplate.parse("a/b"), None, "literal")
    assert table.match("GET", "a/b").target == "literal"  # type: ignore[union-attr]
    assert table.match("GET", "a/7").target == "int"  # type: ignore[union-attr]
    assert table.match("GET", "a/x").target == "plain"  # type: ignore[union-attr]
    assert table.match("GET", "a/x/y").target == "catch-all"  # type: ignore[union-attr]


def test_a_method_mismatch_is_no_match_at_all():
    table: RouteTable[str] = RouteTable()
    table.add(RouteTemplate.parse("a"), ["post"], "post-only")
    assert table.match("GET", "a") is None
    match_ = table.match("POST", "a")
    assert match_ is not None
    assert match_.target == "post-only"
