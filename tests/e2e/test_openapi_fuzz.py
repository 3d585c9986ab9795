"""A fuzz of the running app generated from its own OpenAPI document (schemathesis): every
operation, with the document's examples, schemathesis' coverage cases (each schema's boundaries,
kept and broken) and generated requests that keep or break the schemas. Whatever arrives, no
answer is a 5xx (or no answer at all) and every answer is one the document lists: its status,
content type, headers and JSON body.

The document is the one the app serves (GET /api/openapi.json, anonymously). Jobs it starts are
real (the simulator is local) and kept cheap: a request the document allows that would draw
large or many images is sent as one small low-quality image instead (``cheap``); the document
itself is not narrowed. The request count and the answers by status are printed.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections import Counter
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from schemathesis import APIOperation, Case

# How schemathesis' own pytest integration builds a test for one operation (examples, coverage
# and fuzzing phases, positive and negative modes); pinned with schemathesis in constraints.txt.
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)

from http_api.openapi import document
from rules.webhooks import WEBHOOK_FIELD, WebhookSettings, url_problem

from .conftest import PROMPT, Api

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

# Generated requests per operation, beside the examples and coverage cases: about 20 s on two
# cores. OPENAPI_FUZZ_EXAMPLES=600 digs deeper (about 5 minutes).
EXAMPLES = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "50"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]
# A case of any operation.
AnyCase = Case[APIOperation[Any, Any, Any, Any]]
JSONL = ("application/jsonl", "application/x-ndjson", "application/json-seq", "text/plain")
# The document lists its media types: any other is 415, which no operation's schema describes.


@schemathesis.serializer(*JSONL)
def _json_lines(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """A manifest, which the document gives as a list of line objects, sent as JSON Lines."""
    if isinstance(value, list):
        return "".join(json.dumps(line) + "\n" for line in value).encode()
    if isinstance(value, bytes):
        return value
    return str(value).encode()


# Where a webhook the service would take is sent instead: loopback's discard port, where
# nothing listens, so no delivery leaves the machine (the document's example names a real host).
NOWHERE = "http://127.0.0.1:9/fuzz"
# The loosest settings a stack may have: every target these take could be delivered to.
_ANY_TARGET = WebhookSettings(secret=b"x" * 16, allow_http=True, allow_loopback=True)


def _cheap_request(body: Any) -> Any:
    """A request the document allows, drawing one small low-quality image: what it would make
    costs real CPU in the simulator (a 3840x2160 PNG, ten at a time) without telling more; and
    a webhook the service would take goes nowhere."""
    if not isinstance(body, dict):
        return body
    cheap = dict(body)
    target = cheap.get(WEBHOOK_FIELD)
    if isinstance(target, str) and url_problem(target, _ANY_TARGET) is None:
        cheap[WEBHOOK_FIELD] = NOWHERE
    n = cheap.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        cheap["n"] = 1
    if cheap.get("quality") in ("medium", "high", "auto"):
        cheap["quality"] = "low"
    size = cheap.get("size")
    if isinstance(size, str) and (size == "auto" or "x" in size):
        cheap["size"] = "1024x1024"
    return cheap


def cheap(case: AnyCase) -> None:
    body: Any = case.body
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        case.body = {**body, "items": [_cheap_request(item) for item in body["items"]]}
    elif isinstance(body, list):
        case.body = [_cheap_request(item) for item in body]
    elif isinstance(body, dict) and isinstance(body.get("request"), dict):
        case.body = {**body, "request": _cheap_request(body["request"])}
    elif isinstance(body, dict):
        case.body = _cheap_request(body)


def test_every_answer_to_the_documents_requests_is_documented_and_none_a_5xx(
    api: Api, capsys: pytest.CaptureFixture[str]
):
    served = httpx.get(f"{api.stack.devhost_url}/api/openapi.json")  # no key: anonymous
    assert served.status_code == 200, served.text
    assert served.headers["content-type"].startswith("application/json")
    assert served.json() == document()
    schema = schemathesis.openapi.from_dict(served.json())
    base_url = f"{api.stack.devhost_url}/api"

    # Real ids for the id routes, every other case: a cheap job and a one-line batch.
    job = api.start(prompt=PROMPT, size="1024x1024", quality="low")
    assert job.status_code == 202, job.text
    batch = api.http.post(
        "/api/batches",
        json={"items": [{"custom_id": "fuzz-1", "prompt": PROMPT, "quality": "low"}]},
    )
    assert batch.status_code == 202, batch.text
    real_ids = {"/images/{id}": job.json()["id"], "/batches/{id}": batch.json()["id"]}
    turns = itertools.cycle((True, False))

    session = requests.Session()
    key = {"x-functions-key": api.stack.function_key}
    answers: Counter[int] = Counter()
    by_operation: Counter[str] = Counter()
    failures: list[str] = []

    def send(case: AnyCase) -> None:
        cheap(case)
        real = next(turns)
        for prefix, real_id in real_ids.items():
            if real and case.operation.path.startswith(prefix):
                case.path_parameters = {**(case.path_parameters or {}), "id": real_id}
        label = case.operation.label
        try:
            response = case.call(base_url=base_url, session=session, headers=key, timeout=30)
        except requests.RequestException as exc:  # no answer at all: as bad as a 5xx
            failures.append(f"{label} -> no answer: {exc!r}"[:1500])
            return
        answers[response.status_code] += 1
        by_operation[label] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=key)
        except (AssertionError, BaseExceptionGroup) as exc:  # a Failure, or a FailureGroup
            failures.append(f"{label} -> {response.status_code}: {exc}"[:2000])

    started = time.monotonic()
    settings = hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    config = HypothesisTestConfig(
        project=schema.config,
        modes=list(HypothesisTestMode),
        settings=settings,
        explicit_settings=settings,
    )
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err: the document is invalid
        create_test(operation=operation, test_func=send, config=config)()

    # Without a key, every operation but the anonymous ones (the document, the web page) is
    # refused by the host (401); those answer as they do with one.
    for path, item in served.json()["paths"].items():
        for method, operation in item.items():
            url = base_url + re.sub(r"\{[^}]+\}", "x", path)
            refused = httpx.request(method, url, timeout=30)
            if operation.get("security") == []:
                assert refused.status_code < 500, (method, path, refused.status_code)
                assert refused.status_code != 401, (method, path)
            else:
                assert refused.status_code == 401, (method, path, refused.status_code)
            assert str(refused.status_code) in operation["responses"], (method, path)
            answers[refused.status_code] += 1

    total = sum(answers.values())
    with capsys.disabled():
        print(
            f"\nopenapi fuzz: {total} requests over {len(by_operation)} operations in "
            f"{time.monotonic() - started:.0f}s, answers by status: {sorted(answers.items())}, "
            f"failures: {len(failures)}"
        )
    assert not failures, "\n\n".join(failures[:10])
    assert len(by_operation) == sum(len(item) for item in document()["paths"].values())
