"""Edits through the whole app: input images uploaded to the link POST /api/uploads gives (a real
SAS on Azurite), inline as base64 or as multipart parts, on every route the simulator serves
(OpenAI, the Azure deployment path, the Azure v1 path, a compatible gateway); the simulator's
ledger shows the edits endpoint and the input count. Refusals never reach it, and the edits
failure of field report B (``image_generation_failed`` mid-stream) is retried as a server error.
The stack is test_faults.py's (virtual time, time scale 25), with two more routes.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any, cast

import httpx
import pytest
from PIL import Image

from .conftest import PROMPT, Api
from .faults import check_case, run_case
from .test_faults import AZURE_KEY, OPENAI_KEY
from .test_faults import STACK as FAULT_STACK

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

FAULT_ENV = cast(dict[str, str], FAULT_STACK["extra_env"])
STACK = {
    **FAULT_STACK,
    "extra_env": {
        **FAULT_ENV,
        "IMAGE_ROUTES": "azure,openai,azurev1,gateway",
        # Azure's v1 path: an OpenAI-compatible base URL, the deployment named as the model.
        "IMAGE_ROUTE_AZUREV1_OWNER": "gateway",
        "IMAGE_ROUTE_AZUREV1_BASE_URL": "{simulator_url}/openai/v1",
        "IMAGE_ROUTE_AZUREV1_KEY": AZURE_KEY,
        "IMAGE_ROUTE_GATEWAY_BASE_URL": "{simulator_url}/v1",
        "IMAGE_ROUTE_GATEWAY_KEY": OPENAI_KEY,
    },
}
ROUTES = {"openai": "openai", "azure": "azure", "azurev1": "azure_v1", "gateway": "openai"}
EDIT: dict[str, Any] = {
    "prompt": PROMPT,
    "size": "1024x1024",
    "quality": "low",
    "partial_images": 1,
}


def encoded(
    fmt: str, size: tuple[int, int] = (256, 256), mode: str = "RGB", tint: int = 0
) -> bytes:
    out = io.BytesIO()
    color: Any = (0, 0, 0, 0) if mode == "RGBA" else (40 + tint, 120, 200)
    Image.new(mode, size, color).save(out, {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt])
    return out.getvalue()


def b64(data: bytes) -> dict[str, str]:
    return {"b64_json": base64.b64encode(data).decode()}


def upload(api: Api, data: bytes) -> str:
    """What a caller does: ask for a link, PUT the bytes to it, name the upload."""
    answer = api.http.post("/api/uploads")
    assert answer.status_code == 201, answer.text
    link = answer.json()
    put = httpx.put(link["url"], content=data, headers=link["headers"], timeout=30)
    assert put.status_code == 201, put.text
    upload_id: str = link["upload"]
    return upload_id


def saved(api: Api, started: httpx.Response) -> tuple[dict[str, Any], dict[str, Any]]:
    assert started.status_code == 202, started.text
    final = api.poll(started.json()["id"], timeout_s=180)[-1]
    assert final["state"] == "saved", final
    return final, api.metadata(final)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_an_edit_of_three_uploaded_images_on_each_route(api: Api, route: str):
    mark = api.ledger_mark()
    images = [encoded("png", tint=len(route)), encoded("jpeg"), encoded("webp")]
    refs = [{"upload": upload(api, data)} for data in images]
    final, metadata = saved(api, api.start(**EDIT, route=route, images=refs))
    assert final["previews"], final
    assert final["image"]["width"] == 1024
    [entry] = api.ledger(mark)
    assert (entry["route"], entry["endpoint"]) == (ROUTES[route], "edits")
    assert entry["outcome"] == "completed"
    assert entry["shape"]["input_images"] == 3
    assert entry["shape"]["has_mask"] is False
    # Described by format, size and bytes; never by hash or content.
    assert [i["format"] for i in final["request"]["images"]] == ["png", "jpeg", "webp"]
    assert metadata["endpoint"] == "edits"
    assert metadata["inputs"]["images"] == 3
    assert metadata["upload_inputs_ms"] is not None
    assert final["timings"]["uploadInputsMs"] is not None
    assert "sha256" not in json.dumps(final)
    assert "sha256" not in json.dumps(metadata)
    # Input image tokens reach the cost from the usage (the simulator bills 1,000 each).
    assert metadata["usage"]["input_tokens_details"]["image_tokens"] == 3_000
    assert metadata["cost_estimated"] is False


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_an_edit_with_a_mask_on_each_route(api: Api, route: str):
    mark = api.ledger_mark()
    image = encoded("png", tint=100 + len(route))
    mask = encoded("png", mode="RGBA")
    started = api.start(**EDIT, route=route, images=[b64(image)], mask=b64(mask))
    final, metadata = saved(api, started)
    assert final["previews"], final
    [entry] = api.ledger(mark)
    assert (entry["endpoint"], entry["shape"]["input_images"]) == ("edits", 1)
    assert entry["shape"]["has_mask"] is True
    assert metadata["inputs"]["mask"] is True
    assert final["request"]["mask"]["format"] == "png"


def test_a_multipart_edit_with_file_parts(api: Api):
    mark = api.ledger_mark()
    files = [
        ("image[]", ("a.png", encoded("png", tint=7), "image/png")),
        ("image[]", ("b.jpg", encoded("jpeg"), "image/jpeg")),
        ("mask", ("m.png", encoded("png", mode="RGBA"), "image/png")),
    ]
    request = json.dumps({**EDIT, "route": "openai"})
    final, _ = saved(api, api.http.post("/api/images", data={"request": request}, files=files))
    [entry] = api.ledger(mark)
    assert (entry["shape"]["input_images"], entry["shape"]["has_mask"]) == (2, True)
    assert len(final["request"]["images"]) == 2


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"images": [b64(encoded("png"))] * 17}, "too_many", "images[16]"),
        (
            {"images": [b64(encoded("png"))], "mask": b64(encoded("png", (128, 128), "RGBA"))},
            "size_mismatch",
            "mask",
        ),
        ({"images": [b64(encoded("png"))], "mask": b64(encoded("png"))}, "no_alpha", "mask"),
        (
            {"images": [b64(encoded("png")), b64(encoded("png")), b64(b"\x89PNG not really")]},
            "unreadable_image",
            "images[2]",
        ),
    ],
    ids=["17 images", "mask of the wrong size", "mask without alpha", "unreadable image"],
)
def test_each_refusal_is_a_400_naming_the_field_with_nothing_sent(
    api: Api, body: dict[str, Any], code: str, field: str
):
    mark = api.ledger_mark()
    answer = api.start(**EDIT, route="azure", **body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["field"] == field
    assert api.ledger(mark) == []


def test_an_upload_named_by_another_caller_or_never_written_is_refused(api: Api):
    link = api.http.post("/api/uploads").json()
    answer = api.start(**EDIT, images=[{"upload": link["upload"]}])
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "code": "upload_not_found",
        "message": answer.json()["error"]["message"],
        "field": "images[0]",
    }
    assert api.http.get("/api/uploads").status_code == 405


def test_the_edits_failure_mid_stream_is_retried_as_a_server_error(api: Api):
    """Field report B's edits variant: ``image_generation_failed`` before any partial image."""
    fault = {
        "kind": "mid_stream_error",
        "after_partials": 0,
        "error_type": "image_generation_server_error",
        "code": "image_generation_failed",
        "match": {"endpoint": "edits"},
    }
    images = [b64(encoded("png", tint=33))]
    final, metadata, ledger = run_case(api, [fault], **EDIT, route="azure", images=images)
    check_case(api, final, metadata, ledger, state="saved", attempts=2, billable=1)
    first = metadata["attempts"][0]
    assert first["outcome"] == "server_error"
    assert first["code"] == "image_generation_failed"
    assert first["decision"]["retry"] is True
    assert all(entry["endpoint"] == "edits" for entry in ledger)
