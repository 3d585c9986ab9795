"""Edits at the HTTP edge, with the hand-written fakes: input images by upload, by blob, inline
(base64 in JSON, or multipart file parts), each checked and stored once by hash before the job
starts; every refusal a 400 naming the field and index, with no look at the job store."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
from typing import Any

import azure.functions as func
import httpx
import pytest
from PIL import Image

from http_api import handlers, uploads
from rules.dedup import caller_digest
from storage.protocol import upload_name
from tests.fakes import AsyncInMemoryStore

from .test_http_handlers import BASE, NOW, World, assert_envelope, request

PROMPT = "put the apple in the basket"


def png(width: int = 64, height: int = 64, *, mode: str = "RGB", shade: int = 30) -> bytes:
    out = io.BytesIO()
    color: Any = (200, shade, 30, 0) if mode == "RGBA" else (200, shade, 30)
    Image.new(mode, (width, height), color).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int = 64, height: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(out, "JPEG")
    return out.getvalue()


def b64(data: bytes) -> dict[str, str]:
    return {"b64_json": base64.b64encode(data).decode()}


def edit(**fields: Any) -> dict[str, Any]:
    return {"prompt": PROMPT, "size": "1024x1024", "quality": "low", **fields}


def multipart(
    world: World, data: dict[str, str], files: list[tuple[str, Any]]
) -> tuple[int, dict[str, Any], Any]:
    built = httpx.Request("POST", BASE, data=data, files=files)
    raw = built.read()
    headers = {"Content-Type": built.headers["content-type"]}
    return world.call(handlers.start_job, request("POST", BASE, raw=raw, headers=headers))


def started(world: World, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = world.client.instances[job_id]["input"]
    return job


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create_upload(world: World, **headers: str) -> dict[str, Any]:
    async def run() -> func.HttpResponse:
        req = request("POST", "http://127.0.0.1:7071/api/uploads", headers=headers)
        store = AsyncInMemoryStore(world.store)
        return await uploads.create_upload(req, world.settings, store, lambda: NOW)

    response = asyncio.run(run())
    assert response.status_code == 201
    answer: dict[str, Any] = json.loads(response.get_body())
    return answer


def upload(world: World, data: bytes) -> str:
    """What a caller does: ask for a link, PUT the bytes to it (here: into the fake store)."""
    answer = create_upload(world)
    caller = caller_digest(world.settings.job_id_secret, world.settings.default_caller)
    world.store.put(name=upload_name(caller, answer["upload"]), data=data, content_type="image/png")
    upload_id: str = answer["upload"]
    return upload_id


# --- accepted -----------------------------------------------------------------------------


def test_three_inline_images_are_stored_once_by_hash_and_the_job_keeps_only_hashes():
    world = World()
    images = [png(shade=1), jpeg(), png(shade=1)]  # the third is the first again
    status, body, _ = world.start(edit(images=[b64(i) for i in images]))
    assert status == 202, body
    job = started(world, body["id"])
    # Version 4 (what it decides by, frozen: rules.job_records.JobDecided), which a deployment
    # that knows only version 1 refuses, as it refused version 2 (an edit's inputs).
    assert job["v"] == 4
    refs = job["request"]["images"]
    assert [r["sha256"] for r in refs] == [sha(i) for i in images]
    assert [r["format"] for r in refs] == ["png", "jpeg", "png"]
    assert refs[0]["width"] == 64
    assert job["request"]["mask"] is None
    # No bytes in the orchestration input: only hashes and shapes.
    assert base64.b64encode(images[0]).decode()[:40] not in json.dumps(job)
    stored = sorted(n for n in world.store.blobs if n.startswith("inputs/"))
    assert stored == sorted({f"inputs/{sha(images[0])}.png", f"inputs/{sha(images[1])}.jpg"})
    assert world.store.blobs[f"inputs/{sha(images[1])}.jpg"] == (images[1], "image/jpeg")


def test_the_status_answer_describes_inputs_without_hashes():
    world = World()
    mask = png(mode="RGBA")
    _, body, _ = world.start(edit(images=[b64(png())], mask=b64(mask)))
    status, answer, _ = world.status(body["id"])
    assert status == 202
    shown = answer["request"]
    assert shown["images"] == [{"format": "png", "bytes": len(png()), "width": 64, "height": 64}]
    assert shown["mask"]["bytes"] == len(mask)
    assert sha(png()) not in json.dumps(answer)


def test_an_upload_link_is_write_only_short_lived_and_names_the_callers_blob():
    world = World()
    answer = create_upload(world)
    assert answer["upload"].startswith("upl-")
    assert answer["method"] == "PUT"
    assert answer["headers"] == {"x-ms-blob-type": "BlockBlob"}
    assert answer["expiresAt"] == "2026-05-07T13:56:12.000Z"  # ten minutes
    assert answer["maxBytes"] == 50 * 1024 * 1024
    caller = caller_digest(world.settings.job_id_secret, world.settings.default_caller)
    assert answer["url"] == f"memory-write://uploads/{caller}/{answer['upload']}?ttl=600"
    assert create_upload(world)["upload"] != answer["upload"]


def test_an_uploaded_image_and_mask_are_read_checked_and_copied_under_their_hash():
    world = World()
    image, mask = png(), png(mode="RGBA")
    status, body, _ = world.start(
        edit(images=[{"upload": upload(world, image)}], mask={"upload": upload(world, mask)})
    )
    assert status == 202, body
    request_json = started(world, body["id"])["request"]
    assert request_json["images"][0]["sha256"] == sha(image)
    assert request_json["mask"]["sha256"] == sha(mask)
    assert f"inputs/{sha(mask)}.png" in world.store.blobs


def test_a_blob_in_a_listed_container_is_an_input():
    world = World(IMAGE_INPUT_CONTAINERS="refs")
    world.store.containers["refs"] = {"cats/tabby.png": png()}
    status, body, _ = world.start(edit(images=[{"blob": "refs/cats/tabby.png"}]))
    assert status == 202, body
    assert started(world, body["id"])["request"]["images"][0]["sha256"] == sha(png())


@pytest.mark.parametrize("part", ["image", "image[]"])
def test_multipart_file_parts_with_a_request_part(part: str):
    world = World()
    files = [(part, ("a.png", png(), "image/png"))]
    if part == "image[]":
        files.append((part, ("b.jpg", jpeg(), "image/jpeg")))
    files.append(("mask", ("m.png", png(mode="RGBA"), "image/png")))
    status, body, _ = multipart(world, {"request": json.dumps(edit())}, files)
    assert status == 202, body
    request_json = started(world, body["id"])["request"]
    assert len(request_json["images"]) == len(files) - 1
    assert request_json["mask"]["format"] == "png"


def test_multipart_form_fields_take_the_place_of_a_request_part():
    world = World()
    fields = {"prompt": PROMPT, "size": "1024x1024", "quality": "low", "n": "2"}
    status, body, _ = multipart(world, fields, [("image[]", ("a.png", png(), "image/png"))])
    assert status == 202, body
    assert started(world, body["id"])["request"]["n"] == 2


def test_the_same_edit_again_is_the_same_job_and_other_images_another():
    world = World()
    _, first, _ = world.start(edit(images=[b64(png())]))
    status, again, headers = world.start(edit(images=[b64(png())]))
    assert (status, again["id"]) == (202, first["id"])
    assert headers["Idempotent-Replayed"] == "true"
    _, other, _ = world.start(edit(images=[b64(png(shade=99))]))
    assert other["id"] != first["id"]
    # An upload of the same bytes is the same request: inputs are named by content.
    _, by_upload, _ = world.start(edit(images=[{"upload": upload(world, png())}]))
    assert by_upload["id"] == first["id"]


def test_a_keyed_edit_with_other_images_is_a_409():
    world = World()
    world.start(edit(images=[b64(png())]), headers={"Idempotency-Key": "k1"})
    status, body, _ = world.start(
        edit(images=[b64(png(shade=99))]), headers={"Idempotency-Key": "k1"}
    )
    assert status == 409
    assert_envelope(body, "idempotency_key_reused", "Idempotency-Key")


def test_a_generation_keeps_its_request_unchanged():
    world = World()
    _, body, _ = world.start(edit())
    job = started(world, body["id"])
    assert job["v"] == 4  # for its frozen decisions (JobDecided); the request is as before
    assert "images" not in job["request"]
    assert not any(name.startswith("inputs/") for name in world.store.blobs)


# --- refused --------------------------------------------------------------------------------


def refused(world: World, status: int, body: dict[str, Any], code: str, field: str) -> None:
    assert status == 400, body
    assert_envelope(body, code, field)
    assert world.client.calls == []  # no look at the job store, no start: nothing upstream


def test_seventeen_images_are_refused_naming_the_first_past_the_limit():
    world = World()
    status, body, _ = world.start(edit(images=[b64(png())] * 17))
    refused(world, status, body, "too_many", "images[16]")
    assert world.store.put_calls == []


def test_a_mask_of_the_wrong_size_is_refused():
    world = World()
    status, body, _ = world.start(
        edit(images=[b64(png(64, 64))], mask=b64(png(32, 32, mode="RGBA")))
    )
    refused(world, status, body, "size_mismatch", "mask")


def test_a_mask_without_alpha_is_refused():
    world = World()
    status, body, _ = world.start(edit(images=[b64(png())], mask=b64(png())))
    refused(world, status, body, "no_alpha", "mask")


def test_an_unreadable_image_is_refused_by_index():
    world = World()
    broken = png()[:-20]  # its last chunk cut short
    status, body, _ = world.start(edit(images=[b64(png()), b64(b"not an image"), b64(broken)]))
    refused(world, status, body, "unreadable_image", "images[1]")
    status, body, _ = world.start(edit(images=[b64(png()), b64(broken)]))
    refused(world, status, body, "unreadable_image", "images[1]")


def test_a_gif_is_refused_as_a_format():
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "GIF")
    world = World()
    status, body, _ = world.start(edit(images=[b64(out.getvalue())]))
    refused(world, status, body, "unsupported_format", "images[0]")


def test_an_upload_that_was_never_written_or_is_anothers_is_refused():
    world = World()
    answer = create_upload(world)
    status, body, _ = world.start(edit(images=[{"upload": answer["upload"]}]))
    refused(world, status, body, "upload_not_found", "images[0]")
    other = upload_name("someone-else", answer["upload"])
    world.store.put(name=other, data=png(), content_type="image/png")
    status, body, _ = world.start(edit(images=[{"upload": answer["upload"]}]))
    refused(world, status, body, "upload_not_found", "images[0]")


def test_an_upload_past_the_size_limit_is_refused_before_it_is_read_whole():
    world = World()
    mask_id = upload(world, b"x" * (4 * 1024 * 1024 + 1))
    status, body, _ = world.start(edit(images=[b64(png())], mask={"upload": mask_id}))
    refused(world, status, body, "too_large", "mask")


def test_a_blob_outside_the_listed_containers_is_refused():
    world = World()
    status, body, _ = world.start(edit(images=[{"blob": "images/img-x-1/image.png"}]))
    refused(world, status, body, "invalid_value", "images[0]")


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"input_fidelity": "high"}, "unsupported", "input_fidelity"),
        ({"moderation": "low"}, "unsupported", "moderation"),
    ],
)
def test_fields_an_edit_does_not_take_are_refused(fields, code, field):
    world = World()
    status, body, _ = world.start(edit(images=[b64(png())], **fields))
    refused(world, status, body, code, field)


def test_multipart_with_parts_and_references_or_unknown_parts_is_refused():
    world = World()
    body_json = json.dumps(edit(images=[b64(png())]))
    status, body, _ = multipart(
        world, {"request": body_json}, [("image", ("a.png", png(), "image/png"))]
    )
    refused(world, status, body, "invalid_value", "images")
    status, body, _ = multipart(world, {"prompt": "x"}, [("photo", ("a.png", png(), "image/png"))])
    refused(world, status, body, "unknown_field", "photo")
    status, body, _ = multipart(
        world, {"prompt": "x", "n": "two"}, [("image", ("a.png", png(), "image/png"))]
    )
    refused(world, status, body, "invalid_type", "n")


def test_a_body_neither_json_nor_multipart_is_still_a_415():
    world = World()
    status, body, _ = world.call(
        handlers.start_job,
        request("POST", BASE, raw=b"x", headers={"Content-Type": "text/plain"}),
    )
    assert status == 415
    assert "multipart/form-data" in body["error"]["message"]


def test_blob_down_while_storing_inputs_is_a_503():
    world = World()
    world.store.down = True
    status, body, headers = world.start(edit(images=[b64(png())]))
    assert status == 503
    assert_envelope(body, "store_error", "service")
    assert headers["Retry-After"] == "5"
