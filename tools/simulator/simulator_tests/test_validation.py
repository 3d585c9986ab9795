"""Every gpt-image-2 rule of the API reference, with the real ``param`` and ``code``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.errors import ApiError
from simulator.usage import usage_for
from simulator.validation import (
    DEFAULT_SETTINGS,
    GPT_IMAGE_2,
    ImageRequest,
    Owner,
    ValidationSettings,
    parse_edit,
    parse_generation,
)
from simulator_tests.openapi_schema import violations

MODELS = {"gpt-image-2", "gpt-image-2-2026-04-21"}


def generate(
    body: Any,
    *,
    owner: Owner = "openai",
    model: str | None = "gpt-image-2",
    settings: ValidationSettings = DEFAULT_SETTINGS,
) -> ImageRequest:
    return parse_generation(body, owner=owner, model=model, models=MODELS, settings=settings)


def edit(
    fields: dict[str, str],
    *,
    image_count: int = 1,
    has_mask: bool = False,
    owner: Owner = "openai",
    model: str | None = "gpt-image-2",
) -> ImageRequest:
    return parse_edit(
        fields,
        image_count=image_count,
        has_mask=has_mask,
        owner=owner,
        model=model,
        models=MODELS,
    )


def refusal(call: Callable[[], object]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


# --- sizes --------------------------------------------------------------------------------------

VALID_SIZES = [
    "1024x1024",
    "1536x1024",
    "1024x1536",
    "2048x2048",
    "2048x1152",
    "1536x864",
    "3840x2160",  # longest edge and pixel maximum exactly
    "2160x3840",
    "1024x3072",  # ratio exactly 3
    "3072x1024",
    "1024x640",  # 655,360 pixels: the minimum exactly
    "640x1024",
]


@pytest.mark.parametrize("size", VALID_SIZES)
def test_valid_edge_sizes_are_accepted_and_reported(size):
    request = generate({"prompt": "p", "size": size})
    width, height = map(int, size.split("x"))
    assert (request.width, request.height, request.size) == (width, height, size)


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ("1000x1024", "divisible by 16"),
        ("1024x1032", "divisible by 16"),
        ("3856x1296", "longest edge"),  # one step past 3840, every other rule holds
        ("1296x3856", "longest edge"),
        ("1024x3088", "aspect ratio"),  # one step past ratio 3
        ("3088x1024", "aspect ratio"),
        ("1024x624", "pixels"),  # 638,976: one step under 655,360
        ("3840x2176", "pixels"),  # 8,355,840: one step over 8,294,400
        ("1024", "WIDTHxHEIGHT"),
        ("1024x", "WIDTHxHEIGHT"),
        ("1024X1024", "WIDTHxHEIGHT"),
        (" 1024x1024", "WIDTHxHEIGHT"),
        ("-16x1024", "WIDTHxHEIGHT"),
        ("big", "WIDTHxHEIGHT"),
        ("1024x1024\n", "WIDTHxHEIGHT"),
        ("0x1024", "must be > 0"),
    ],
)
def test_sizes_one_past_each_limit_are_refused_naming_size(size, reason):
    error = refusal(lambda: generate({"prompt": "p", "size": size}))
    assert (error.status, error.type, error.code, error.param) == (
        400,
        "invalid_request_error",
        "invalid_value",
        "size",
    )
    assert reason in error.message


def _rules_hold(width: int, height: int) -> bool:
    """The reference's rules, written again independently of SizeRules."""
    return (
        width % 16 == 0
        and height % 16 == 0
        and max(width, height) <= 3840
        and max(width, height) <= 3 * min(width, height)
        and 655_360 <= width * height <= 8_294_400
    )


@given(st.integers(min_value=1, max_value=4200), st.integers(min_value=1, max_value=4200))
def test_a_size_is_accepted_exactly_when_every_rule_holds(width, height):
    body = {"prompt": "p", "size": f"{width}x{height}"}
    if _rules_hold(width, height):
        assert generate(body).pixels == width * height
    else:
        assert refusal(lambda: generate(body)).param == "size"


@given(st.integers(min_value=1, max_value=240), st.integers(min_value=1, max_value=240))
def test_every_size_on_the_16_grid_that_passes_satisfies_all_rules(w16, h16):
    width, height = 16 * w16, 16 * h16
    try:
        generate({"prompt": "p", "size": f"{width}x{height}"})
    except ApiError:
        assert not _rules_hold(width, height)
    else:
        assert _rules_hold(width, height)


