"""An edit's attempt: inputs read from Blob by hash, sent as multipart to ``/images/edits`` in the
official SDK's shape (a test compares the parts of both), streamed back as a generation is, and
clocked apart (``read_inputs_ms``, ``upload_inputs_ms``); against MockTransport and against the
simulator on each route, whose ledger records the endpoint and the input count."""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest
from PIL import Image

from activities.attempt import Seams, run_attempt
from activities.blob_io import AsyncBlobs
from activities.inputs import part_names, read_inputs
from activities.route_client import build_call
from rules.inputs import InputRef
from rules.job_records import AttemptInput
from rules.outcome import FailureKind, Layer
from rules.request import ImageJobRequest
from rules.send_plan import SendPlan
from rules.settings import AppSettings
from rules.timing import Clocks
from simulator.config import config_from_dict
from simulator.server import Simulator
from storage.protocol import input_name
from tests.activities.test_generate import CREATED, SETTINGS, attempt, serving
from tests.fakes import InMemoryStore

PROMPT = "put the apple in the basket"
KEY = "sk-local-edits"


def encoded(fmt: str, size: tuple[int, int] = (64, 64), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    color: Any = (0, 0, 0, 0) if mode == "RGBA" else (120, 30, 200)
    Image.new(mode, size, color).save(out, {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt])
    return out.getvalue()


IMAGES = [encoded("png"), encoded("jpeg"), encoded("webp")]
MASK = encoded("png", mode="RGBA")


def ref(data: bytes, fmt: str) -> InputRef:
    return InputRef(hashlib.sha256(data).hexdigest(), fmt, len(data), 64, 64)


def edit_request(route: str = "azure", **fields: Any) -> ImageJobRequest:
    values: dict[str, Any] = {
        "prompt": PROMPT,
        "size": "1024x1024",
        "quality": "low",
        "output_format": "png",
        "background": "auto",
        "moderation": "auto",
        "n": 1,
        "partial_images": 1,
        "route": route,
        "images": tuple(ref(d, f) for d, f in zip(IMAGES, ("png", "jpeg", "webp"), strict=True)),
        "mask": ref(MASK, "png"),
    }
    values.update(fields)
    return ImageJobRequest(**values)


def edit_job(route: str = "azure", **fields: Any) -> AttemptInput:
    return AttemptInput(
        job_id="job-e",
        attempt=1,
        request=edit_request(route, **fields),
        send=SendPlan(stream=True, partial_images=1),
        job_created_at=CREATED,
    )


def store_with_inputs(request: ImageJobRequest) -> InMemoryStore:
    store = InMemoryStore()
    datas = {hashlib.sha256(d).hexdigest(): d for d in [*IMAGES, MASK]}
    for _, _, input_ref in part_names(request):
        name = input_name(input_ref.sha256, input_ref.format)
        store.put(name=name, data=datas[input_ref.sha256], content_type="image/x")
    return store


def parts(request: httpx.Request | httpx2.Request) -> tuple[dict[str, str], list[tuple[Any, ...]]]:
    """A multipart body as (text fields, [(part name, file name, content type, bytes)])."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.read())
    assert message.is_multipart()
    fields: dict[str, str] = {}
    files: list[tuple[Any, ...]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        if part.get_filename() is None:
            assert name not in fields
            fields[str(name)] = payload.decode()
        else:
            files.append((name, part.get_filename(), part.get_content_type(), payload))
    return fields, files


# --- the SDK's shape ------------------------------------------------------------------------


SDK_ROUTES = {
    # route name: (the app's route settings, the SDK client's construction)
    "openai": ({"OWNER": "openai", "BASE_URL": "http://sim/v1"}, "openai"),
    "azure": (
        {"OWNER": "azure", "BASE_URL": "http://sim", "DEPLOYMENT": "gpt-image-2"},
        "azure",
    ),
    "azurev1": ({"OWNER": "gateway", "BASE_URL": "http://sim/openai/v1"}, "azure_v1"),
}


def sdk_client(kind: str, transport: httpx2.MockTransport) -> openai.OpenAI:
    http = httpx2.Client(transport=transport)
    if kind == "azure":
        return openai.AzureOpenAI(
            azure_endpoint="http://sim",
            api_version="2025-04-01-preview",
            api_key=KEY,
            http_client=http,
            max_retries=0,
        )
    base = "http://sim/v1" if kind == "openai" else "http://sim/openai/v1"
    return openai.OpenAI(base_url=base, api_key=KEY, http_client=http, max_retries=0)


@pytest.mark.parametrize("route", sorted(SDK_ROUTES))
def test_the_sdk_and_the_route_client_send_the_same_multipart(route: str, tmp_path: Path):
    """Part names (``image[]`` for several, ``mask``), file names, content types, bytes and
    every form field: the official SDK's ``images.edit`` with files opened from disk, and this
    service's route client, for the same edit."""
    route_env, kind = SDK_ROUTES[route]
    env = {f"IMAGE_ROUTE_{route.upper()}_{k}": v for k, v in route_env.items()}
    settings = AppSettings.from_env(
        {
            "IMAGE_ROUTES": route,
            f"IMAGE_ROUTE_{route.upper()}_KEY": KEY,
            "IMAGES_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
            "IMAGE_JOB_ID_SECRET": "test-only-secret-0123456789",
            **env,
        }
    )
    request = edit_request(route)
    files = []
    for name, filename, input_ref in part_names(request):
        data = {hashlib.sha256(d).hexdigest(): d for d in [*IMAGES, MASK]}[input_ref.sha256]
        (tmp_path / filename).write_bytes(data)
        files.append((name, filename))

    captured: list[httpx2.Request] = []

    def capture(sent: httpx2.Request) -> httpx2.Response:
        captured.append(sent)
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=b"data: [DONE]\n\n"
        )

    client = sdk_client(kind, httpx2.MockTransport(capture))
    with (
        (tmp_path / "image-0.png").open("rb") as f0,
        (tmp_path / "image-1.jpg").open("rb") as f1,
        (tmp_path / "image-2.webp").open("rb") as f2,
        (tmp_path / "mask.png").open("rb") as mask,
    ):
        stream = client.images.edit(
            image=[f0, f1, f2],
            mask=mask,
            prompt=PROMPT,
            model="gpt-image-2",
            n=1,
            size="1024x1024",
            quality="low",
            output_format="png",
            background="auto",
            stream=True,
            partial_images=1,
        )
        stream.close()
    [sdk] = captured

    async def ours() -> httpx.Request:
        blobs = AsyncBlobs(store_with_inputs(request))
        inputs = await read_inputs(blobs, request, clocks=Clocks("t", 0.0), budget_s=1.0)
        call = build_call(
            settings.route(route),
            request,
            stream=True,
            partial_images=1,
            auth=("api-key", KEY) if kind == "azure" else ("authorization", f"Bearer {KEY}"),
            inputs=inputs,
        )
        async with httpx.AsyncClient() as client:
            return client.build_request("POST", call.url, headers=call.headers, **call.payload())

    mine = asyncio.run(ours())
    assert mine.url.path == sdk.url.path
    assert mine.url.params.get("api-version") == sdk.url.params.get("api-version")
    assert mine.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert sdk.headers["content-type"].startswith("multipart/form-data; boundary=")
    auth = "api-key" if kind == "azure" else "authorization"
    assert mine.headers[auth] == sdk.headers[auth]
    sdk_fields, sdk_files = parts(sdk)
    my_fields, my_files = parts(mine)
    if kind == "azure":  # the deployment in the path names the model; the SDK sends it anyway
        assert sdk_fields.pop("model") == "gpt-image-2"
    assert my_fields == sdk_fields
    assert [f[:3] for f in my_files] == [f[:3] for f in sdk_files]
    assert [f[0] for f in my_files] == ["image[]", "image[]", "image[]", "mask"]
    assert [f[2] for f in my_files] == ["image/png", "image/jpeg", "image/webp", "image/png"]
    assert my_files == sdk_files  # the bytes too
    assert "moderation" not in my_fields
    assert my_fields["stream"] == "true"


