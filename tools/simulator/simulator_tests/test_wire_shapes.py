"""The bytes on the wire, checked against OpenAI's published OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

import httpx

from simulator.server import Simulator
from simulator_tests.conftest import png_bytes
from simulator_tests.openapi_schema import violations

HEADERS = {"Authorization": "Bearer sk-test"}
BODY: dict[str, Any] = {
    "model": "gpt-image-2",
    "prompt": "a red apple",
    "size": "1024x1024",
    "quality": "low",
    "output_format": "jpeg",
}


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of an SSE body; comment lines are skipped as clients do."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.split("\n") if not line.startswith(":")]
        if not lines:
            continue
        name = next(line[7:] for line in lines if line.startswith("event: "))
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        events.append((name, json.loads(data)))
    return events


def test_non_streamed_body_fits_images_response(sim: Simulator):
    response = httpx.post(f"{sim.url}/v1/images/generations", json=BODY, headers=HEADERS)
    body = response.json()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert violations(body, "ImagesResponse") == []
    assert set(body) == {
        "created",
        "data",
        "background",
        "output_format",
        "quality",
        "size",
        "usage",
    }
    assert set(body["data"][0]) == {"b64_json"}


def test_generation_stream_events_fit_their_schemas(sim: Simulator):
    response = httpx.post(
        f"{sim.url}/v1/images/generations",
        json={**BODY, "stream": True, "partial_images": 2},
        headers=HEADERS,
    )
    events = sse_events(response.text)

    assert response.headers["content-type"].startswith("text/event-stream")
    assert [name for name, _ in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    for name, data in events[:2]:
        assert data["type"] == name
        assert violations(data, "ImageGenPartialImageEvent") == []
    assert violations(events[-1][1], "ImageGenCompletedEvent") == []
    assert "sequence_number" not in events[-1][1]


def test_edit_stream_events_fit_their_schemas(sim: Simulator):
    files = [("image[]", ("a.png", png_bytes(), "image/png"))] * 2
    fields = {key: str(value) for key, value in BODY.items()}
    response = httpx.post(
        f"{sim.url}/v1/images/edits",
        data={**fields, "stream": "true", "partial_images": "1"},
        files=files,
        headers=HEADERS,
    )
    events = sse_events(response.text)

    assert [name for name, _ in events] == ["image_edit.partial_image", "image_edit.completed"]
    assert violations(events[0][1], "ImageEditPartialImageEvent") == []
    assert violations(events[1][1], "ImageEditCompletedEvent") == []


def test_openai_errors_fit_error_response(sim: Simulator):
    response = httpx.post(
        f"{sim.url}/v1/images/generations", json={**BODY, "size": "1000x1000"}, headers=HEADERS
    )
    assert response.status_code == 400
    assert violations(response.json(), "ErrorResponse") == []
    assert response.headers["x-request-id"].startswith("req_")


def test_edits_need_multipart(sim: Simulator):
    response = httpx.post(f"{sim.url}/v1/images/edits", json=BODY, headers=HEADERS)
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]["message"]


def test_invalid_json_is_a_400_in_the_openai_envelope(sim: Simulator):
    response = httpx.post(
        f"{sim.url}/v1/images/generations",
        content=b"{not json",
        headers={**HEADERS, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert violations(response.json(), "ErrorResponse") == []


def _without_nulls(value: Any) -> Any:
    """The document's Batch and File schemas type optional fields as plain strings and integers,
    while its own examples (and the service) send null for unset ones: nulls are not checked."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def test_files_and_batches_fit_their_schemas(make_sim):
    sim = make_sim()
    line = {"custom_id": "a", "method": "POST", "url": "/v1/images/generations", "body": BODY}
    uploaded = httpx.post(
        f"{sim.url}/v1/files",
        data={"purpose": "batch"},
        files={"file": ("requests.jsonl", json.dumps(line).encode(), "application/jsonl")},
        headers=HEADERS,
    )
    file_id = uploaded.json()["id"]
    created = httpx.post(
        f"{sim.url}/v1/batches",
        json={
            "input_file_id": file_id,
            "endpoint": "/v1/images/generations",
            "completion_window": "24h",
        },
        headers=HEADERS,
    )
    listed = httpx.get(f"{sim.url}/v1/batches", headers=HEADERS)
    files = httpx.get(f"{sim.url}/v1/files", headers=HEADERS)
    deleted = httpx.delete(f"{sim.url}/v1/files/{file_id}", headers=HEADERS)
    missing = httpx.get(f"{sim.url}/v1/batches/batch_nope", headers=HEADERS)

    assert uploaded.status_code == 200
    assert violations(_without_nulls(uploaded.json()), "OpenAIFile") == []
    assert created.status_code == 200
    assert created.headers["x-request-id"].startswith("req_")
    assert violations(_without_nulls(created.json()), "Batch") == []
    assert set(created.json()) >= {"id", "object", "status", "request_counts", "errors", "metadata"}
    assert violations(_without_nulls(listed.json()), "ListBatchesResponse") == []
    assert violations(_without_nulls(files.json()), "ListFilesResponse") == []
    assert violations(deleted.json(), "DeleteFileResponse") == []
    assert missing.status_code == 404
    assert violations(missing.json(), "ErrorResponse") == []
