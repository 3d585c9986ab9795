"""Image jobs end to end, through devhost + simulator + Azurite in scaled time."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from rules.timing import TIMING_FIELDS

from .conftest import PROMPT, Api

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

ORDER = ["queued", "generating", "preview_available", "finalizing", "saved"]


def run_job(api: Api, **body: Any) -> tuple[str, list[dict[str, Any]]]:
    response = api.start(prompt=PROMPT, **body)
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["state"] == "queued"
    assert response.headers["location"] == started["statusUrl"]
    assert int(response.headers["retry-after"]) >= 1
    return started["id"], api.poll(started["id"])


def test_a_small_low_job_is_saved_with_states_in_order(api: Api):
    _job_id, seen = run_job(api, size="1024x1024", quality="low", output_format="jpeg")
    states = [s["state"] for s in seen]
    distinct = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    assert all(s in ORDER for s in distinct), distinct
    assert [ORDER.index(s) for s in distinct] == sorted(ORDER.index(s) for s in distinct)
    assert "preview_available" in distinct
    final = seen[-1]
    assert final["state"] == "saved"
    # A poller saw a preview while the job was still running, before the final image.
    first_preview = next(s for s in seen if s["previews"])
    assert first_preview["state"] in ("preview_available", "finalizing")

    image = final["image"]
    assert (image["width"], image["height"]) == (1024, 1024)
    assert image["contentType"] == "image/jpeg"
    data = httpx.get(image["url"]).content
    assert len(data) == image["bytes"]
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == "JPEG"
        assert decoded.size == (1024, 1024)
    # Links are read-only SAS: without the signature the blob is refused.
    assert httpx.get(image["url"].split("?")[0]).status_code in (401, 403, 404)
    assert PROMPT not in json.dumps(seen)


def test_a_4k_high_job_is_saved_at_its_size(api: Api):
    _job_id, seen = run_job(
        api, size="3840x2160", quality="high", output_format="png", route="openai"
    )
    final = seen[-1]
    assert final["state"] == "saved", final
    image = final["image"]
    assert (image["width"], image["height"]) == (3840, 2160)
    # About 16 MB: decoded as it streamed in, written to Blob in staged blocks; the blob is
    # whole and in order when it decodes to its last pixel.
    data = httpx.get(image["url"]).content
    assert len(data) == image["bytes"] > 15_000_000
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == "PNG"
        assert decoded.size == (3840, 2160)
        decoded.load()


def test_metadata_json_holds_every_field(api: Api):
    job_id, seen = run_job(api, size="1536x1024", quality="medium", output_format="png")
    metadata = httpx.get(seen[-1]["metadataUrl"]).json()
    for field in (
        *TIMING_FIELDS,
        "id",
        "state",
        "http_status",
        "error_type",
        "request_id",
        "rate_limit",
        "model",
        "quality",
        "size",
        "format",
        "route",
        "route_owner",
        "retry_count",
        "retry_reason",
        "usage",
        "cost_usd",
        "images",
        "previews",
        "attempts",
        "request",
    ):
        assert field in metadata, field
    assert metadata["id"] == job_id
    assert metadata["route_owner"] == "azure"
    assert metadata["request"]["prompt_chars"] == len(PROMPT)
    assert "prompt" not in metadata["request"]
    assert metadata["request_id"]
    assert metadata["usage"]["output_tokens"] > 0
    assert metadata["cost_usd"] > 0
    [attempt] = metadata["attempts"]
    assert attempt["ok"] is True
    assert attempt["timings"]["final_image_ms"] >= attempt["timings"]["first_byte_ms"]
    assert PROMPT not in json.dumps(metadata)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": "p", "size": "1000x1000"}, "size"),
        ({"prompt": "p", "size": "4000x2000"}, "size"),
        ({"prompt": "p", "quality": "best"}, "quality"),
        ({"prompt": "p", "output_format": "gif"}, "output_format"),
        ({"prompt": "p", "output_format": "png", "output_compression": 50}, "output_compression"),
        ({"prompt": "p", "background": "transparent", "output_format": "jpeg"}, "background"),
        ({"prompt": "p", "moderation": "off"}, "moderation"),
        ({"prompt": "p", "n": 11}, "n"),
        ({"prompt": "p", "partial_images": 4}, "partial_images"),
        ({"prompt": "p", "route": "elsewhere"}, "route"),
        ({"prompt": "p", "input_fidelity": "high"}, "input_fidelity"),
    ],
)
def test_an_invalid_request_is_refused_naming_the_field(api: Api, body, field):
    response = api.http.post("/api/images", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == field
    assert error["code"]
    assert error["message"]


def test_not_json_and_unknown_ids(api: Api):
    response = api.http.post(
        "/api/images", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "body"
    assert api.status("no-such-job").status_code == 404


def test_without_a_key_the_api_is_closed(api: Api):
    response = httpx.post(f"{api.stack.devhost_url}/api/images", json={"prompt": "p"})
    assert response.status_code == 401


def test_the_job_log_event_has_every_clock_and_no_prompt_or_key(api: Api):
    job_id, _seen = run_job(api, size="1024x1024", quality="low")
    log = (api.stack.log_dir / "devhost.log").read_text()
    [line] = [ln for ln in log.splitlines() if "image_job_finished" in ln and job_id in ln]
    fields = json.loads(line[line.index("{") :])
    for field in (*TIMING_FIELDS, "http_status", "request_id", "model", "route_owner"):
        assert field in fields, field
    assert fields["state"] == "saved"
    assert PROMPT not in log
    assert "local-simulator-key" not in log
    assert api.stack.function_key not in log


def test_two_images_in_one_job_are_both_stored_with_every_preview(api: Api):
    _job_id, seen = run_job(
        api, size="1024x1024", quality="low", output_format="jpeg", n=2, partial_images=2
    )
    final = seen[-1]
    assert final["state"] == "saved"
    assert [image["url"].split("?")[0].rsplit("/", 1)[1] for image in final["images"]] == [
        "image-0.jpg",
        "image-1.jpg",
    ]
    for image in final["images"]:
        with Image.open(io.BytesIO(httpx.get(image["url"]).content)) as decoded:
            assert decoded.size == (1024, 1024)
    # Two images with two partials each: four previews, none overwriting another.
    assert sorted(p["index"] for p in final["previews"]) == [0, 1, 2, 3]


def test_without_easy_auth_the_principal_header_is_not_trusted(api: Api):
    """Anyone can send x-ms-client-principal-id; only Easy Auth makes it mean something."""
    alice = {"x-ms-client-principal-id": "alice"}
    mallory = {"x-ms-client-principal-id": "mallory"}
    job = api.start(headers=alice, prompt=PROMPT + " untrusted", size="1024x1024").json()["id"]
    assert api.status(job, headers=mallory).status_code in (200, 202)  # both are the default caller
    api.poll(job)