def test_one_image_goes_as_image_as_the_sdk_sends_a_single_file():
    request = edit_request(images=(ref(IMAGES[0], "png"),), mask=None)
    assert [(name, filename) for name, filename, _ in part_names(request)] == [
        ("image", "image-0.png")
    ]


# --- one attempt (MockTransport) ------------------------------------------------------------


def edit_stream(final: bytes) -> bytes:
    b64 = base64.b64encode(final).decode()
    events = [
        ("image_edit.partial_image", {"type": "image_edit.partial_image", "b64_json": b64}),
        (
            "image_edit.completed",
            {
                "type": "image_edit.completed",
                "b64_json": b64,
                "usage": {
                    "input_tokens": 3_210,
                    "input_tokens_details": {"text_tokens": 10, "image_tokens": 3_200},
                    "output_tokens": 300,
                },
            },
        ),
    ]
    return b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events)


def test_an_edit_attempt_sends_its_inputs_and_saves_the_image_with_previews():
    seen: list[httpx.Request] = []
    final = encoded("png", (1024, 1024))

    def handler(sent: httpx.Request) -> httpx.Response:
        seen.append(sent)
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=edit_stream(final)
        )

    job_input = edit_job()
    store = store_with_inputs(job_input.request)
    result = attempt(job_input, store, handler)
    assert result.ok, result.failure
    [sent] = seen
    assert sent.url.path == "/openai/deployments/gpt-image-2/images/edits"
    fields, files = parts(sent)
    assert len(files) == 4
    assert "model" not in fields  # the deployment names the model on Azure
    assert store.get(name="job-e/image.png") == final
    assert len(result.previews) == 1
    assert result.timings.read_inputs_ms is not None
    # Input image tokens are priced from the usage, as for a generation.
    assert result.cost_usd == round((10 * 5 + 3_200 * 8 + 300 * 30) / 1e6, 6)
    assert not result.cost_estimated


