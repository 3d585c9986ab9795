"""An edit's inputs as rules: how a request names them, what each must be (each refusal names
the field and index), and how they reach the fingerprint, the cost and the send plan."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest

from rules.cost import attempt_cost, cost_usd, estimated_cost_usd
from rules.dedup import fingerprint
from rules.errors import RequestInvalid
from rules.inputs import (
    INLINE_JSON_MAX_BYTES,
    ImageFacts,
    InputRef,
    InputSpecs,
    check_image,
    check_mask,
    edit_rules,
    parse_input_specs,
    parts_specs,
)
from rules.models import GPT_IMAGE_2
from rules.request import ImageJobRequest, parse_job_request
from rules.send_plan import Shape, expected_silence
from rules.settings import AppSettings

INPUTS = edit_rules(GPT_IMAGE_2)
UPLOAD = "upl-" + "0" * 32
PNG = ImageFacts("png", 1024, 1024, 2_000, has_alpha=False)
REQUEST = ImageJobRequest(
    prompt="a red apple",
    size="1024x1024",
    quality="low",
    output_format="png",
    background="auto",
    moderation="auto",
    n=1,
    partial_images=1,
    route="azure",
)
REF = InputRef("ab" * 32, "png", 2_000, 1024, 1024)


def refusal(call, *args, **kwargs) -> RequestInvalid:
    with pytest.raises(RequestInvalid) as caught:
        call(*args, **kwargs)
    return caught.value


def specs(body: Any, containers: tuple[str, ...] = ("refs",)) -> InputSpecs | None:
    return parse_input_specs(body, GPT_IMAGE_2, input_containers=containers)


def test_a_body_without_images_is_not_an_edit():
    assert specs({"prompt": "x"}) is None
    assert specs({"prompt": "x", "images": None}) is None


def test_each_source_kind_is_read():
    data = b"\x89PNG..."
    found = specs(
        {
            "images": [
                {"upload": UPLOAD},
                {"blob": "refs/a/b.png"},
                {"b64_json": base64.b64encode(data).decode()},
            ],
            "mask": {"upload": "upl-" + "1" * 32},
        }
    )
    assert found is not None
    assert [(s.field, s.kind, s.ref) for s in found.images] == [
        ("images[0]", "upload", UPLOAD),
        ("images[1]", "blob", "refs/a/b.png"),
        ("images[2]", "inline", None),
    ]
    assert found.images[2].data == data
    assert found.mask is not None
    assert (found.mask.field, found.mask.kind) == ("mask", "upload")


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"images": [{"upload": UPLOAD}] * 17}, "images[16]", "too_many"),
        ({"images": []}, "images", "missing"),
        ({"images": {"upload": UPLOAD}}, "images", "invalid_type"),
        ({"mask": {"upload": UPLOAD}}, "images", "missing"),
        ({"images": [{"upload": UPLOAD}, "x"]}, "images[1]", "invalid_type"),
        ({"images": [{}]}, "images[0]", "invalid_value"),
        ({"images": [{"upload": UPLOAD, "blob": "refs/a"}]}, "images[0]", "invalid_value"),
        ({"images": [{"url": "http://x"}]}, "images[0]", "unknown_field"),
        ({"images": [{"upload": "../etc"}]}, "images[0]", "invalid_value"),
        ({"images": [{"upload": 7}]}, "images[0]", "invalid_type"),
        ({"images": [{"blob": "images/job/image.png"}]}, "images[0]", "invalid_value"),
        ({"images": [{"blob": "refs/../x.png"}]}, "images[0]", "invalid_value"),
        ({"images": [{"blob": "refs"}]}, "images[0]", "invalid_value"),
        ({"images": [{"b64_json": "not base64!"}]}, "images[0]", "invalid_value"),
        ({"images": [{"upload": UPLOAD}], "mask": {"b64_json": "@@"}}, "mask", "invalid_value"),
        ({"images": [{"upload": UPLOAD}], "moderation": "low"}, "moderation", "unsupported"),
    ],
)
def test_each_refusal_names_the_field_and_index(body, field, code):
    error = refusal(specs, body)
    assert (error.field, error.code) == (field, code)


def test_inline_inputs_have_a_total_budget():
    big = base64.b64encode(b"x" * (INLINE_JSON_MAX_BYTES // 2 + 10)).decode()
    error = refusal(specs, {"images": [{"b64_json": big}, {"b64_json": big}]})
    assert (error.field, error.code) == ("images[1]", "too_large")
    assert "POST /api/uploads" in error.message


def test_multipart_parts_are_counted_and_budgeted():
    found = parts_specs([b"a", b"b"], b"m", {}, GPT_IMAGE_2)
    assert found is not None
    assert [s.field for s in found.images] == ["images[0]", "images[1]"]
    assert found.mask is not None
    assert parts_specs([], None, {}, GPT_IMAGE_2) is None
    assert refusal(parts_specs, [b"a"] * 17, None, {}, GPT_IMAGE_2).field == "images[16]"
    assert refusal(parts_specs, [], b"m", {}, GPT_IMAGE_2).field == "images"


@pytest.mark.parametrize(
    ("facts", "code"),
    [
        (None, "unreadable_image"),
        (ImageFacts(None, 0, 0, 10, False), "unreadable_image"),
        (ImageFacts("gif", 64, 64, 10, False), "unsupported_format"),
        (ImageFacts("png", 64, 64, 50 * 1024 * 1024 + 1, False), "too_large"),
    ],
)
def test_an_input_image_that_breaks_a_rule_is_refused_by_name(facts, code):
    error = refusal(check_image, facts, "images[3]", INPUTS)
    assert (error.field, error.code) == ("images[3]", code)


def test_jpeg_webp_and_png_are_accepted_inputs():
    for fmt in ("png", "jpeg", "webp"):
        assert check_image(replace(PNG, format=fmt), "images[0]", INPUTS).format == fmt


@pytest.mark.parametrize(
    ("mask", "code"),
    [
        (None, "unreadable_image"),
        (ImageFacts("jpeg", 1024, 1024, 10, False), "unsupported_format"),
        (ImageFacts("png", 1024, 1024, 4 * 1024 * 1024 + 1, True), "too_large"),
        (ImageFacts("png", 512, 512, 10, True), "size_mismatch"),
        (ImageFacts("png", 1024, 1024, 10, False), "no_alpha"),
    ],
)
def test_a_mask_that_breaks_a_rule_is_refused_naming_mask(mask, code):
    error = refusal(check_mask, mask, PNG, INPUTS)
    assert (error.field, error.code) == ("mask", code)


def test_a_mask_the_size_of_the_first_image_with_alpha_is_accepted():
    mask = ImageFacts("png", 1024, 1024, 10, has_alpha=True)
    assert check_mask(mask, PNG, INPUTS) == mask


def test_the_job_request_takes_images_and_mask_as_fields_and_refuses_input_fidelity(settings):
    body = {"prompt": "x", "images": [{"upload": UPLOAD}], "mask": None}
    request = parse_job_request(body, settings)
    assert request.images == ()  # the starter resolves them
    error = refusal(parse_job_request, {**body, "input_fidelity": "high"}, settings)
    assert (error.field, error.code) == ("input_fidelity", "unsupported")


def test_the_fingerprint_includes_the_input_hashes():
    edit = replace(REQUEST, images=(REF,))
    other = replace(REQUEST, images=(replace(REF, sha256="cd" * 32),))
    assert fingerprint(edit) != fingerprint(REQUEST)
    assert fingerprint(edit) != fingerprint(other)
    assert fingerprint(edit) == fingerprint(replace(REQUEST, images=(REF,)))
    with_mask = replace(edit, mask=replace(REF, sha256="ef" * 32))
    assert fingerprint(with_mask) != fingerprint(edit)


def test_a_generation_fingerprint_is_unchanged_by_edits():
    """Job ids of generations started before edits existed stay the same (dedup holds)."""
    before = {
        "prompt": "a red apple",
        "size": "1024x1024",
        "quality": "low",
        "output_format": "png",
        "background": "auto",
        "moderation": "auto",
        "n": 1,
        "partial_images": 1,
        "route": "azure",
        "output_compression": None,
    }
    canonical = json.dumps(before, sort_keys=True, separators=(",", ":"))
    assert fingerprint(REQUEST) == hashlib.sha256(canonical.encode()).hexdigest()


def test_usage_prices_input_image_tokens_as_for_a_generation():
    usage = {
        "input_tokens": 3_010,
        "input_tokens_details": {"text_tokens": 10, "image_tokens": 3_000},
        "output_tokens": 200,
    }
    assert cost_usd("gpt-image-2", usage) == round((10 * 5 + 3_000 * 8 + 200 * 30) / 1e6, 6)


def test_an_edit_estimate_adds_the_assumed_input_image_tokens():
    shape: dict[str, Any] = {"size": "1024x1024", "quality": "low", "n": 1, "partial_images": 0}
    plain = estimated_cost_usd("gpt-image-2", **shape)
    edit = estimated_cost_usd("gpt-image-2", **shape, input_images=3, mask=True)
    assert plain is not None
    assert edit is not None
    assert edit == pytest.approx(plain + (3 * 1_000 + 200) * 8 / 1e6)
    estimate = attempt_cost(
        "gpt-image-2",
        replace(REQUEST, images=(REF, REF, REF), mask=REF),
        stream=False,
        partial_images=0,
        failure=None,
        usage=None,
    )
    assert estimate.estimated
    assert estimate.usd == edit


def test_an_edit_is_expected_to_take_longer_by_its_inputs(settings: AppSettings):
    shape = Shape(stream=True, partial_images=0)
    plain = expected_silence(GPT_IMAGE_2, REQUEST, shape).longest_s
    edit = replace(REQUEST, images=(REF, REF, REF), mask=REF)
    longer = expected_silence(GPT_IMAGE_2, edit, shape).longest_s
    assert longer == pytest.approx(plain + 4 * GPT_IMAGE_2.expected_s_per_input_image)


def test_input_containers_are_container_names_and_never_the_images_container():
    from rules.errors import SettingsInvalid
    from tests.rules.conftest import ENV

    assert AppSettings.from_env(ENV).input_containers == ()
    found = AppSettings.from_env({**ENV, "IMAGE_INPUT_CONTAINERS": "refs, brand-kit"})
    assert found.input_containers == ("refs", "brand-kit")
    for bad in ("images", "Refs", "a", "x/y"):
        with pytest.raises(SettingsInvalid, match="IMAGE_INPUT_CONTAINERS"):
            AppSettings.from_env({**ENV, "IMAGE_INPUT_CONTAINERS": bad})