def test_size_auto_resolves_to_a_concrete_size():
    request = generate({"prompt": "p", "size": "auto"})
    assert request.size == "1024x1024"
    custom = generate({"prompt": "p"}, settings=ValidationSettings(auto_size=(1536, 1024)))
    assert custom.size == "1536x1024"


# --- every other parameter names its param ----------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"quality": "ultra"}, "quality", "invalid_value"),
        ({"quality": "standard"}, "quality", "invalid_value"),
        ({"output_format": "gif"}, "output_format", "invalid_value"),
        ({"output_format": "PNG"}, "output_format", "invalid_value"),
        ({"output_format": "jpeg", "output_compression": 101}, "output_compression", None),
        ({"output_format": "jpeg", "output_compression": -1}, "output_compression", None),
        ({"output_compression": 80}, "output_compression", "invalid_value"),  # png
        ({"background": "green"}, "background", "invalid_value"),
        ({"background": "transparent", "output_format": "jpeg"}, "background", "invalid_value"),
        ({"moderation": "high"}, "moderation", "invalid_value"),
        ({"n": 0}, "n", "integer_below_min_value"),
        ({"n": 11}, "n", "integer_above_max_value"),
        ({"n": "2"}, "n", "invalid_type"),
        ({"n": 2.0}, "n", "invalid_type"),
        ({"n": True}, "n", "invalid_type"),
        ({"partial_images": 4}, "partial_images", "integer_above_max_value"),
        ({"partial_images": -1}, "partial_images", "integer_below_min_value"),
        ({"stream": "true"}, "stream", "invalid_type"),
        ({"stream": 1}, "stream", "invalid_type"),
        ({"size": 1024}, "size", "invalid_type"),
        ({"quality": ["low"]}, "quality", "invalid_type"),
        ({"model": 2}, "model", "invalid_type"),
        ({"prompt": ""}, "prompt", "empty_string"),
        ({"prompt": 5}, "prompt", "invalid_type"),
        ({"prompt": "x" * 32_001}, "prompt", "string_above_max_length"),
        ({"input_fidelity": "high"}, "input_fidelity", "unknown_parameter"),
        ({"response_format": "b64_json"}, "response_format", "unsupported_parameter"),
        ({"response_format": "url"}, "response_format", "unsupported_parameter"),
        ({"style": "vivid"}, "style", "unsupported_parameter"),
        ({"complexity": "high"}, "complexity", "unsupported_parameter"),
        ({"frame_count": 4}, "frame_count", "unsupported_parameter"),
        ({"temperature": 1}, "temperature", "unknown_parameter"),
    ],
)
def test_every_invalid_parameter_names_its_param(extra, param, code):
    body = {"prompt": "a red apple", **extra}
    error = refusal(lambda: generate(body))
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.param == param
    if code is not None:
        assert error.code == code
    assert param in error.message or error.code == "invalid_value"


def test_range_errors_have_range_codes():
    assert refusal(lambda: generate({"prompt": "p", "n": 11})).message.startswith(
        "Invalid 'n': integer above maximum value. Expected a value <= 10, but got 11"
    )


def test_missing_prompt_is_missing_required_parameter():
    error = refusal(lambda: generate({"n": 1}))
    assert (error.param, error.code) == ("prompt", "missing_required_parameter")


def test_prompt_of_exactly_32000_characters_is_accepted_and_counted():
    request = generate({"prompt": "x" * 32_000})
    assert request.prompt_chars == 32_000


def test_a_body_that_is_not_an_object_is_refused():
    error = refusal(lambda: generate(["prompt"]))
    assert error.status == 400


def test_null_values_mean_not_given():
    request = generate({"prompt": "p", "n": None, "size": None, "quality": None, "user": None})
    assert (request.n, request.size) == (1, "1024x1024")


def test_accepted_bookkeeping_fields_are_ignored():
    request = generate({"prompt": "p", "user": "u-1", "safety_identifier": "hash"})
    assert request.n == 1


# --- order of checks --------------------------------------------------------------------------


def test_unknown_parameter_is_reported_before_type_errors():
    error = refusal(lambda: generate({"prompt": 5, "n": "x", "zzz": 1}))
    assert error.code == "unknown_parameter"


def test_type_errors_come_before_value_errors():
    error = refusal(lambda: generate({"prompt": "p", "size": "1x1", "n": "2"}))
    assert error.param == "n"


