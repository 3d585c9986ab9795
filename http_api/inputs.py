"""An edit's input images at the HTTP edge: read from the start request (JSON with references or
base64, or multipart/form-data with file parts), fetched, decoded, checked by the model's rules
(rules.inputs), hashed and stored once under their hash, all before the job starts.

    if is_multipart(req):
        body, parts = multipart_body(req)
    request = await with_inputs(request, body, parts, settings, store, caller)

The job's request then holds each input as an ``InputRef`` (its SHA-256 and shape): the bytes
never enter the durable history. Every refusal is a 400 naming the field and index
(``images[3]``, ``mask``); nothing is started, so nothing reaches the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.message import Message
from typing import Any

import azure.functions as func
from PIL import Image

from http_api.errors import blob_call, blob_failure
from http_api.request_reading import declared_type
from rules.errors import RequestInvalid, SettingsInvalid
from rules.inputs import (
    ImageFacts,
    InputRef,
    InputSource,
    blob_ref,
    check_image,
    check_mask,
    edit_rules,
    parse_input_specs,
    parts_specs,
)
from rules.json_text import JsonRefused, strict_json
from rules.models import InputRules, rules_for
from rules.request import ImageJobRequest
from rules.settings import AppSettings
from storage.protocol import CONTENT_TYPES, AsyncImageStore, BlobTooLarge, input_name, upload_name

MULTIPART = "multipart/form-data"
# Fields of a multipart start request that are whole numbers (form fields are text).
_INTEGER_FIELDS = frozenset({"n", "partial_images", "output_compression"})
# File parts a multipart start request may have.
_FILE_PARTS = ("image", "image[]", "mask")
# How many inputs are fetched, decoded and stored at once: bounds the starter's memory.
CONCURRENT_INPUTS = 4
# How long reading and storing every input may take before the start answers 503.
INPUTS_S = 60.0


@dataclass(frozen=True)
class Parts:
    """The file parts of a multipart start request."""

    images: list[bytes] = field(default_factory=list, repr=False)
    mask: bytes | None = field(default=None, repr=False)


def is_multipart(req: func.HttpRequest) -> bool:
    return declared_type(req) == MULTIPART


def multipart_body(req: func.HttpRequest) -> tuple[dict[str, object], Parts]:
    """The request fields (a ``request`` part holding the JSON body, or form fields) and the
    file parts (``image`` or ``image[]``, in order, and ``mask``)."""
    _check_framing(req)
    try:
        form, files = req.form, req.files
    except Exception:  # werkzeug refuses what it cannot parse (too many parts, say)
        raise RequestInvalid(
            "body", "invalid_multipart", "the multipart body is unreadable"
        ) from None
    if not form and not files:
        # werkzeug reads a body it cannot frame (no delimiter line, cut short) as no parts at
        # all: that is an unreadable body, not a request without a prompt.
        raise RequestInvalid(
            "body", "invalid_multipart", "the multipart body has no part (is its boundary right?)"
        )
    names = {name for name, _ in files.items(multi=True)}
    unknown = sorted(names - set(_FILE_PARTS))
    if unknown:
        raise RequestInvalid(unknown[0], "unknown_field", f"unknown file part {unknown[0]!r}")
    if "image" in names and "image[]" in names:
        raise RequestInvalid("images", "invalid_value", "send image or image[] parts, not both")
    images = [part.read() for part in files.getlist("image") + files.getlist("image[]")]
    masks = files.getlist("mask")
    if len(masks) > 1:
        raise RequestInvalid("mask", "invalid_value", "one mask at most")
    mask = masks[0].read() if masks else None
    return _form_fields(form), Parts(images, mask)


def _check_framing(req: func.HttpRequest) -> None:
    """A multipart body names its boundary in Content-Type and ends with the closing delimiter
    (RFC 2046 5.1.1); werkzeug takes a body without either as one without parts."""
    header = Message()
    header["content-type"] = str(req.headers.get("content-type", ""))
    given = header.get_param("boundary")
    boundary = given if isinstance(given, str) else ""
    if not boundary:
        raise RequestInvalid(
            "Content-Type", "invalid_multipart", "multipart/form-data needs its boundary parameter"
        )
    if b"--" + boundary.encode("utf-8", "replace") + b"--" not in req.get_body():
        raise RequestInvalid(
            "body",
            "invalid_multipart",
            "the multipart body does not end with its closing boundary (--boundary--): "
            "not multipart, a wrong boundary, or cut short",
        )


def _form_fields(form: Any) -> dict[str, object]:
    if "request" in form:
        if len(form) > 1:
            extra = sorted(set(form) - {"request"})[0]
            raise RequestInvalid(
                extra, "unknown_field", "with a request part, every field goes inside it"
            )
        try:
            given = strict_json(form["request"])
        except JsonRefused as exc:
            raise RequestInvalid(
                "request", "invalid_json", f"the request part must be JSON: {exc}"
            ) from None
        except (ValueError, RecursionError):
            raise RequestInvalid(
                "request", "invalid_json", "the request part must be JSON"
            ) from None
        if not isinstance(given, dict):
            raise RequestInvalid("request", "invalid_type", "the request part must be an object")
        return dict(given)
    body: dict[str, object] = {}
    for name in form:
        values = form.getlist(name)
        if len(values) > 1:
            raise RequestInvalid(name, "invalid_value", f"{name} is given more than once")
        value = values[0]
        if value == "":
            continue
        if name in _INTEGER_FIELDS:
            if not value.strip().lstrip("-").isdigit():
                raise RequestInvalid(name, "invalid_type", f"{name} must be a whole number")
            body[name] = int(value)
        else:
            body[name] = value
    return body


async def with_inputs(
    request: ImageJobRequest,
    body: Mapping[str, object],
    parts: Parts | None,
    settings: AppSettings,
    store: AsyncImageStore,
    caller: str,
) -> ImageJobRequest:
    """``request`` with the inputs ``body`` or ``parts`` name, each checked and stored under
    its hash; ``request`` itself when it names none. ``caller`` is the caller's digest (an
    upload is the caller's own). Raises RequestInvalid naming the input, StoreUnavailable."""
    rules = rules_for(settings.route(request.route).model)
    if parts is not None and (parts.images or parts.mask is not None):
        if body.get("images") is not None or body.get("mask") is not None:
            raise RequestInvalid(
                "images", "invalid_value", "send inputs as file parts or as references, not both"
            )
        specs = parts_specs(parts.images, parts.mask, body, rules)
    else:
        specs = parse_input_specs(body, rules, input_containers=settings.input_containers)
    if specs is None:
        return request
    inputs = edit_rules(rules)
    limit = asyncio.Semaphore(CONCURRENT_INPUTS)

    async def one(source: InputSource) -> tuple[InputRef, ImageFacts]:
        async with limit:
            return await _store_input(source, inputs, store, caller, first=None)

    async with asyncio.timeout(INPUTS_S):
        done = await asyncio.gather(*(one(s) for s in specs.images), return_exceptions=True)
        # The refusal of the lowest index is the one answered, whatever finished first.
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        stored = [item for item in done if not isinstance(item, BaseException)]
        mask = None
        if specs.mask is not None:
            mask, _ = await _store_input(specs.mask, inputs, store, caller, first=stored[0][1])
    return replace(request, images=tuple(ref for ref, _ in stored), mask=mask)