def recording(calls: list[httpx.Request]) -> Any:
    def handler(sent: httpx.Request) -> httpx.Response:
        calls.append(sent)
        return serving(b"")(sent)

    return handler


def test_a_missing_input_ends_the_attempt_before_the_send():
    calls: list[httpx.Request] = []
    job_input = edit_job()
    store = store_with_inputs(job_input.request)
    first = job_input.request.images[1]
    del store.blobs[input_name(first.sha256, first.format)]
    result = attempt(job_input, store, recording(calls))
    assert calls == []
    assert result.failure is not None
    assert result.failure.kind is FailureKind.STORAGE_FAILED
    assert result.failure.layer is Layer.STORAGE
    assert result.failure.sent is False
    assert "image-1.jpg" in result.failure.message
    assert result.cost_usd is None


def test_an_input_whose_bytes_are_not_its_hash_is_never_sent():
    calls: list[httpx.Request] = []
    job_input = edit_job()
    store = store_with_inputs(job_input.request)
    mask = job_input.request.mask
    assert mask is not None
    store.put(name=input_name(mask.sha256, "png"), data=IMAGES[0], content_type="image/png")
    result = attempt(job_input, store, recording(calls))
    assert calls == []
    assert result.failure is not None
    assert result.failure.sent is False
    assert "hash" in result.failure.message


# --- against the simulator, on each route ----------------------------------------------------


@pytest.fixture(scope="module")
def simulator() -> Any:
    with Simulator(config_from_dict({}), time_scale=1000.0) as sim:
        yield sim


