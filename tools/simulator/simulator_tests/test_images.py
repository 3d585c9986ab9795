"""Rendered images: real formats, exact sizes, transparency, determinism, the cache."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from simulator.images import ImageRenderer
from simulator.validation import ImageRequest, parse_generation

PIL_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def request(
    size: str = "1024x1024",
    output_format: str = "png",
    *,
    prompt: str = "a red apple",
    background: str = "opaque",
    n: int = 1,
    quality: str = "medium",
    compression: int | None = None,
) -> ImageRequest:
    body: dict[str, object] = {
        "prompt": prompt,
        "size": size,
        "output_format": output_format,
        "background": background,
        "n": n,
        "quality": quality,
        "stream": True,
        "partial_images": 3,
    }
    if compression is not None:
        body["output_compression"] = compression
    return parse_generation(body, owner="openai", model="gpt-image-2", models={"gpt-image-2"})


def small_request(width: int, height: int, output_format: str = "png") -> ImageRequest:
    """A request below gpt-image-2's minimum size, built directly: rendering does not care."""
    return ImageRequest(
        endpoint="generations",
        model="gpt-image-2",
        prompt="a small apple",
        prompt_chars=13,
        n=1,
        width=width,
        height=height,
        size=f"{width}x{height}",
        quality="low",
        output_format=output_format,
        output_compression=None,
        background="opaque",
        moderation="auto",
        stream=True,
        partial_images=1,
    )


def decode(data: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(data))
    picture.load()
    return picture


@pytest.fixture(scope="module")
def renderer() -> ImageRenderer:
    return ImageRenderer()


@pytest.mark.parametrize(
    ("size", "fmt"),
    [
        ("1024x1024", "png"),
        ("1024x1024", "jpeg"),
        ("1024x1024", "webp"),
        ("1536x1024", "png"),
        ("1024x3072", "jpeg"),
        ("3840x2160", "png"),
        ("2160x3840", "jpeg"),
    ],
)
def test_final_and_partials_decode_to_the_exact_size_and_format(renderer, size, fmt):
    req = request(size, fmt)
    for data in [renderer.final(req, 0)] + [renderer.partial(req, 0, k) for k in range(3)]:
        picture = decode(data)
        assert picture.size == (req.width, req.height)
        assert picture.format == PIL_NAMES[fmt]
        assert picture.mode == "RGB"


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_transparent_background_gives_real_alpha(renderer, fmt):
    req = request("1024x1024", fmt, background="transparent")
    for data in (renderer.final(req, 0), renderer.partial(req, 0, 1)):
        picture = decode(data)
        assert picture.mode == "RGBA"
        low, high = picture.getchannel("A").getextrema()
        assert (low, high) == (0, 255)  # a transparent background behind opaque shapes


@settings(max_examples=25, deadline=None)
@given(
    st.integers(min_value=1, max_value=24),
    st.integers(min_value=1, max_value=24),
    st.sampled_from(["png", "jpeg", "webp"]),
)
def test_random_sizes_decode_exactly_at_small_scale(w16, h16, fmt):
    small = ImageRenderer(png_bytes_per_pixel=0)
    req = small_request(16 * w16, 16 * h16, fmt)
    assert decode(small.final(req, 0)).size == (16 * w16, 16 * h16)
    assert decode(small.partial(req, 0, 0)).size == (16 * w16, 16 * h16)


def test_same_inputs_give_the_same_bytes_across_renderers():
    req = request()
    assert ImageRenderer(seed=4).final(req, 0) == ImageRenderer(seed=4).final(req, 0)
    assert ImageRenderer(seed=4).partial(req, 0, 2) == ImageRenderer(seed=4).partial(req, 0, 2)


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "a green pear"},
        {"size": "1536x1024"},
        {"output_format": "jpeg"},
        {"background": "transparent"},
    ],
)
def test_a_different_input_gives_a_different_image(renderer, change):
    assert renderer.final(request(**change), 0) != renderer.final(request(), 0)


