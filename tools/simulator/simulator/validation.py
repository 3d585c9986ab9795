"""The gpt-image-2 request rules: a raw body in, a resolved ``ImageRequest`` or an ``ApiError`` out.

The client under test must see the same 400s as from the real service (same ``param``, same
``code``), so every rule of docs/reference/gpt-image-2-api.md is checked here, with the model's
limits held as data (``ModelRules``) so another model is a settings change. Where the reference says
UNCERTAIN the behaviour is a setting (``ValidationSettings``).

Order of checks (the real API validates the body against its schema before it applies the model's
own rules; within each stage the order below is ours and is kept stable so tests can rely on it):

1. unknown parameters, in the body's key order (``unknown_parameter``);
2. JSON types of the known fields, in ``_FIELD_ORDER`` (``invalid_type``);
3. ``prompt`` present (``missing_required_parameter``); edits: 1..16 input images;
4. the model: resolved from the route, then looked up (404 ``model_not_found``);
5. parameters the model refuses (``input_fidelity``, ``response_format``, ...);
6. values, field by field: prompt, n, size, quality, output_format, output_compression,
   background, moderation, partial_images (``invalid_value`` and range codes);
7. combinations: output_compression with png, transparent background with jpeg.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from simulator import errors

Endpoint = Literal["generations", "edits"]
Owner = Literal["openai", "azure"]


@dataclass(frozen=True)
class SizeRules:
    """gpt-image-2's size rules (model page and OpenAPI description)."""

    multiple: int = 16
    max_edge: int = 3840
    max_ratio: float = 3.0
    min_pixels: int = 655_360
    max_pixels: int = 8_294_400

    def problem(self, width: int, height: int) -> str | None:
        """Why ``width`` x ``height`` is refused, or None when every rule holds."""
        if width % self.multiple or height % self.multiple:
            return f"width and height must both be divisible by {self.multiple}"
        if max(width, height) > self.max_edge:
            return f"the longest edge must be at most {self.max_edge} pixels"
        if max(width, height) > self.max_ratio * min(width, height):
            ratio = int(self.max_ratio) if self.max_ratio == int(self.max_ratio) else self.max_ratio
            return f"the aspect ratio must be between 1:{ratio} and {ratio}:1"
        pixels = width * height
        if not self.min_pixels <= pixels <= self.max_pixels:
            return (
                f"the total number of pixels must be between {self.min_pixels} and "
                f"{self.max_pixels}, but got {pixels}"
            )
        return None


@dataclass(frozen=True)
class ModelRules:
    """What one model accepts. Defaults are gpt-image-2's (docs/reference, OpenAPI 2026-08-21)."""

    sizes: SizeRules = field(default_factory=SizeRules)
    qualities: tuple[str, ...] = ("low", "medium", "high", "auto")
    output_formats: tuple[str, ...] = ("png", "jpeg", "webp")
    max_prompt_chars: int = 32_000
    max_n: int = 10
    max_partial_images: int = 3
    max_input_images: int = 16
    # Fields the API knows but this model refuses (newer models' fields and legacy DALL-E ones).
    refused_parameters: tuple[str, ...] = (
        "input_fidelity",
        "response_format",
        "style",
        "complexity",
        "svg",
        "frame_count",
        "frame_duration_ms",
    )


GPT_IMAGE_2 = ModelRules()


@dataclass(frozen=True)
class ValidationSettings:
    """Choices the API reference leaves open (UNCERTAIN), as settings.

    ``transparent_supported``: the reference says gpt-image-2's transparency moved from
    "unsupported" to "preview"; when False, ``background: transparent`` is refused with param
    ``background``.
    ``auto_*``: what ``auto`` resolves to in the response (``size``, ``quality``, ``background``).
    ``azure_output_formats``: the reference says Azure serves png and jpeg only.
    """

    transparent_supported: bool = True
    auto_size: tuple[int, int] = (1024, 1024)
    auto_quality_openai: str = "medium"
    auto_quality_azure: str = "high"
    auto_background: str = "opaque"
    azure_output_formats: tuple[str, ...] = ("png", "jpeg")
    model_rules: Mapping[str, ModelRules] = field(default_factory=dict)
    default_rules: ModelRules = GPT_IMAGE_2

    def rules_for(self, model: str) -> ModelRules:
        return self.model_rules.get(model, self.default_rules)