def simulator_settings(sim: Simulator) -> AppSettings:
    return AppSettings.from_env(
        {
            "IMAGE_ROUTES": "azure,openai,azurev1,gateway",
            "IMAGE_ROUTE_AZURE_BASE_URL": sim.url,
            "IMAGE_ROUTE_AZURE_DEPLOYMENT": "gpt-image-2",
            "IMAGE_ROUTE_AZURE_KEY": KEY,
            "IMAGE_ROUTE_OPENAI_BASE_URL": sim.openai_base_url,
            "IMAGE_ROUTE_OPENAI_KEY": KEY,
            "IMAGE_ROUTE_AZUREV1_OWNER": "gateway",
            "IMAGE_ROUTE_AZUREV1_BASE_URL": sim.azure_v1_base_url,
            "IMAGE_ROUTE_AZUREV1_KEY": KEY,
            "IMAGE_ROUTE_GATEWAY_BASE_URL": sim.openai_base_url,
            "IMAGE_ROUTE_GATEWAY_KEY": KEY,
            "IMAGES_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
            "IMAGE_JOB_ID_SECRET": "test-only-secret-0123456789",
        }
    )


@pytest.mark.parametrize(
    ("route", "ledger_route"),
    [("openai", "openai"), ("azure", "azure"), ("azurev1", "azure_v1"), ("gateway", "openai")],
)
def test_the_simulator_takes_the_edit_on_every_route(simulator: Any, route: str, ledger_route):
    settings = simulator_settings(simulator)
    route_settings = settings.route(route)
    job_input = edit_job(route)
    store = store_with_inputs(job_input.request)
    mark = max((e.seq for e in simulator.ledger()), default=0)

    async def run() -> Any:
        async with httpx.AsyncClient() as client:
            auth = (
                ("api-key", KEY)
                if route_settings.owner == "azure"
                else ("authorization", f"Bearer {KEY}")
            )
            seams = Seams(client=client, store=store, auth=lambda: auth)
            return await run_attempt(job_input, settings, seams)

    result = asyncio.run(run())
    assert result.ok, result.failure
    assert len(result.previews) == 1
    assert result.timings.upload_inputs_ms is not None
    assert result.timings.read_inputs_ms is not None
    assert result.usage is not None
    assert result.usage["input_tokens_details"]["image_tokens"] == 3 * 1_000 + 200
    [entry] = [e for e in simulator.ledger() if e.seq > mark]
    assert (entry.route, entry.endpoint, entry.outcome) == (ledger_route, "edits", "completed")
    assert entry.shape["input_images"] == 3
    assert entry.shape["has_mask"] is True
    assert store.get(name="job-e/image.png") is not None


# --- metadata.json and the log event ---------------------------------------------------------


def test_metadata_and_the_log_event_describe_inputs_without_content_or_hashes():
    from datetime import UTC, datetime

    from activities.finish import build_metadata, log_fields
    from rules.job_records import FinishInput, JobState, Outcome

    request = edit_request()
    outcome = Outcome(state=JobState.SAVED, attempt=1, metadata_blob="job-e/metadata.json")
    metadata = build_metadata(
        FinishInput("job-e", request, outcome, ()), SETTINGS, datetime.now(UTC)
    )
    assert metadata["endpoint"] == "edits"
    assert metadata["inputs"] == {
        "images": 3,
        "mask": True,
        "formats": ["png", "jpeg", "webp", "png"],
        "sizes": ["64x64"] * 4,
        "bytes": sum(len(d) for d in [*IMAGES, MASK]),
    }
    assert len(metadata["request"]["images"]) == 3
    text = json.dumps(metadata)
    for input_ref in (*request.images, request.mask):
        assert input_ref is not None
        assert input_ref.sha256 not in text
    assert PROMPT not in text
    fields = log_fields(metadata)
    assert (fields["endpoint"], fields["input_images"]) == ("edits", 3)
    assert fields["input_bytes"] == metadata["inputs"]["bytes"]
    assert "upload_inputs_ms" in fields