def test_model_is_checked_before_values():
    error = refusal(lambda: generate({"prompt": "p", "model": "dall-e-9", "size": "1x1"}))
    assert error.code == "model_not_found"


def test_values_are_checked_in_the_documented_order():
    error = refusal(lambda: generate({"prompt": "p", "n": 11, "size": "1x1", "quality": "ultra"}))
    assert error.param == "n"
    error = refusal(lambda: generate({"prompt": "p", "size": "1x1", "quality": "ultra"}))
    assert error.param == "size"


# --- models and route owners ------------------------------------------------------------------


def test_unknown_model_is_a_404_model_not_found():
    error = refusal(lambda: generate({"prompt": "p", "model": "gpt-image-9"}))
    assert (error.status, error.code, error.param) == (404, "model_not_found", None)


def test_openai_uses_the_bodys_model_else_the_default():
    assert generate({"prompt": "p", "model": "gpt-image-2-2026-04-21"}).model == (
        "gpt-image-2-2026-04-21"
    )
    assert generate({"prompt": "p"}).model == "gpt-image-2"


def test_openai_without_any_model_asks_for_one():
    error = refusal(lambda: generate({"prompt": "p"}, model=None))
    assert (error.param, error.code) == ("model", "missing_required_parameter")


def test_azure_uses_the_deployments_model_whatever_the_body_says():
    request = generate({"prompt": "p", "model": "my-deployment"}, owner="azure")
    assert request.model == "gpt-image-2"


def test_azure_without_a_deployment_model_is_a_programming_error():
    with pytest.raises(ValueError, match="deployment"):
        generate({"prompt": "p"}, owner="azure", model=None)


def test_azure_serves_png_and_jpeg_only():
    error = refusal(lambda: generate({"prompt": "p", "output_format": "webp"}, owner="azure"))
    assert error.param == "output_format"
    assert generate({"prompt": "p", "output_format": "webp"}).output_format == "webp"
    assert generate({"prompt": "p", "output_format": "jpeg"}, owner="azure").output_format == (
        "jpeg"
    )


def test_quality_auto_resolves_per_owner():
    assert generate({"prompt": "p"}).quality == "medium"
    assert generate({"prompt": "p", "quality": "auto"}, owner="azure").quality == "high"
    assert generate({"prompt": "p", "quality": "low"}, owner="azure").quality == "low"


# --- format, compression, background ----------------------------------------------------------


@pytest.mark.parametrize(("fmt", "compression"), [("jpeg", 0), ("jpeg", 100), ("webp", 55)])
def test_compression_is_kept_for_jpeg_and_webp(fmt, compression):
    body = {"prompt": "p", "output_format": fmt, "output_compression": compression}
    assert generate(body).output_compression == compression


def test_png_accepts_only_the_default_compression_and_reports_none():
    assert generate({"prompt": "p", "output_compression": 100}).output_compression is None
    assert generate({"prompt": "p", "output_format": "jpeg"}).output_compression is None


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_transparent_background_with_png_or_webp(fmt):
    request = generate({"prompt": "p", "background": "transparent", "output_format": fmt})
    assert request.background == "transparent"


def test_transparent_can_be_switched_off_as_a_setting():
    settings = ValidationSettings(transparent_supported=False)
    error = refusal(
        lambda: generate({"prompt": "p", "background": "transparent"}, settings=settings)
    )
    assert error.param == "background"


def test_background_auto_resolves_to_opaque():
    assert generate({"prompt": "p", "background": "auto"}).background == "opaque"


def test_partial_images_only_count_on_a_stream():
    assert generate({"prompt": "p", "partial_images": 2}).partial_images == 0
    streamed = generate({"prompt": "p", "partial_images": 2, "stream": True})
    assert (streamed.stream, streamed.partial_images) == (True, 2)


# --- edits ---------------------------------------------------------------------------------------


def test_edit_fields_arrive_as_strings():
    request = edit(
        {"prompt": "p", "n": "2", "stream": "true", "partial_images": "3", "size": "1536x1024"},
        image_count=16,
        has_mask=True,
    )
    assert (request.endpoint, request.n, request.stream, request.partial_images) == (
        "edits",
        2,
        True,
        3,
    )
    assert (request.input_images, request.has_mask) == (16, True)


