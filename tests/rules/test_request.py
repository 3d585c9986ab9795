import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.errors import RequestInvalid
from rules.models import GPT_IMAGE_2
from rules.request import ImageJobRequest, parse_job_request, size_problem


def test_defaults_fill_what_the_request_leaves_out(settings):
    job = parse_job_request({"prompt": "a red apple"}, settings)
    assert job.route == "azure"
    assert job.size == "1024x1024"
    assert job.partial_images == 1
    assert job.output_format == "png"
    assert job.n == 1


def test_shape_and_repr_never_carry_the_prompt(settings):
    job = parse_job_request({"prompt": "secret plan for a red apple"}, settings)
    assert "secret" not in repr(job)
    assert "secret" not in str(job.shape())
    assert job.shape()["prompt_chars"] == len("secret plan for a red apple")
    assert ImageJobRequest.from_json(job.to_json()) == job


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": 3}, "prompt"),
        ({"prompt": "x" * 32_001}, "prompt"),
        ({"prompt": "a red \ud800 apple"}, "prompt"),
        ({"prompt": "p", "size": "1000x1000"}, "size"),
        ({"prompt": "p", "size": "4096x1024"}, "size"),
        ({"prompt": "p", "size": "3840x1024"}, "size"),
        ({"prompt": "p", "size": "512x512"}, "size"),
        ({"prompt": "p", "size": "big"}, "size"),
        ({"prompt": "p", "quality": "ultra"}, "quality"),
        ({"prompt": "p", "output_format": "gif"}, "output_format"),
        ({"prompt": "p", "output_format": "webp"}, "output_format"),  # azure: png, jpeg only
        ({"prompt": "p", "output_compression": 50}, "output_compression"),  # png
        ({"prompt": "p", "output_format": "jpeg", "output_compression": 101}, "output_compression"),
        ({"prompt": "p", "background": "transparent", "output_format": "jpeg"}, "background"),
        ({"prompt": "p", "background": "clear"}, "background"),
        ({"prompt": "p", "moderation": "none"}, "moderation"),
        ({"prompt": "p", "n": 0}, "n"),
        ({"prompt": "p", "n": 11}, "n"),
        ({"prompt": "p", "n": True}, "n"),
        ({"prompt": "p", "partial_images": 4}, "partial_images"),
        ({"prompt": "p", "partial_images": "1"}, "partial_images"),
        ({"prompt": "p", "route": "nowhere"}, "route"),
        ({"prompt": "p", "input_fidelity": "high"}, "input_fidelity"),
        ({"prompt": "p", "seed": 1}, "seed"),
    ],
)
def test_each_invalid_field_is_named(settings, body, field):
    with pytest.raises(RequestInvalid) as caught:
        parse_job_request(body, settings)
    assert caught.value.field == field
    assert caught.value.code
    assert "prompt" not in caught.value.message or field == "prompt"


def test_webp_is_fine_on_the_openai_route(settings):
    job = parse_job_request({"prompt": "p", "output_format": "webp", "route": "openai"}, settings)
    assert job.output_format == "webp"


@pytest.mark.parametrize("size", ["3840x2160", "2160x3840", "1024x1024", "2048x2048", "auto"])
def test_published_sizes_pass(settings, size):
    assert parse_job_request({"prompt": "p", "size": size}, settings).size == size


@given(st.integers(1, 240), st.integers(1, 240))
def test_accepted_sizes_satisfy_every_rule(w16, h16):
    width, height = w16 * 16, h16 * 16
    rules = GPT_IMAGE_2.sizes
    if size_problem(width, height, rules) is None:
        assert max(width, height) <= 3840
        assert max(width, height) <= 3 * min(width, height)
        assert 655_360 <= width * height <= 8_294_400


def test_a_refused_output_format_says_which_route_takes_it(settings):
    with pytest.raises(RequestInvalid) as caught:
        parse_job_request({"prompt": "p", "output_format": "webp"}, settings)
    assert caught.value.field == "output_format"
    assert "route azure takes output_format jpeg, png" in caught.value.message
    assert "route openai accepts webp" in caught.value.message
    with pytest.raises(RequestInvalid) as caught:
        parse_job_request({"prompt": "p", "output_format": "gif"}, settings)
    assert "accepts" not in caught.value.message  # no route takes gif