DEFAULT_SETTINGS = ValidationSettings()


@dataclass(frozen=True)
class ImageRequest:
    """A valid request with every ``auto`` resolved. ``prompt`` never appears in ``repr``."""

    endpoint: Endpoint
    model: str
    prompt: str = field(repr=False)
    prompt_chars: int
    n: int
    width: int
    height: int
    size: str
    quality: str
    output_format: str
    output_compression: int | None
    background: str
    moderation: str
    stream: bool
    partial_images: int
    input_images: int = 0
    has_mask: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def shape(self) -> dict[str, object]:
        """Everything but the prompt text: what the ledger may keep."""
        values = asdict(self)
        del values["prompt"]
        return values


# --- field table ----------------------------------------------------------------------------------

FieldType = Literal["string", "integer", "boolean", "object"]

_GENERATION_FIELDS: dict[str, FieldType] = {
    "prompt": "string",
    "model": "string",
    "n": "integer",
    "size": "string",
    "quality": "string",
    "output_format": "string",
    "output_compression": "integer",
    "background": "string",
    "moderation": "string",
    "stream": "boolean",
    "partial_images": "integer",
    "response_format": "string",
    "style": "string",
    "user": "string",
    "safety_identifier": "string",
    "complexity": "string",
    "frame_count": "integer",
    "frame_duration_ms": "integer",
    "svg": "object",
}

# CreateImageEditRequest has no ``moderation`` but has ``input_fidelity``. The files (image,
# image[], mask) arrive as files, not as fields; ``svg[...]`` arrives as bracketed fields.
_EDIT_FIELDS: dict[str, FieldType] = {
    name: kind for name, kind in _GENERATION_FIELDS.items() if name not in {"moderation", "style"}
}
_EDIT_FIELDS["input_fidelity"] = "string"
_EDIT_FILE_FIELDS = frozenset({"image", "image[]", "mask", "markup"})

_TYPE_WORDS: dict[FieldType, str] = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "a boolean",
    "object": "an object",
}

_SIZE_PATTERN = re.compile(r"([0-9]{1,6})x([0-9]{1,6})")


def _json_type_word(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "an unsupported value"


def _has_type(value: object, kind: FieldType) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, dict)


def _typed_json(body: Mapping[str, object], table: Mapping[str, FieldType]) -> dict[str, object]:
    """Unknown-parameter and type checks for a JSON body; null means "not given"."""
    for name in body:
        if name not in table:
            raise errors.unknown_parameter(name)
    values: dict[str, object] = {}
    for name, kind in table.items():
        if name not in body or body[name] is None:
            continue
        value = body[name]
        if not _has_type(value, kind):
            raise errors.invalid_type(name, _TYPE_WORDS[kind], _json_type_word(value))
        values[name] = value
    return values


def _typed_multipart(
    fields: Mapping[str, str], table: Mapping[str, FieldType]
) -> dict[str, object]:
    """Multipart fields are text: convert them to the JSON types; an empty field is "not given"."""
    for name in fields:
        if name in _EDIT_FILE_FIELDS:
            continue
        if name.startswith("svg["):
            continue
        if name not in table:
            raise errors.unknown_parameter(name)
    values: dict[str, object] = {}
    if any(name.startswith("svg[") for name in fields):
        values["svg"] = {}
    for name, kind in table.items():
        if name not in fields:
            continue
        text = fields[name]
        if text == "" and name != "prompt":
            continue
        if kind == "string":
            values[name] = text
        elif kind == "integer":
            if not re.fullmatch(r"-?[0-9]+", text.strip()):
                raise errors.invalid_type(name, "an integer", "a string")
            values[name] = int(text)
        elif kind == "boolean":
            lowered = text.strip().lower()
            if lowered not in {"true", "false"}:
                raise errors.invalid_type(name, "a boolean", "a string")
            values[name] = lowered == "true"
        else:
            raise errors.invalid_type(name, "an object", "a string")
    return values


