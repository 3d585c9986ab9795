"""The input images of an edit: how a start request names them, what each must be, and what the
job keeps of each. Pure: the starter (http_api/inputs.py) fetches, decodes, hashes and stores
them; the rules it applies are here, the model's limits as data (rules.models.InputRules).

    specs = parse_input_specs(body, rules, input_containers=...)   # None: not an edit
    check_image(facts, "images[2]", rules.inputs)                  # RequestInvalid naming it
    check_mask(facts, first_image_facts, rules.inputs)
    InputRef(sha256, format, bytes, width, height)                  # what JobInput.request keeps

A job keeps each input by its content hash and shape, never its bytes: the bytes live once in
Blob under their hash (storage.protocol.input_name). Answers, logs and metadata.json describe
inputs by count, formats, sizes and bytes (``InputRef.describe``), never by hash: a hash lets
anyone who holds a guessed image confirm it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rules.errors import RequestInvalid
from rules.models import InputRules, ModelRules

# Inline inputs are for small images; larger ones go through POST /api/uploads. Decoded bytes
# of every inline input of one request together, at most:
INLINE_JSON_MAX_BYTES = 4 * 1024 * 1024  # base64 in a JSON body
INLINE_MULTIPART_MAX_BYTES = 16 * 1024 * 1024  # file parts of a multipart/form-data body
# What POST /api/uploads hands out as the name to reference (http_api/uploads.py).
UPLOAD_ID = re.compile(r"upl-[0-9a-f]{32}")
# A blob's name in Azure: at most 1,024 characters.
_BLOB_NAME_MAX = 1024
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_SOURCES = ("upload", "blob", "b64_json")

SourceKind = Literal["upload", "blob", "inline"]


@dataclass(frozen=True)
class InputRef:
    """One input image as the job keeps it: its SHA-256 (hex; the blob's name) and shape."""

    sha256: str
    format: str  # png, jpeg, webp
    bytes: int
    width: int
    height: int

    def describe(self) -> dict[str, Any]:
        """What answers, logs and metadata.json may show: no hash, no content."""
        return {
            "format": self.format,
            "bytes": self.bytes,
            "width": self.width,
            "height": self.height,
        }

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, **self.describe()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InputRef:
        return cls(
            sha256=data["sha256"],
            format=data["format"],
            bytes=data["bytes"],
            width=data["width"],
            height=data["height"],
        )


@dataclass(frozen=True)
class InputSource:
    """Where one input comes from, as the request named it. ``field`` is what a refusal names
    (``images[3]``, ``mask``); ``ref`` the upload id or ``container/name`` of a blob; ``data``
    the bytes of an inline input."""

    field: str
    kind: SourceKind
    ref: str | None = None
    data: bytes | None = dataclasses.field(default=None, repr=False)


@dataclass(frozen=True)
class InputSpecs:
    images: tuple[InputSource, ...]
    mask: InputSource | None = None


@dataclass(frozen=True)
class ImageFacts:
    """What decoding an input told (the starter reads these with PIL)."""

    format: str | None  # lower case PIL format name; None: not an image PIL knows
    width: int
    height: int
    bytes: int
    has_alpha: bool


def image_field(index: int) -> str:
    return f"images[{index}]"


def edit_rules(rules: ModelRules) -> InputRules:
    """The model's input rules; a 400 naming ``images`` when it takes no edits."""
    if rules.inputs is None:
        raise RequestInvalid("images", "unsupported", f"{rules.name} takes no input images")
    return rules.inputs


def parse_input_specs(
    body: Mapping[str, object], rules: ModelRules, *, input_containers: Sequence[str]
) -> InputSpecs | None:
    """The inputs a JSON start request names (``images``, ``mask``); None when it names none.

    Each input is an object with one of ``upload`` (an id POST /api/uploads gave), ``blob``
    (``container/name`` in a container of ``input_containers``) or ``b64_json`` (the image,
    base64; all inline inputs together at most INLINE_JSON_MAX_BYTES). Raises RequestInvalid
    naming the field and index (``images[3]``, ``mask``)."""
    if body.get("images") is None and body.get("mask") is None:
        return None
    inputs = edit_rules(rules)
    refused(body, rules)
    raw_images = body.get("images")
    if raw_images is None:
        raise RequestInvalid("images", "missing", "a mask needs images to apply to")
    if not isinstance(raw_images, list):
        raise RequestInvalid("images", "invalid_type", "images must be a list of objects")
    check_count(len(raw_images), inputs)
    budget = _InlineBudget(INLINE_JSON_MAX_BYTES, "base64 in a JSON body")
    images = tuple(
        _source(item, image_field(i), input_containers, budget) for i, item in enumerate(raw_images)
    )
    raw_mask = body.get("mask")
    mask = _source(raw_mask, "mask", input_containers, budget) if raw_mask is not None else None
    return InputSpecs(images, mask)


def parts_specs(
    images: Sequence[bytes], mask: bytes | None, body: Mapping[str, object], rules: ModelRules
) -> InputSpecs | None:
    """The inputs of a multipart/form-data start request: its ``image``/``image[]`` file parts
    in order, and its ``mask`` part; None when it has none."""
    if not images and mask is None:
        return None
    inputs = edit_rules(rules)
    refused(body, rules)
    if not images:
        raise RequestInvalid("images", "missing", "a mask needs images to apply to")
    check_count(len(images), inputs)
    budget = _InlineBudget(INLINE_MULTIPART_MAX_BYTES, "file parts of a multipart body")
    sources = []
    for index, data in enumerate(images):
        budget.spend(len(data), image_field(index))
        sources.append(InputSource(image_field(index), "inline", data=data))
    mask_source = None
    if mask is not None:
        budget.spend(len(mask), "mask")
        mask_source = InputSource("mask", "inline", data=mask)
    return InputSpecs(tuple(sources), mask_source)


def refused(body: Mapping[str, object], rules: ModelRules) -> None:
    """A field of a generation that the edits endpoint does not take is a 400 naming it."""
    inputs = edit_rules(rules)
    for name in sorted(inputs.refused_fields):
        if body.get(name) is not None:
            raise RequestInvalid(name, "unsupported", f"an image edit takes no {name}")


def check_count(count: int, inputs: InputRules) -> None:
    if count == 0:
        raise RequestInvalid("images", "missing", "images must hold at least one image")
    if count > inputs.max_images:
        raise RequestInvalid(
            image_field(inputs.max_images),
            "too_many",
            f"{count} input images; at most {inputs.max_images}",
        )


def check_image(facts: ImageFacts | None, name: str, inputs: InputRules) -> ImageFacts:
    """The facts of an input image that keeps the rules; RequestInvalid naming ``name``."""
    if facts is None or facts.format is None:
        raise RequestInvalid(name, "unreadable_image", f"{name} is not an image that decodes")
    if facts.format not in inputs.image_formats:
        raise RequestInvalid(
            name,
            "unsupported_format",
            f"{name} is {facts.format}; input images are {', '.join(sorted(inputs.image_formats))}",
        )
    if facts.bytes > inputs.image_max_bytes:
        raise RequestInvalid(
            name,
            "too_large",
            f"{name} has {facts.bytes:,} bytes; at most {inputs.image_max_bytes:,}",
        )
    return facts


def check_mask(facts: ImageFacts | None, first: ImageFacts, inputs: InputRules) -> ImageFacts:
    """The facts of a mask that keeps the rules against the first image's; RequestInvalid
    naming ``mask``."""
    if facts is None or facts.format is None:
        raise RequestInvalid("mask", "unreadable_image", "mask is not an image that decodes")
    if facts.format not in inputs.mask_formats:
        raise RequestInvalid(
            "mask",
            "unsupported_format",
            f"mask is {facts.format}; a mask is {', '.join(sorted(inputs.mask_formats))}",
        )
    if facts.bytes > inputs.mask_max_bytes:
        limit = inputs.mask_max_bytes
        raise RequestInvalid(
            "mask", "too_large", f"mask has {facts.bytes:,} bytes; at most {limit:,}"
        )
    if inputs.mask_same_size and (facts.width, facts.height) != (first.width, first.height):
        raise RequestInvalid(
            "mask",
            "size_mismatch",
            f"mask is {facts.width}x{facts.height}; it must be the size of images[0], "
            f"{first.width}x{first.height}",
        )
    if inputs.mask_needs_alpha and not facts.has_alpha:
        raise RequestInvalid(
            "mask",
            "no_alpha",
            "mask has no alpha channel; its fully transparent pixels mark where to edit",
        )
    return facts


def blob_ref(ref: str) -> tuple[str, str]:
    """``container/name`` as (container, name); the parts were checked by parse_input_specs."""
    container, name = ref.split("/", 1)
    return container, name


class _InlineBudget:
    def __init__(self, limit: int, what: str) -> None:
        self.left = limit
        self.limit = limit
        self.what = what

    def spend(self, count: int, name: str) -> None:
        self.left -= count
        if self.left < 0:
            raise RequestInvalid(
                name,
                "too_large",
                f"inline inputs ({self.what}) are at most {self.limit:,} bytes together; "
                "upload larger ones (POST /api/uploads) and reference them",
            )


def _source(
    item: object, name: str, input_containers: Sequence[str], budget: _InlineBudget
) -> InputSource:
    if not isinstance(item, dict):
        raise RequestInvalid(name, "invalid_type", f"{name} must be an object")
    given = [key for key in _SOURCES if key in item]
    unknown = sorted(set(item) - set(_SOURCES))
    if unknown:
        raise RequestInvalid(name, "unknown_field", f"{name} has an unknown field {unknown[0]!r}")
    if len(given) != 1:
        raise RequestInvalid(
            name, "invalid_value", f"{name} must have exactly one of: {', '.join(_SOURCES)}"
        )
    key = given[0]
    value = item[key]
    if not isinstance(value, str):
        raise RequestInvalid(name, "invalid_type", f"{name}.{key} must be a string")
    if key == "upload":
        if not UPLOAD_ID.fullmatch(value):
            raise RequestInvalid(
                name, "invalid_value", f"{name}.upload must be an id POST /api/uploads gave"
            )
        return InputSource(name, "upload", ref=value)
    if key == "blob":
        container, _, blob = value.partition("/")
        if not _CONTAINER.fullmatch(container) or not blob or len(blob) > _BLOB_NAME_MAX:
            raise RequestInvalid(name, "invalid_value", f"{name}.blob must be container/name")
        if container not in input_containers:
            raise RequestInvalid(
                name,
                "invalid_value",
                f"{name}.blob: the service reads no inputs from container {container!r}",
            )
        if any(part in ("", ".", "..") for part in blob.split("/")):
            raise RequestInvalid(name, "invalid_value", f"{name}.blob must be container/name")
        return InputSource(name, "blob", ref=value)
    # Checked before decoding: a huge string costs no decode.
    budget.spend(len(value) * 3 // 4, name)
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestInvalid(name, "invalid_value", f"{name}.b64_json is not base64") from None
    return InputSource(name, "inline", data=data)