def test_seed_index_and_compression_change_the_image(renderer):
    req = request(n=2)
    assert renderer.final(req, 0) != renderer.final(req, 1)
    assert ImageRenderer(seed=1).final(req, 0) != renderer.final(req, 0)
    strong = renderer.final(request(output_format="jpeg", compression=10), 0)
    light = renderer.final(request(output_format="jpeg", compression=95), 0)
    assert len(strong) < len(light)


def _colours(data: bytes) -> int:
    picture = decode(data).convert("RGB")
    found = picture.getcolors(maxcolors=1 << 24)
    assert found is not None
    return len(found)


def test_partials_are_rougher_than_the_final_and_sharpen_in_order(renderer):
    req = request("1024x1024", "png")
    counts = [_colours(renderer.partial(req, 0, k)) for k in range(3)]
    final = _colours(renderer.final(req, 0))
    assert counts[0] < counts[1] < counts[2] < final


def test_pngs_are_as_large_as_real_ones_unless_padding_is_off():
    req = request("1024x1024", "png")
    padded = ImageRenderer().final(req, 0)
    bare = ImageRenderer(png_bytes_per_pixel=0).final(req, 0)
    assert len(padded) == pytest.approx(1.9 * 1024 * 1024, rel=0.01)
    assert len(bare) < len(padded)
    assert decode(padded).tobytes() == decode(bare).tobytes()


def test_the_prompt_text_is_not_in_the_bytes(renderer):
    data = renderer.final(request(prompt="zebra-unicorn-prompt", output_format="png"), 0)
    assert b"zebra-unicorn-prompt" not in data


def test_indexes_out_of_range_are_refused(renderer):
    req = request(n=2)
    with pytest.raises(ValueError, match="image index"):
        renderer.final(req, 2)
    with pytest.raises(ValueError, match="partial index"):
        renderer.partial(req, 0, 3)


def test_a_second_request_is_served_from_the_cache():
    fresh = ImageRenderer()
    req = request("1024x1024", "jpeg")
    first = fresh.final(req, 0)
    assert fresh.final(req, 0) is first
    stats = fresh.stats()
    assert (stats.hits, stats.misses, stats.entries, stats.bytes) == (1, 1, 1, len(first))


def test_the_cache_stays_within_its_byte_budget_and_drops_the_least_recent():
    one = len(ImageRenderer(png_bytes_per_pixel=0).final(request(prompt="p0"), 0))
    bounded = ImageRenderer(max_cache_bytes=int(2.5 * one), png_bytes_per_pixel=0)
    for name in ("p0", "p1", "p0", "p2"):  # p0 used again, so p1 is the least recent
        bounded.final(request(prompt=name), 0)
    assert bounded.stats().bytes <= int(2.5 * one)
    assert bounded.stats().entries == 2
    misses = bounded.stats().misses
    bounded.final(request(prompt="p0"), 0)
    assert bounded.stats().misses == misses  # still cached
    bounded.final(request(prompt="p1"), 0)
    assert bounded.stats().misses == misses + 1  # was dropped


def test_an_image_larger_than_the_budget_is_rendered_but_not_kept():
    tiny = ImageRenderer(max_cache_bytes=10)
    assert decode(tiny.final(request("1024x1024", "jpeg"), 0)).size == (1024, 1024)
    assert tiny.stats().entries == 0


def test_many_threads_asking_for_one_image_render_it_once():
    shared = ImageRenderer()
    req = request("2048x2048", "png")
    start = threading.Barrier(8)

    def ask(_: int) -> bytes:
        start.wait()
        return shared.final(req, 0)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(ask, range(8)))
    assert all(result == results[0] for result in results)
    stats = shared.stats()
    assert (stats.misses, stats.hits) == (1, 7)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"max_cache_bytes": -1}, "max_cache_bytes"), ({"png_bytes_per_pixel": -1}, "png")],
)
def test_renderer_refuses_negative_settings(kwargs, named):
    with pytest.raises(ValueError, match=named):
        ImageRenderer(**kwargs)
