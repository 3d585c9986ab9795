"""Usage and cost against the published price table, and the OpenAPI usage schema."""

from __future__ import annotations

import pytest

from simulator.usage import DEFAULT_PRICES, Prices, cost_usd, image_output_tokens, usage_for
from simulator.validation import ImageRequest, parse_edit, parse_generation
from simulator_tests.openapi_schema import violations


def request(size: str, quality: str, **extra: object) -> ImageRequest:
    body = {"prompt": "an apple", "size": size, "quality": quality, **extra}
    return parse_generation(body, owner="openai", model="gpt-image-2", models={"gpt-image-2"})


def output_cost(req: ImageRequest) -> float:
    output = usage_for(req)["output_tokens"]
    assert isinstance(output, int)
    return output * DEFAULT_PRICES.output_per_million / 1_000_000


@pytest.mark.parametrize(
    ("size", "quality", "price"),
    [
        ("1024x1024", "low", 0.006),
        ("1024x1024", "medium", 0.053),
        ("1024x1024", "high", 0.211),
        ("1536x1024", "low", 0.005),
        ("1536x1024", "medium", 0.041),
        ("1536x1024", "high", 0.165),
        ("1024x1536", "high", 0.165),
    ],
)
def test_one_image_costs_the_published_price(size, quality, price):
    assert output_cost(request(size, quality)) == pytest.approx(price, abs=0.00005)


def test_other_sizes_scale_by_pixel_area():
    base = image_output_tokens(1024, 1024, "high")
    assert image_output_tokens(2048, 2048, "high") == 4 * base
    landscape = image_output_tokens(1536, 1024, "medium")
    assert image_output_tokens(3072, 2048, "medium") == 4 * landscape


def test_each_partial_adds_100_output_tokens_and_n_multiplies_everything():
    plain = usage_for(request("1024x1024", "low"))["output_tokens"]
    streamed = usage_for(request("1024x1024", "low", stream=True, partial_images=3))
    assert streamed["output_tokens"] == plain + 300  # type: ignore[operator]
    many = usage_for(request("1024x1024", "low", stream=True, partial_images=3, n=4))
    assert many["output_tokens"] == 4 * (plain + 300)  # type: ignore[operator]


def test_totals_add_up_and_text_tokens_follow_the_prompt():
    usage = usage_for(request("1024x1024", "medium"))
    details = usage["input_tokens_details"]
    assert isinstance(details, dict)
    assert details == {"text_tokens": 2, "image_tokens": 0}  # "an apple": 8 chars / 4
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]  # type: ignore[operator]


def test_edits_count_input_images_and_the_mask():
    req = parse_edit(
        {"prompt": "an apple"},
        image_count=3,
        has_mask=True,
        owner="openai",
        model="gpt-image-2",
        models={"gpt-image-2"},
    )
    details = usage_for(req)["input_tokens_details"]
    assert details == {"text_tokens": 2, "image_tokens": 3 * 1000 + 200}


def test_usage_fits_the_openapi_schemas():
    usage = usage_for(request("2048x2048", "high", stream=True, partial_images=2))
    assert violations(usage, "ImagesUsage") == []
    assert violations(usage, "ImageGenUsage") == []


def test_cost_adds_input_and_output_at_their_prices():
    usage = {
        "input_tokens": 300,
        "input_tokens_details": {"text_tokens": 100, "image_tokens": 200},
        "output_tokens": 1000,
        "total_tokens": 1300,
    }
    prices = Prices(output_per_million=30.0, text_input_per_million=5.0, image_input_per_million=8)
    assert cost_usd(usage, prices) == pytest.approx((100 * 5 + 200 * 8 + 1000 * 30) / 1e6)


def test_cost_of_a_usage_from_usage_for_is_the_published_price_plus_input():
    usage = usage_for(request("1024x1024", "high"))
    assert cost_usd(usage) == pytest.approx(0.211 + 2 * 5 / 1e6, abs=0.00005)


@pytest.mark.parametrize(
    "bad",
    [
        {"output_tokens": "10", "input_tokens_details": {}},
        {"output_tokens": 1, "input_tokens_details": []},
        {"output_tokens": 1, "input_tokens_details": {"text_tokens": True}},
    ],
)
def test_cost_refuses_a_malformed_usage(bad):
    with pytest.raises(ValueError, match="usage field"):
        cost_usd(bad)