# --- value rules ----------------------------------------------------------------------------------


def _quoted_list(values: Collection[str]) -> str:
    quoted = [f"'{value}'" for value in values]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def _enum(values: Mapping[str, object], name: str, allowed: Collection[str], default: str) -> str:
    value = values.get(name, default)
    assert isinstance(value, str)
    if value not in allowed:
        raise errors.invalid_value(
            name, f"Invalid value: '{value}'. Supported values are: {_quoted_list(allowed)}."
        )
    return value


def _int_in_range(
    values: Mapping[str, object], name: str, low: int, high: int, default: int
) -> int:
    value = values.get(name, default)
    assert isinstance(value, int)
    if value < low:
        raise errors.invalid_request(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, but got "
            f"{value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    if value > high:
        raise errors.invalid_request(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, but got "
            f"{value} instead.",
            param=name,
            code="integer_above_max_value",
        )
    return value


def parse_size(text: str, rules: SizeRules) -> tuple[int, int]:
    """``WxH`` to (width, height) under ``rules``; ApiError naming ``size`` otherwise."""
    match = _SIZE_PATTERN.fullmatch(text)
    if match is None:
        raise errors.invalid_value(
            "size",
            f"Invalid value: '{text[:40]}'. Supported values are 'auto' or a size written "
            "WIDTHxHEIGHT, for example '1536x864'.",
        )
    width, height = int(match.group(1)), int(match.group(2))
    if width <= 0 or height <= 0:
        raise errors.invalid_value("size", f"Invalid size '{text}': width and height must be > 0.")
    problem = rules.problem(width, height)
    if problem is not None:
        raise errors.invalid_value("size", f"Invalid size '{text}': {problem}.")
    return width, height


def _prompt(values: Mapping[str, object], rules: ModelRules) -> str:
    prompt = values["prompt"]
    assert isinstance(prompt, str)
    if prompt == "":
        raise errors.invalid_request(
            "Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an "
            "empty string instead.",
            param="prompt",
            code="empty_string",
        )
    if len(prompt) > rules.max_prompt_chars:
        raise errors.invalid_request(
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{rules.max_prompt_chars}, but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    return prompt


def _resolve_model(
    values: Mapping[str, object], *, owner: Owner, model: str | None, models: Collection[str]
) -> str:
    """The model: the deployment's on Azure, the body's (or the default) on OpenAI."""
    if owner == "azure":
        if model is None:
            raise ValueError("owner azure needs the deployment's model")
        chosen = model
    else:
        body_model = values.get("model")
        chosen_or_none = body_model if isinstance(body_model, str) else model
        if chosen_or_none is None:
            raise errors.missing_parameter("model")
        chosen = chosen_or_none
    if chosen not in models:
        raise errors.model_not_found(chosen)
    return chosen


def _build(
    values: dict[str, object],
    *,
    endpoint: Endpoint,
    owner: Owner,
    model: str | None,
    models: Collection[str],
    settings: ValidationSettings,
    input_images: int,
    has_mask: bool,
) -> ImageRequest:
    """Stages 3-7 of the module docstring, shared by generations and edits."""
    if "prompt" not in values:
        raise errors.missing_parameter("prompt")
    chosen = _resolve_model(values, owner=owner, model=model, models=models)
    rules = settings.rules_for(chosen)
    if endpoint == "edits":
        if input_images < 1:
            raise errors.missing_parameter("image")
        if input_images > rules.max_input_images:
            raise errors.invalid_value(
                "image",
                f"Invalid 'image': too many images. Expected at most {rules.max_input_images}, "
                f"but got {input_images}.",
            )
    for name in rules.refused_parameters:
        if name in values:
            raise errors.unsupported_parameter(name, chosen)

    prompt = _prompt(values, rules)
    n = _int_in_range(values, "n", 1, rules.max_n, 1)

    size_text = values.get("size", "auto")
    assert isinstance(size_text, str)
    if size_text == "auto":
        width, height = settings.auto_size
    else:
        width, height = parse_size(size_text, rules.sizes)

    quality = _enum(values, "quality", rules.qualities, "auto")
    if quality == "auto":
        quality = settings.auto_quality_azure if owner == "azure" else settings.auto_quality_openai

    formats = rules.output_formats
    if owner == "azure":
        formats = tuple(fmt for fmt in formats if fmt in settings.azure_output_formats)
    output_format = _enum(values, "output_format", formats, "png")

    compression: int | None = None
    if "output_compression" in values:
        compression = _int_in_range(values, "output_compression", 0, 100, 100)
        if output_format == "png":
            if compression < 100:
                raise errors.invalid_value(
                    "output_compression",
                    "Compression less than 100 is not supported for PNG output format; "
                    "output_compression applies to jpeg and webp only.",
                )
            compression = None

    background = _enum(values, "background", ("transparent", "opaque", "auto"), "auto")
    if background == "transparent":
        if not settings.transparent_supported:
            raise errors.invalid_value(
                "background", f"Transparent background is not supported for {chosen}."
            )
        if output_format == "jpeg":
            raise errors.invalid_value(
                "background",
                "Transparent background requires output_format png or webp, but got jpeg.",
            )
    elif background == "auto":
        background = settings.auto_background

    moderation = "auto"
    if endpoint == "generations":
        moderation = _enum(values, "moderation", ("auto", "low"), "auto")

    stream = bool(values.get("stream", False))
    partial_images = _int_in_range(values, "partial_images", 0, rules.max_partial_images, 0)

    return ImageRequest(
        endpoint=endpoint,
        model=chosen,
        prompt=prompt,
        prompt_chars=len(prompt),
        n=n,
        width=width,
        height=height,
        size=f"{width}x{height}",
        quality=quality,
        output_format=output_format,
        output_compression=compression,
        background=background,
        moderation=moderation,
        stream=stream,
        # Partial images exist only on a stream: a plain response never carries (or bills) them.
        partial_images=partial_images if stream else 0,
        input_images=input_images,
        has_mask=has_mask,
    )


def parse_generation(
    body: Mapping[str, object],
    *,
    owner: Owner,
    model: str | None,
    models: Collection[str],
    settings: ValidationSettings = DEFAULT_SETTINGS,
) -> ImageRequest:
    """Validate a JSON body of ``/images/generations``.

    ``model``: on Azure the deployment's model (the body's ``model`` is then only type-checked);
    on OpenAI the model used when the body names none (None: the body must name one).
    ``models``: the model names this route serves; others get 404 ``model_not_found``.
    """
    if not isinstance(body, Mapping):
        raise errors.invalid_request(
            "The request body must be a JSON object.", param=None, code="invalid_type"
        )
    values = _typed_json(body, _GENERATION_FIELDS)
    return _build(
        values,
        endpoint="generations",
        owner=owner,
        model=model,
        models=models,
        settings=settings,
        input_images=0,
        has_mask=False,
    )


def parse_edit(
    fields: Mapping[str, str],
    *,
    image_count: int,
    has_mask: bool,
    owner: Owner,
    model: str | None,
    models: Collection[str],
    settings: ValidationSettings = DEFAULT_SETTINGS,
) -> ImageRequest:
    """Validate the text fields of a multipart ``/images/edits`` request (files counted apart)."""
    values = _typed_multipart(fields, _EDIT_FIELDS)
    return _build(
        values,
        endpoint="edits",
        owner=owner,
        model=model,
        models=models,
        settings=settings,
        input_images=image_count,
        has_mask=has_mask,
    )
