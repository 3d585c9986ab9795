"""What holds the HTTP handlers' answers against the OpenAPI document (http_api.openapi).

``Recorder`` wraps each handler of an operation (by module attribute, where the tests and the
blueprint look them up) so that every answer a handler test produces is recorded, including the
answer ``answer_for`` makes of what the handler raised. ``problems`` says what in one answer the
document does not list: its status, content type, a header, or its JSON body (validated with
jsonschema against the operation's response schema; answer objects are closed). ``fields`` and
``answered`` name every field the document's answers have, and those the recorded answers
showed, so a field no answer ever has is found too.

A field is named by where it sits: ``JobStatus.error`` (a property of a component schema),
``JobStatus.previews[].url`` (inside an inline one). A field that may be null is also named with
a ``!`` (``JobStatus.error!``) for an answer that showed it not null.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
import jsonschema
import pytest

from http_api import (
    batches,
    client_timings,
    evidence,
    handlers,
    openapi,
    uploads,
    web_page,
    webhooks,
)
from http_api.errors import answer_for

Schema = dict[str, Any]

# Each operation's handler, as the blueprint calls it (http_api.blueprint). A handler of a route
# with an optional segment (ui/{file?}) answers several of the document's paths: the request's
# URL tells which.
HANDLERS: dict[tuple[ModuleType, str], tuple[str, tuple[str, ...]]] = {
    (handlers, "start_job"): ("post", ("/images",)),
    (handlers, "list_jobs"): ("get", ("/images",)),
    (handlers, "get_job"): ("get", ("/images/{id}",)),
    (handlers, "cancel_job"): ("post", ("/images/{id}/cancel",)),
    (evidence, "get_evidence"): ("get", ("/images/{id}/evidence",)),
    (client_timings, "report"): ("post", ("/images/{id}/client-timings",)),
    (handlers, "list_routes"): ("get", ("/routes",)),
    (uploads, "create_upload"): ("post", ("/uploads",)),
    (batches, "start_batch"): ("post", ("/batches",)),
    (batches, "get_batch"): ("get", ("/batches/{id}",)),
    (batches, "cancel_batch"): ("post", ("/batches/{id}/cancel",)),
    (webhooks, "webhook_secret"): ("get", ("/webhook-secret",)),
    (web_page, "serve"): ("get", ("/ui", "/ui/", "/ui/{file}")),
    (openapi, "serve"): ("get", ("/openapi.json",)),
}
# Where the host serves the document's paths (its servers' url).
PREFIX = "/api"
# Headers every answer has, which the document gives as the content's media type.
CONTENT_HEADERS = frozenset({"content-type", "content-length"})


@dataclass(frozen=True)
class Answer:
    method: str
    path: str
    status: int
    mimetype: str
    headers: dict[str, str]
    body: Any

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path} -> {self.status}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Answer:
        return cls(**data)


def _answer(method: str, path: str, response: func.HttpResponse) -> Answer:
    raw = response.get_body()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace")
    return Answer(
        method=method,
        path=path,
        status=response.status_code,
        mimetype=response.mimetype,
        headers=dict(response.headers),
        body=body,
    )


def path_pattern(path: str) -> re.Pattern[str]:
    """What URL paths (under the host's prefix) one of the document's paths stands for."""
    return re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(PREFIX + path)))


def _path_of(paths: tuple[str, ...], args: tuple[Any, ...]) -> str:
    """Which of ``paths`` the handler's request (its first argument) asked for."""
    if len(paths) > 1 and args and isinstance(args[0], func.HttpRequest):
        url_path = urlsplit(args[0].url).path
        for path in paths:
            if path_pattern(path).fullmatch(url_path):
                return path
    return paths[0]


class Recorder:
    """Records every answer of the operations' handlers while installed."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for (module, name), (method, paths) in HANDLERS.items():
            monkeypatch.setattr(module, name, self._wrap(getattr(module, name), method, paths))

    def _wrap(
        self, handler: Callable[..., Any], method: str, paths: tuple[str, ...]
    ) -> Callable[..., Any]:
        if not inspect.iscoroutinefunction(handler):  # the web page's files: no I/O, no await

            @functools.wraps(handler)
            def recorded_sync(*args: Any, **kwargs: Any) -> func.HttpResponse:
                path = _path_of(paths, args)
                try:
                    response: func.HttpResponse = handler(*args, **kwargs)
                except Exception as exc:
                    self.answers.append(_answer(method, path, _quietly(answer_for, exc)))
                    raise
                self.answers.append(_answer(method, path, response))
                return response

            return recorded_sync

        @functools.wraps(handler)
        async def recorded(*args: Any, **kwargs: Any) -> func.HttpResponse:
            path = _path_of(paths, args)
            try:
                response: func.HttpResponse = await handler(*args, **kwargs)
            except Exception as exc:
                self.answers.append(_answer(method, path, _quietly(answer_for, exc)))
                raise
            self.answers.append(_answer(method, path, response))
            return response

        return recorded


def _quietly(answer: Callable[[BaseException], func.HttpResponse], exc: Exception) -> Any:
    """``answer_for(exc)`` without its log lines: the test's own call logs them once."""
    logger = logging.getLogger("imagejobs.http")
    disabled, logger.disabled = logger.disabled, True
    try:
        return answer(exc)
    finally:
        logger.disabled = disabled


# --- the document --------------------------------------------------------------------------


@functools.cache
def _document_text() -> str:
    return json.dumps(openapi.document())


def document() -> dict[str, Any]:
    return dict(json.loads(_document_text()))


def _resolved(doc: dict[str, Any], node: Schema) -> Schema:
    while "$ref" in node:
        *_, kind, name = node["$ref"].split("/")
        node = doc["components"][kind][name]
    return node


def response_of(doc: dict[str, Any], answer: Answer) -> Schema | None:
    operation = doc["paths"].get(answer.path, {}).get(answer.method)
    if operation is None:
        return None
    found = operation["responses"].get(str(answer.status))
    return None if found is None else _resolved(doc, found)


def _validator(doc: dict[str, Any], schema: Schema) -> Any:
    return _validator_of(_components_text(doc), json.dumps(schema))


# The last document's components as JSON text, with the dict itself (held, so that its id is
# not reused): serializing the whole section for every schema checked cost more than the check
# (the end-to-end suites check thousands of answers against one document). Documents are only
# read here; a caller with another document gets its own text.
_last_components: tuple[dict[str, Any], str] | None = None


def _components_text(doc: dict[str, Any]) -> str:
    global _last_components
    components = doc["components"]
    if _last_components is None or _last_components[0] is not components:
        _last_components = (components, json.dumps(components))
    return _last_components[1]


@functools.lru_cache(maxsize=512)
def _validator_of(components: str, schema: str) -> Any:
    # The component references ("#/components/...") resolve in a root that holds them.
    root = {**json.loads(schema), "components": json.loads(components)}
    return jsonschema.Draft202012Validator(root, format_checker=jsonschema.FormatChecker())


def webhook_problems(
    doc: dict[str, Any], name: str, body: Any, headers: dict[str, str]
) -> list[str]:
    """What the document's webhook ``name`` (OpenAPI's ``webhooks``: a request the service
    sends) does not list of one delivery: its JSON body or a header parameter."""
    operation = doc["webhooks"][name]["post"]
    found: list[str] = []
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    for error in _validator(doc, schema).iter_errors(body):
        where = "/".join(str(part) for part in error.absolute_path) or "(the body)"
        found.append(f"webhook {name}: {where}: {error.message[:300]}")
    given = {key.lower(): value for key, value in headers.items()}
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "header":
            continue
        value = given.get(parameter["name"].lower())
        if value is None:
            if parameter.get("required"):
                found.append(f"webhook {name}: header {parameter['name']} is missing")
            continue
        for error in _validator(doc, parameter["schema"]).iter_errors(value):
            found.append(f"webhook {name}: header {parameter['name']}: {error.message[:200]}")
    return found


def problems(doc: dict[str, Any], answer: Answer) -> list[str]:
    """What the document does not list of ``answer``; empty when it lists all of it."""
    response = response_of(doc, answer)
    if response is None:
        return [f"{answer.label}: the document lists no such operation and status"]
    found: list[str] = []
    content = response.get("content", {})
    if not content and answer.body is None:
        pass  # no body, as documented: its content type (the host's default) says nothing
    elif answer.mimetype not in content:
        found.append(f"{answer.label}: content type {answer.mimetype} is not documented")
    else:
        schema = content[answer.mimetype]["schema"]
        for error in _validator(doc, schema).iter_errors(answer.body):
            where = "/".join(str(part) for part in error.absolute_path) or "(the body)"
            found.append(f"{answer.label}: {where}: {error.message[:300]}")
    documented = {name.lower(): header for name, header in response.get("headers", {}).items()}
    given = {name.lower(): value for name, value in answer.headers.items()}
    for name, value in given.items():
        if name in CONTENT_HEADERS:
            continue
        header = documented.get(name)
        if header is None:
            found.append(f"{answer.label}: header {name} is not documented")
            continue
        schema = header["schema"]
        coerced: Any = int(value) if schema.get("type") == "integer" and value.isdigit() else value
        for error in _validator(doc, schema).iter_errors(coerced):
            found.append(f"{answer.label}: header {name}: {error.message[:200]}")
    for name, header in documented.items():
        if header.get("required") and name not in given:
            found.append(f"{answer.label}: header {name} is missing")
    return found


# --- fields --------------------------------------------------------------------------------


def response_schemas(doc: dict[str, Any]) -> Iterator[tuple[str, Schema]]:
    """Every (operation and status, JSON schema) of the document's answers."""
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, found in operation["responses"].items():
                response = _resolved(doc, found)
                for media in response.get("content", {}).values():
                    yield f"{method.upper()} {path} -> {status}", media["schema"]


def _may_be_null_or_not(schema: Schema) -> bool:
    types = schema.get("type")
    if isinstance(types, list):
        return "null" in types and len(types) > 1
    branches = schema.get("anyOf") or schema.get("oneOf") or []
    return any(b.get("type") == "null" for b in branches) and len(branches) > 1


def _ref_name(node: Schema) -> str:
    return str(node["$ref"].rsplit("/", 1)[1])


def fields(doc: dict[str, Any]) -> set[str]:
    """Every field the document's answers have (and ``!`` for one that may also be null)."""
    found: set[str] = set()
    seen_refs: set[str] = set()

    def visit(node: Schema, where: str) -> None:
        if "$ref" in node:
            name = _ref_name(node)
            if name not in seen_refs:
                seen_refs.add(name)
                visit(_resolved(doc, node), name)
            return
        for branch in node.get("anyOf", []) + node.get("oneOf", []):
            visit(branch, where)
        for key, child in node.get("properties", {}).items():
            found.add(f"{where}.{key}")
            if _may_be_null_or_not(child):
                found.add(f"{where}.{key}!")
            visit(child, f"{where}.{key}")
        if isinstance(node.get("additionalProperties"), dict):
            visit(node["additionalProperties"], f"{where}.*")
        if isinstance(node.get("items"), dict):
            visit(node["items"], f"{where}[]")

    for label, schema in response_schemas(doc):
        visit(schema, label)
    return found


def answered(doc: dict[str, Any], answers: list[Answer]) -> set[str]:
    """The fields (and ``!``) the answers showed, walked along the document's schemas."""
    found: set[str] = set()

    def matches(node: Schema, value: Any) -> bool:
        return bool(_validator(doc, node).is_valid(value))

    def visit(node: Schema, value: Any, where: str) -> None:
        if "$ref" in node:
            visit(_resolved(doc, node), value, _ref_name(node))
            return
        for branch in node.get("anyOf", []) + node.get("oneOf", []):
            if matches(branch, value):
                visit(branch, value, where)
        if isinstance(value, dict):
            properties = node.get("properties", {})
            for key, item in value.items():
                if key in properties:
                    found.add(f"{where}.{key}")
                    if item is not None:
                        found.add(f"{where}.{key}!")
                    visit(properties[key], item, f"{where}.{key}")
                elif isinstance(node.get("additionalProperties"), dict):
                    visit(node["additionalProperties"], item, f"{where}.*")
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            for item in value:
                visit(node["items"], item, f"{where}[]")

    for answer in answers:
        response = response_of(doc, answer)
        content = (response or {}).get("content", {})
        if answer.mimetype in content:
            label = f"{answer.method.upper()} {answer.path} -> {answer.status}"
            visit(content[answer.mimetype]["schema"], answer.body, label)
    return found
