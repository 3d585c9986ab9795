"""An edit's input images for one attempt: read from Blob by their content hash (the starter
stored them there, rules.inputs), checked against the hash, and named as the edits endpoint's
multipart parts take them.

    files = await read_inputs(blobs, request, clocks=clocks, budget_s=..., ...)
    call = build_call(route, request, ..., inputs=files)

A part's name follows the official SDK (``openai.resources.images.edit``): one image is sent as
``image``, several as ``image[]`` each, the mask as ``mask``; each with a file name and its
content type. Nothing here is sent: an input that cannot be read ends the attempt before the
send (InputsUnavailable), so no request without its images ever reaches the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from activities.blob_io import AsyncBlobs, within_budget
from rules.inputs import InputRef
from rules.request import ImageJobRequest
from rules.timing import Clocks
from storage.protocol import CONTENT_TYPES, EXTENSIONS, input_name


@dataclass(frozen=True)
class InputFile:
    """One multipart file part of an edit: the part's name, its file name, type and bytes."""

    part: str
    filename: str
    content_type: str
    data: bytes = field(repr=False)


class InputsUnavailable(Exception):
    """An input could not be read from Blob, or its bytes are not the ones the job named."""


def part_names(request: ImageJobRequest) -> list[tuple[str, str, InputRef]]:
    """(part name, file name, ref) of every input, in the order they are sent."""
    many = len(request.images) > 1
    named = [
        ("image[]" if many else "image", f"image-{i}.{EXTENSIONS[ref.format]}", ref)
        for i, ref in enumerate(request.images)
    ]
    if request.mask is not None:
        named.append(("mask", f"mask.{EXTENSIONS[request.mask.format]}", request.mask))
    return named


async def read_inputs(
    blobs: AsyncBlobs,
    request: ImageJobRequest,
    *,
    clocks: Clocks,
    budget_s: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> list[InputFile]:
    """Every input of ``request``, read concurrently within ``budget_s`` seconds of storage
    outage; the read is clocked (``read_inputs_ms``). Raises InputsUnavailable."""
    clocks.inputs_read_started = monotonic()

    async def one(part: str, filename: str, ref: InputRef) -> InputFile:
        name = input_name(ref.sha256, ref.format)
        try:
            data = await within_budget(
                lambda: blobs.get(name), budget_s=budget_s, sleep=sleep, monotonic=monotonic
            )
        except Exception as exc:
            raise InputsUnavailable(
                f"input {filename} could not be read: {type(exc).__name__}"
            ) from exc
        if data is None:
            raise InputsUnavailable(f"input {filename} is missing from Blob")
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise InputsUnavailable(f"input {filename} does not match the hash the job named")
        return InputFile(part, filename, CONTENT_TYPES[ref.format], data)

    files = await asyncio.gather(*(one(*named) for named in part_names(request)))
    clocks.inputs_read_done = monotonic()
    return list(files)
