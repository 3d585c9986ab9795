"""The OpenAPI 3.1 document of the whole HTTP API, served at ``GET /api/openapi.json``.

Built here in Python rather than kept as a JSON file, so that the vocabularies it lists (job
and batch states, failure kinds and layers, the model's qualities and formats, the request's
fields) are the code's own, and cannot drift from it:

    document()        # the document (a fresh copy: callers may change it)
    serve(req)        # the 200 answer with it

It is kept true by tests, not by care: tests/app/test_openapi.py holds every HTTP function of
function_app against the document's paths and methods (both ways), validates every answer the
handler tests produce against the document's response schema and headers, and fails on a field
the document lists that no answer has; tests/e2e/test_openapi_fuzz.py fuzzes the running app
from the document (schemathesis) and checks every answer against it.

Besides the JSON API it describes the web page's answers (its files as text/html,
text/javascript and text/css, a 304, the 308 to its folder, each with its headers) and, as
OpenAPI's ``webhooks``, the event a job's ``webhookUrl`` is sent: what the service itself
requests, which tests/e2e/test_webhooks.py holds every delivery against.

The document is the same for every deployment: it names no route, host or setting's value, so
it is served anonymously (clients and tools read it before they hold a key) and says nothing
that the repository's docs do not.

The package's modules, each a part of the document: ``kit`` (the schemas' building blocks),
``error_codes`` (every error answer's codes), ``schemas`` (``components.schemas``), ``paths``
(the operations, the reusable responses and the webhook); this module puts them together.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import azure.functions as func

from http_api.openapi.error_codes import ERROR_CODES, ERROR_VARIANTS, LINE_ERROR_CODES
from http_api.openapi.paths import ROUTE, _paths, _responses, _webhooks
from http_api.openapi.schemas import _schemas
from storage.protocol import JSON

__all__ = ["ERROR_CODES", "ERROR_VARIANTS", "LINE_ERROR_CODES", "ROUTE", "document", "serve"]

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"


@functools.cache
def _built() -> str:
    paths = _paths()
    for item in paths.values():
        for operation in item.values():
            if operation.get("security") != []:
                operation["responses"]["401"] = {"$ref": "#/components/responses/Unauthorized"}
    built = {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "gpt-image durable jobs",
            "version": API_VERSION,
            "description": "Durable gpt-image-2 image jobs: start a job and get its id at "
            "once, poll its status (Retry-After says when) or have its end pushed to a "
            "webhook, cancel it, get its escalation packet; upload an edit's input images; run "
            "batches; see each route's health; a web page that does the same. Every answer is "
            "JSON, camelCase (the web page's files aside); every failure the envelope "
            '`{"error": {"code", "message", "field"}}`. A path no route has is a 404 '
            "(`no_such_route`), a route asked with another method a 405 (`method_not_allowed`, "
            "with Allow). Contract: docs/job-contract.md.",
        },
        "servers": [{"url": "/api", "description": "The Functions host's route prefix."}],
        "security": [{"functionKeyHeader": []}, {"functionKeyQuery": []}],
        "tags": [
            {"name": "images", "description": "Image jobs and their inputs."},
            {"name": "batches", "description": "Many image requests at once (docs/batches.md)."},
            {"name": "routes", "description": "The routes' health (docs/routes.md)."},
            {"name": "webhooks", "description": "A job's end, pushed (docs/webhooks.md)."},
            {"name": "web page", "description": "The page at /api/ui (docs/job-contract.md)."},
            {"name": "meta", "description": "This document."},
        ],
        "paths": paths,
        "webhooks": _webhooks(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {
                "functionKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "A function key (or the host key).",
                },
                "functionKeyQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "code",
                    "description": "The same key as a query parameter; URLs the API hands "
                    "out carry it back.",
                },
            },
        },
    }
    return json.dumps(built)


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy)."""
    return dict(json.loads(_built()))


async def serve(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/openapi.json: the document."""
    return func.HttpResponse(_built(), status_code=200, mimetype=JSON)