@pytest.mark.parametrize(
    ("fields", "image_count", "param", "code"),
    [
        ({"prompt": "p"}, 0, "image", "missing_required_parameter"),
        ({"prompt": "p"}, 17, "image", "invalid_value"),
        ({"prompt": "p", "input_fidelity": "high"}, 1, "input_fidelity", "unsupported_parameter"),
        ({"prompt": "p", "moderation": "low"}, 1, "moderation", "unknown_parameter"),
        ({"prompt": "p", "n": "two"}, 1, "n", "invalid_type"),
        ({"prompt": "p", "stream": "yes"}, 1, "stream", "invalid_type"),
        ({"prompt": "p", "size": "1000x1000"}, 1, "size", "invalid_value"),
        ({"prompt": ""}, 1, "prompt", "empty_string"),
        ({"n": "1"}, 1, "prompt", "missing_required_parameter"),
        ({"prompt": "p", "svg[model]": "x"}, 1, "svg", "unsupported_parameter"),
    ],
)
def test_edit_rules_name_their_param(fields, image_count, param, code):
    error = refusal(lambda: edit(fields, image_count=image_count))
    assert (error.status, error.param, error.code) == (400, param, code)


def test_edit_ignores_file_part_names_and_empty_fields():
    request = edit({"prompt": "p", "image[]": "", "mask": "", "quality": ""})
    assert request.quality == "medium"


# --- the resolved request -----------------------------------------------------------------------


def test_shape_and_repr_never_hold_the_prompt():
    request = generate({"prompt": "secret plans for a red apple"})
    assert "prompt" not in request.shape()
    assert request.shape()["prompt_chars"] == len("secret plans for a red apple")
    assert "secret" not in repr(request)
    assert "secret" not in str(request.shape())


def test_shape_holds_every_other_field():
    request = generate({"prompt": "p", "size": "2048x1152", "quality": "high", "n": 3})
    names = {f for f in ImageRequest.__dataclass_fields__} - {"prompt"}
    assert set(request.shape()) == names


def test_default_rules_are_gpt_image_2s():
    assert (GPT_IMAGE_2.sizes.max_edge, GPT_IMAGE_2.sizes.max_pixels) == (3840, 8_294_400)
    assert GPT_IMAGE_2.max_input_images == 16


# --- the resolved fields fit the official response and event schemas ---------------------------

SHEET_FIELDS = ("background", "output_format", "quality", "size")


@pytest.mark.parametrize(
    ("body", "owner"),
    [
        ({"prompt": "p"}, "openai"),
        ({"prompt": "p", "quality": "auto", "background": "auto", "size": "auto"}, "azure"),
        ({"prompt": "p", "background": "transparent", "output_format": "webp"}, "openai"),
        ({"prompt": "p", "output_format": "jpeg", "size": "1536x1024"}, "azure"),
        ({"prompt": "p", "size": "2048x2048", "quality": "high"}, "openai"),
    ],
)
def test_resolved_fields_fit_images_response_and_stream_events(body, owner):
    req = generate({**body, "stream": True, "partial_images": 1}, owner=owner)
    usage = usage_for(req)
    fields = {name: getattr(req, name) for name in SHEET_FIELDS}
    # The document's size enums list only the three classic sizes; gpt-image-2 takes any valid size.
    loose = ("$.size",) if req.size not in {"1024x1024", "1024x1536", "1536x1024"} else ()
    response = {"created": 1, "data": [{"b64_json": "AAAA"}], **fields, "usage": usage}
    assert violations(response, "ImagesResponse", ignore_enum_at=loose) == []
    event_base = {"b64_json": "AAAA", "created_at": 1, **fields}
    for prefix, endpoint in (("image_generation", "ImageGen"), ("image_edit", "ImageEdit")):
        partial = {"type": f"{prefix}.partial_image", **event_base, "partial_image_index": 0}
        completed = {"type": f"{prefix}.completed", **event_base, "usage": usage}
        assert violations(partial, f"{endpoint}PartialImageEvent", ignore_enum_at=loose) == []
        assert violations(completed, f"{endpoint}CompletedEvent", ignore_enum_at=loose) == []


def test_the_schema_check_catches_a_missing_field_and_an_unresolved_auto():
    usage = usage_for(generate({"prompt": "p"}))
    response = {"created": 1, "quality": "auto", "usage": {**usage, "output_tokens": "many"}}
    problems = violations(response, "ImagesResponse")
    assert any("$.quality" in p for p in problems)
    assert any("$.usage.output_tokens" in p for p in problems)
    event = {"type": "image_generation.completed", "b64_json": "x", "created_at": 1}
    assert any("'usage'" in p for p in violations(event, "ImageGenCompletedEvent"))
