"""Every answer the end-to-end tests get from an operation of the OpenAPI document is held
against it (tests/app/openapi_answers.py ``problems``): a running job's status, a real failure's
error, a batch's progress, as the whole stack answers them. Hooked into the tests' HTTP client
(conftest ``Api``); an answer the document does not list fails the request that got it.

Requests outside the document's operations (an unknown path, another method, the catch-all's
404 and 405) are the edge fuzz's business, not checked here. What the service itself sends, a
webhook's event, is held against the document's ``webhooks`` by ``check_webhook``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import httpx

from tests.app.openapi_answers import Answer, document, problems, webhook_problems

PREFIX = "/api"


@functools.cache
def _document() -> dict[str, Any]:
    """One copy for every check (only read here): parsing the document again for each of the
    thousands of answers a run checks was most of the checks' time."""
    return document()


@functools.cache
def _operations() -> tuple[tuple[re.Pattern[str], str, str], ...]:
    found = []
    for path, item in _document()["paths"].items():
        pattern = re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(PREFIX + path)))
        found += [(pattern, method, path) for method in item]
    return tuple(found)


def _operation(method: str, path: str) -> str | None:
    for pattern, documented, template in _operations():
        if documented == method.lower() and pattern.fullmatch(path):
            return template
    return None


def check(response: httpx.Response) -> None:
    """An httpx response hook: raises AssertionError for an answer the document does not list."""
    request = response.request
    template = _operation(request.method, request.url.path)
    if template is None:
        return
    response.read()
    mimetype = response.headers.get("content-type", "").split(";", 1)[0].strip()
    body: Any = None
    if response.content:
        body = response.json() if mimetype == "application/json" else response.text
    answer = Answer(
        method=request.method.lower(),
        path=template,
        status=response.status_code,
        mimetype=mimetype,
        headers={k: v for k, v in response.headers.items() if k.lower() not in _TRANSPORT},
        body=body,
    )
    found = problems(_document(), answer)
    if answer.status == 401 and not response.content:
        found = [p for p in found if "content type" not in p]  # the host's empty refusal
    assert not found, f"{request.method} {request.url}: " + "; ".join(found[:5])


# Headers of the transport (the host's), not of the answer.
_TRANSPORT = frozenset(
    {"content-type", "content-length", "date", "server", "connection", "transfer-encoding"}
)


def check_webhook(body: Any, headers: dict[str, str]) -> None:
    """Raises AssertionError for a webhook delivery (its JSON body and headers, as a receiver
    got them) that the document's ``webhooks`` does not list."""
    found = webhook_problems(_document(), "imageJobEnded", body, headers)
    assert not found, "; ".join(found[:5])
