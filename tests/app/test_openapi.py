"""The OpenAPI document (http_api.openapi) is kept true here: it is a valid OpenAPI 3.1
document; every HTTP function of function_app is one of its operations and every operation a
function, with the same auth; the unmatched-route table agrees with it; every error code the
product can answer is in it; and every field it lists for an answer is in some answer of the
handler tests (each of which tests/app/conftest.py holds against it)."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from openapi_spec_validator import validate

from http_api import handlers, openapi
from http_api.blueprint import CATCH_ALL
from http_api.errors import answer_for

from .conftest import ANSWERS_FILE
from .openapi_answers import HANDLERS, Answer, answered, document, fields, problems
from .test_http_errors import CASES
from .test_http_routes import http_triggers

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# The handler tests beside test_http_*.py whose answers the fields test reads too.
HANDLER_TESTS = ("test_client_timings.py", "test_web_page.py")
# What only the catch-all answers: no operation of the document has these.
CATCH_ALL_CODES = {"no_such_route", "method_not_allowed"}


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


def test_the_document_is_a_valid_openapi_3_1_document():
    doc = openapi.document()
    validate(doc)
    assert doc["openapi"].startswith("3.1.")
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def document_paths(route: str) -> list[str]:
    """The document's paths of one function's route: a route with an optional last segment
    (``ui/{file?}``) is three, without it, with its slash alone, and with the segment."""
    optional = re.fullmatch(r"(.*)/\{([^}?]+)\?\}", route)
    if optional is None:
        return ["/" + route]
    head, name = optional.groups()
    return [f"/{head}", f"/{head}/", f"/{head}/{{{name}}}"]


def test_every_http_function_is_an_operation_of_the_document_and_every_operation_a_function():
    served: dict[tuple[str, str], Any] = {}
    for name, trigger in http_triggers().items():
        if name == CATCH_ALL:
            continue
        for path in document_paths(trigger.route):
            for method in trigger.methods:
                served[(str(method.value).lower(), path)] = trigger
    doc = openapi.document()
    assert set(served) == operations(doc)
    for (method, path), trigger in served.items():
        anonymous = trigger.auth_level is func.AuthLevel.ANONYMOUS
        operation = doc["paths"][path][method]
        # Anonymous exactly where the document needs no key; a key answers 401 where it does.
        assert (operation.get("security") == []) == anonymous, (method, path)
        assert ("401" not in operation["responses"]) == anonymous, (method, path)


def test_each_operation_has_the_handler_its_answers_are_recorded_from():
    recorded = {(method, path) for method, paths in HANDLERS.values() for path in paths}
    assert recorded == operations(openapi.document())


def _example_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path).lstrip("/")


def test_the_unmatched_route_table_names_every_operations_path_with_its_methods():
    doc = openapi.document()
    used = set()
    for path, item in doc["paths"].items():
        example = _example_path(path)
        matching = [
            (pattern.pattern, methods)
            for pattern, methods in handlers.ROUTES
            if pattern.fullmatch(example)
        ]
        assert [methods for _, methods in matching] == [tuple(sorted(m.upper() for m in item))]
        used |= {pattern for pattern, _ in matching}
    # No pattern for a path the document does not have (one may stand for several: ui/{file?}).
    assert used == {pattern.pattern for pattern, _ in handlers.ROUTES}


def _error_codes(status: int) -> set[str]:
    schema = openapi.document()["components"]["schemas"][f"Error{status}"]
    return set(schema["properties"]["error"]["properties"]["code"]["enum"])


@pytest.mark.parametrize(
    ("exc", "status", "code", "field"),
    # The catch-all's answers are for no operation (the document's description names them).
    [case for case in CASES if case[2] not in CATCH_ALL_CODES],
)
def test_each_error_answer_of_the_one_mapping_is_in_the_document(exc, status, code, field):
    doc = openapi.document()
    response = answer_for(exc)
    body = json.loads(response.get_body())
    holders = [
        (method, path)
        for method, path in sorted(operations(doc))
        if str(status) in doc["paths"][path][method]["responses"]
    ]
    assert holders, f"no operation documents a {status}"
    # Some operation lists it (a code some operations answer with only: job_not_ended).
    found = {
        (method, path): problems(
            doc, Answer(method, path, status, response.mimetype, dict(response.headers), body)
        )
        for method, path in holders
    }
    assert any(not listed for listed in found.values()), found


def _calls(names: set[str]) -> Iterator[tuple[str, ast.Call]]:
    for package in ("rules", "http_api", "storage", "activities", "orchestrators"):
        for source in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", getattr(node.func, "attr", None))
                    if name in names:
                        yield str(name), node


def _code_pattern(node: ast.expr) -> re.Pattern[str] | None:
    """A code given as a literal, or as an f-string (``f"{what}_not_found"``) as a pattern."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.compile(re.escape(node.value))
    if isinstance(node, ast.JoinedStr):
        parts = [
            re.escape(str(part.value)) if isinstance(part, ast.Constant) else "[a-z_]+"
            for part in node.values
        ]
        return re.compile("".join(parts))
    return None