async def _store_input(
    source: InputSource,
    inputs: InputRules,
    store: AsyncImageStore,
    caller: str,
    *,
    first: ImageFacts | None,
) -> tuple[InputRef, ImageFacts]:
    """Fetch, decode, check, hash and store one input (``first``: the first image's facts,
    for a mask)."""
    is_mask = first is not None
    max_bytes = inputs.mask_max_bytes if is_mask else inputs.image_max_bytes
    data = await _fetch(source, store, caller, max_bytes)
    facts, digest = await asyncio.to_thread(_inspect, data)
    if first is not None:
        checked = check_mask(facts, first, inputs)
    else:
        checked = check_image(facts, source.field, inputs)
    assert checked.format is not None  # the checks refuse an image without one
    name = input_name(digest, checked.format)
    with blob_call():
        await store.put_new(name=name, data=data, content_type=CONTENT_TYPES[checked.format])
    ref = InputRef(digest, checked.format, checked.bytes, checked.width, checked.height)
    return ref, checked


async def _fetch(source: InputSource, store: AsyncImageStore, caller: str, max_bytes: int) -> bytes:
    if source.kind == "inline":
        assert source.data is not None
        return source.data
    assert source.ref is not None
    if source.kind == "upload":
        name, container, what = upload_name(caller, source.ref), None, "upload"
    else:
        container, name = blob_ref(source.ref)
        what = "blob"
    try:
        data = await store.get_bounded(name=name, max_bytes=max_bytes, container=container)
    except BlobTooLarge as exc:
        raise RequestInvalid(
            source.field,
            "too_large",
            f"{source.field} has {exc.size:,} bytes; at most {max_bytes:,}",
        ) from None
    except Exception as exc:
        if container is not None and getattr(exc, "status_code", None) == 403:
            raise SettingsInvalid(
                "IMAGE_INPUT_CONTAINERS", f"the app may not read container {container!r}"
            ) from exc
        raise blob_failure(exc) from exc
    if data is None:
        hint = " (was it written to the link POST /api/uploads gave?)" if what == "upload" else ""
        message = f"{source.field}: no such {what}{hint}"
        raise RequestInvalid(source.field, f"{what}_not_found", message)
    return data


def inspect_image(data: bytes) -> ImageFacts | None:
    """What PIL reads of ``data`` without decoding its pixels (the header, and for PNG every
    chunk's checksum); None when it is not an image PIL can read."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = (image.format or "").lower() or None
            width, height = image.size
            alpha = "A" in image.getbands() or "transparency" in image.info
            image.verify()
    except Exception:
        return None
    return ImageFacts(image_format, width, height, len(data), has_alpha=alpha)


def _inspect(data: bytes) -> tuple[ImageFacts | None, str]:
    return inspect_image(data), hashlib.sha256(data).hexdigest()
