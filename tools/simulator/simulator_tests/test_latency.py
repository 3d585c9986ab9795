"""The latency model against the field reports it is calibrated to, and the time scale."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.latency import GenerationPlan, LatencyModel, LatencyParams, TimeScale
from simulator.validation import ImageRequest, parse_generation

MODEL = LatencyModel()


def request(
    size: str = "1024x1024",
    quality: str = "medium",
    *,
    prompt: str = "a red apple on a white background",
    output_format: str = "png",
    partial_images: int = 0,
    n: int = 1,
) -> ImageRequest:
    body: dict[str, object] = {
        "prompt": prompt,
        "size": size,
        "quality": quality,
        "output_format": output_format,
        "n": n,
    }
    if partial_images:
        body |= {"stream": True, "partial_images": partial_images}
    return parse_generation(body, owner="azure", model="gpt-image-2", models={"gpt-image-2"})


def plans(req: ImageRequest, count: int = 200, **kwargs: float) -> list[GenerationPlan]:
    return [MODEL.plan(req, random.Random(seed), **kwargs) for seed in range(count)]


def test_azure_1024_low_takes_about_22_seconds():
    assert 21.0 <= MODEL.expected_total_s(request(quality="low")) <= 23.0
    assert all(18.0 <= p.total_s <= 26.0 for p in plans(request(quality="low")))


def test_2048_high_takes_200_to_250_seconds_whatever_the_jitter():
    totals = [p.total_s for p in plans(request("2048x2048", "high"))]
    assert min(totals) >= 200.0
    assert max(totals) <= 250.0
    assert max(totals) - min(totals) > 10.0  # there is jitter


def test_a_long_complex_prompt_at_1024_medium_takes_up_to_about_two_minutes():
    short = MODEL.expected_total_s(request(prompt="an apple"))
    long = MODEL.expected_total_s(request(prompt="x" * 8000))
    assert short < 60.0
    assert 100.0 <= long <= 125.0


def test_4k_takes_more_than_a_minute_even_at_low_quality():
    assert MODEL.expected_total_s(request("3840x2160", "low")) > 60.0


def test_jpeg_is_a_little_faster_than_png():
    png = MODEL.expected_total_s(request(output_format="png"))
    jpeg = MODEL.expected_total_s(request(output_format="jpeg"))
    assert 0.85 * png < jpeg < png


def test_square_is_faster_than_the_same_area_in_landscape():
    assert MODEL.expected_total_s(request("1536x1024")) > MODEL.expected_total_s(
        request("1248x1248")
    )


sizes_on_grid = st.sampled_from(["1024x1024", "1536x1024", "2048x2048", "2048x1152", "3840x2160"])


@given(sizes_on_grid, st.sampled_from(["low", "medium"]))
def test_time_grows_with_quality(size, quality):
    better = {"low": "medium", "medium": "high"}[quality]
    assert MODEL.expected_total_s(request(size, better)) > MODEL.expected_total_s(
        request(size, quality)
    )


@given(st.sampled_from(["low", "medium", "high"]), st.integers(min_value=51, max_value=170))
def test_time_grows_with_pixel_count_for_square_sizes(quality, edge16):
    small = f"{edge16 * 16}x{edge16 * 16}"
    larger = f"{(edge16 + 10) * 16}x{(edge16 + 10) * 16}"
    if (edge16 + 10) * 16 > 2880:  # keep within the pixel maximum
        return
    assert MODEL.expected_total_s(request(larger, quality)) > MODEL.expected_total_s(
        request(small, quality)
    )


def test_more_images_take_longer():
    assert MODEL.expected_total_s(request(n=4)) > MODEL.expected_total_s(request(n=1))


def test_plan_is_deterministic_for_the_same_rng_state():
    req = request("2048x2048", "high", partial_images=3)
    assert MODEL.plan(req, random.Random(7)) == MODEL.plan(req, random.Random(7))
    assert MODEL.plan(req, random.Random(7)) != MODEL.plan(req, random.Random(8))


@pytest.mark.parametrize("count", [1, 2, 3])
def test_partials_are_spread_over_the_generation_before_the_final(count):
    for plan in plans(request("2048x2048", "high", partial_images=count), 50):
        assert len(plan.partial_at_s) == count
        assert list(plan.partial_at_s) == sorted(plan.partial_at_s)
        assert all(0 < t < plan.total_s for t in plan.partial_at_s)
        assert plan.first_byte_s == plan.partial_at_s[0]


def test_first_partial_of_a_2048_high_stream_comes_inside_azures_first_minute():
    # Field report B: partial_images 2 keeps a 2048x2048 high stream alive behind the 60 s gate.
    for plan in plans(request("2048x2048", "high", partial_images=2)):
        assert plan.first_byte_s < 60.0


def test_without_partials_nothing_arrives_until_the_end():
    for plan in plans(request("2048x2048", "high"), 20):
        assert plan.partial_at_s == ()
        assert plan.first_byte_s == plan.total_s


def test_the_final_can_come_before_the_partials_when_the_setting_says_so():
    eager = LatencyModel(LatencyParams(final_before_partials_chance=1.0))
    req = request(partial_images=3)
    counts = {len(eager.plan(req, random.Random(seed)).partial_at_s) for seed in range(50)}
    assert counts <= {0, 1, 2}
    assert max(counts) >= 1
    assert all(len(p.partial_at_s) == 3 for p in plans(req, 50))  # default: never


def test_speed_is_the_routes_multiplier():
    req = request("2048x2048", "high", partial_images=2)
    normal = MODEL.plan(req, random.Random(3))
    fast = MODEL.plan(req, random.Random(3), speed=2.0)
    assert fast.total_s == pytest.approx(normal.total_s / 2)
    assert fast.partial_at_s == pytest.approx(tuple(t / 2 for t in normal.partial_at_s))
    with pytest.raises(ValueError, match="speed"):
        MODEL.plan(req, random.Random(3), speed=0)


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"jitter": 1.0}, "jitter"),
        ({"first_partial_fraction": 0.9, "last_partial_fraction": 0.5}, "partial fractions"),
        ({"final_before_partials_chance": 1.5}, "final_before_partials_chance"),
    ],
)
def test_params_refuse_impossible_values(bad, named):
    with pytest.raises(ValueError, match=named):
        dataclasses.replace(LatencyParams(), **bad)


def test_time_scale_divides_waits_and_reports_alike():
    scale = TimeScale(50.0)
    assert scale.wait(225.0) == pytest.approx(4.5)
    assert scale.report(60.0) == pytest.approx(1.2)
    assert TimeScale().wait(3.0) == 3.0


@pytest.mark.parametrize("factor", [0.0, -1.0])
def test_time_scale_must_be_positive(factor):
    with pytest.raises(ValueError, match="time scale"):
        TimeScale(factor)