def test_every_code_the_product_refuses_a_request_with_is_in_the_document():
    codes = _error_codes(400)
    line_codes = set(openapi.LINE_ERROR_CODES)
    seen = 0
    for name, call in _calls({"RequestInvalid", "ManifestInvalid", "LineError"}):
        position = 3 if name == "LineError" else 1
        given = [kw.value for kw in call.keywords if kw.arg == "code"] or call.args[position:]
        pattern = _code_pattern(given[0]) if given else None
        if pattern is None:
            continue  # a code passed on (LineError of a RequestInvalid's code): below
        seen += 1
        known = line_codes if name == "LineError" else codes
        assert any(pattern.fullmatch(code) for code in known), (name, pattern.pattern)
    assert seen > 30
    # A line's error carries a start request's refusal (rules.request) or its own.
    request_codes = {
        str(call.args[1].value)
        for _, call in _calls({"RequestInvalid"})
        if isinstance(call.args[1], ast.Constant)
    }
    assert {"invalid_type", "invalid_value", "missing", "unknown_field"} <= request_codes
    rules_request = ast.parse((ROOT / "rules" / "request.py").read_text())
    raised_by_parse = {
        node.args[1].value
        for node in ast.walk(rules_request)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "RequestInvalid"
        and isinstance(node.args[1], ast.Constant)
    }
    assert raised_by_parse <= line_codes


def test_the_document_is_served_as_json_and_is_the_same_for_every_deployment():
    req = func.HttpRequest(method="GET", url="http://h/api/openapi.json", body=b"", headers={})
    response = asyncio.run(openapi.serve(req))
    assert (response.status_code, response.mimetype) == (200, "application/json")
    assert json.loads(response.get_body()) == openapi.document()
    # Built from the code alone: no address, key or secret of a deployment is in it.
    settings = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    text = response.get_body().decode()
    for name, value in settings.items():
        if value and re.search(r"KEY|SECRET|URL|CONNECTION|STORAGE", name):
            assert value not in text, name
    assert "127.0.0.1" not in text


def test_every_field_the_document_lists_is_in_an_answer(tmp_path: Path):
    """The handler tests run again (a session of their own, which writes every answer it saw);
    each answer was held against the document by the conftest, and here every field the
    document lists must be in one of them."""
    target = tmp_path / "answers.json"
    here = Path(__file__)
    handler_tests = [*here.parent.glob("test_http_*.py"), *(here.parent / m for m in HANDLER_TESTS)]
    modules = sorted(str(p.relative_to(ROOT)) for p in handler_tests)
    this = (
        f"{here.relative_to(ROOT)}::{test_every_field_the_document_lists_is_in_an_answer.__name__}"
    )
    pytest_args = ["-q", "-p", "no:cacheprovider", *modules, str(here), "--deselect", this]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args],
        cwd=ROOT,
        env={**os.environ, ANSWERS_FILE: str(target)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    answers = [Answer.from_json(item) for item in json.loads(target.read_text())]
    doc = document()
    missing = sorted(fields(doc) - answered(doc, answers))
    assert not missing, "fields of the document no answer has:\n" + "\n".join(missing)
    statuses = {(a.method, a.path, str(a.status)) for a in answers}
    for method, path in operations(doc):
        for status in doc["paths"][path][method]["responses"]:
            if status.startswith("2"):
                assert (method, path, status) in statuses, (method, path, status)
