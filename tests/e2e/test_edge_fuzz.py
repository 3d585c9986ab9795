"""A property-based fuzz of the HTTP edge against the local stack: odd methods, paths, job ids,
headers, encodings and bodies. Whatever arrives, the answer is never a 5xx and never an empty
error body: every 4xx carries the JSON error envelope.

The request count is printed (it is part of the test's output, not only of its verdict).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Api

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

# Behind Easy Auth, so that the principal header is read (and can be garbage).
STACK = {"extra_env": {"IMAGE_TRUST_PRINCIPAL_HEADER": "true"}}
EXAMPLES = 2500

ID_LIKE = st.one_of(
    st.just("img-0123456789abcdef01234567-1"),
    st.text(min_size=1, max_size=40),
    st.sampled_from(["%3F", "%23", ".", "..", "%09", "%0D", "%0A", "%00", "img-%3Fx", "a%2Fb"]),
    st.builds(
        lambda base, tail: base + tail,
        st.just("img-0123456789abcdef01234567-1"),
        st.sampled_from(["%3Fx", "%3Fzz", "%23", "%20", "/", "%2F..", "~"]),
    ),
)
PATHS = st.one_of(
    st.just("/api/images"),
    st.builds(lambda i: f"/api/images/{i}", ID_LIKE),
    st.builds(lambda i: f"/api/images/{i}/cancel", ID_LIKE),
    st.builds(lambda p: f"/api/{p}", st.text(max_size=30)),
    st.sampled_from(["/api", "/api/", "/api/images/", "/api/images//cancel", "/api/ui"]),
)
METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
# Most requests go to the three endpoints with their own methods, where the app's validation
# is exercised; the rest anywhere, with any method.
TARGETS = st.one_of(
    st.tuples(st.just("POST"), st.just("/api/images")),
    st.tuples(st.just("POST"), st.just("/api/images")),
    st.tuples(st.just("GET"), st.builds(lambda i: f"/api/images/{i}", ID_LIKE)),
    st.tuples(st.just("POST"), st.builds(lambda i: f"/api/images/{i}/cancel", ID_LIKE)),
    st.tuples(METHODS, PATHS),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "prompt",
        "size",
        "quality",
        "output_format",
        "output_compression",
        "background",
        "moderation",
        "n",
        "partial_images",
        "route",
        "input_fidelity",
        "model",
    ]
)
REQUEST_LIKE = st.dictionaries(FIELDS, JSON_VALUES, max_size=6).map(
    lambda body: {"prompt": "a red apple", **body}
)
BODIES = st.one_of(
    st.none(),
    REQUEST_LIKE.map(lambda b: json.dumps(b).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 5000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.just(b'{"prompt": "\\ud800"}'),
    st.just(b"\xff\xfe\x00{"),
)
HEADER_VALUES = st.one_of(
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
    st.sampled_from([b"application/json", b"text/plain", b"application/x-www-form-urlencoded"]),
)
HEADERS = st.dictionaries(
    st.sampled_from(
        ["content-type", "x-ms-client-principal-id", "idempotency-key", "accept", "x-custom"]
    ),
    HEADER_VALUES,
    max_size=3,
)
QUERIES = st.dictionaries(
    st.sampled_from(["includePrompt", "code", "x", "a b"]), st.text(max_size=10), max_size=2
)


# What HTTP allows in a field value (RFC 9110 5.5): tab, visible ASCII, space and obs-text
# (0x80-0xFF, so raw bytes that are not UTF-8 too). Control bytes are refused by the host's HTTP
# parser before any function runs, as any front end refuses them.
_FIELD_BYTES = frozenset({0x09, *range(0x20, 0x7F), *range(0x80, 0x100)})


def _clean(headers: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in headers.items() if all(b in _FIELD_BYTES for b in v)}


def test_no_input_draws_a_5xx_or_an_empty_error_body(api: Api, capsys: pytest.CaptureFixture[str]):
    sent: list[int] = []
    statuses: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(TARGETS, QUERIES, HEADERS, BODIES)
    def one(
        target: tuple[str, str],
        query: dict[str, str],
        headers: dict[str, bytes],
        body: bytes | None,
    ) -> None:
        method, path = target
        # The client's own headers carry the function key.
        request_headers: dict[str, Any] = dict(_clean(headers))
        try:
            url = httpx.URL(api.stack.devhost_url + path, params=query)
            answer = api.http.request(method, url, headers=request_headers, content=body)
        except (httpx.InvalidURL, httpx.LocalProtocolError):
            return  # not a request a client can send
        sent.append(1)
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
        assert answer.status_code < 500, (method, path, answer.status_code, answer.text[:300])
        if answer.status_code >= 400 and answer.status_code not in (401,):
            assert answer.content, (method, path, answer.status_code)
            error = answer.json()["error"]
            assert error["code"], answer.text
            assert error["message"], answer.text

    one()
    with capsys.disabled():
        print(
            f"\nedge fuzz: {len(sent)} requests sent, answers by status: {sorted(statuses.items())}"
        )
    assert len(sent) >= 2000
