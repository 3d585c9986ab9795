"""The final image's check (activities.image_check): format and size from the header, the whole
file's structure, no decode. Held against PIL on images PIL makes in every mode; truncated,
corrupt and wrong-format images are refused, as PIL's verify() refused them before."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from activities.image_check import check_image
from tests.activities.test_generate import png

W, H = 37, 23


def encoded(fmt: str, mode: str, **options: Any) -> bytes:
    image = Image.linear_gradient("L").resize((W, H)).convert(mode)
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


IMAGES = {
    **{
        f"png {mode}{' interlaced' if interlace else ''}": (
            "png",
            encoded("PNG", mode, interlace=interlace),
        )
        for mode in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16")
        for interlace in (0, 1)
    },
    "png in several IDAT chunks": ("png", b""),  # made below
    **{
        f"jpeg {mode}{' progressive' if progressive else ''}": (
            "jpeg",
            encoded("JPEG", mode, progressive=progressive),
        )
        for mode in ("RGB", "L", "CMYK")
        for progressive in (False, True)
    },
    "webp lossy": ("webp", encoded("WEBP", "RGB", lossless=False)),
    "webp lossless": ("webp", encoded("WEBP", "RGBA", lossless=True)),
    "webp lossy with alpha (VP8X)": ("webp", encoded("WEBP", "RGBA", lossless=False)),
    "webp with EXIF (VP8X)": ("webp", encoded("WEBP", "RGB", exif=b"Exif\0\0MM")),
}


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    found, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        found.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return found


def assembled(parts: list[tuple[bytes, bytes]]) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in parts:
        out += struct.pack(">I", len(body)) + kind + body
        out += struct.pack(">I", zlib.crc32(kind + body))
    return out


def split_idat(data: bytes, pieces: int) -> bytes:
    parts = chunks(data)
    pixels = b"".join(body for kind, body in parts if kind == b"IDAT")
    step = len(pixels) // pieces + 1
    split = [(b"IDAT", pixels[k : k + step]) for k in range(0, len(pixels), step)]
    head = [p for p in parts if p[0] not in (b"IDAT", b"IEND")]
    return assembled([*head, *split, (b"IEND", b"")])


IMAGES["png in several IDAT chunks"] = ("png", split_idat(encoded("PNG", "RGB"), 5))


@pytest.mark.parametrize(("fmt", "data"), list(IMAGES.values()), ids=list(IMAGES))
def test_every_image_pil_makes_passes_with_the_size_pil_reads(fmt: str, data: bytes):
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (W, H)
    assert check_image(data, output_format=fmt, size=f"{W}x{H}") == (W, H)
    assert check_image(memoryview(data), output_format=fmt, size="auto") == (W, H)


@pytest.mark.parametrize(("fmt", "data"), list(IMAGES.values()), ids=list(IMAGES))
def test_a_truncated_image_is_refused_wherever_it_was_cut(fmt: str, data: bytes):
    for cut in range(1, len(data)):
        verdict = check_image(data[:cut], output_format=fmt, size=f"{W}x{H}")
        assert isinstance(verdict, str), f"cut at {cut} of {len(data)} passed"


def test_the_wrong_format_and_size_are_named_as_before():
    assert check_image(IMAGES["png RGB"][1], output_format="jpeg", size="auto") == (
        "asked for jpeg, got PNG"
    )
    assert check_image(IMAGES["jpeg RGB"][1], output_format="png", size="auto") == (
        "asked for png, got JPEG"
    )
    assert check_image(IMAGES["webp lossy"][1], output_format="png", size="auto") == (
        "asked for png, got WEBP"
    )
    assert check_image(png(64, 32), output_format="png", size="1024x1024") == (
        "asked for 1024x1024, got 64x32"
    )


@pytest.mark.parametrize("data", [b"", b"GIF89a" + b"\0" * 40, b"not an image at all"])
def test_what_is_not_an_image_does_not_decode(data: bytes):
    verdict = check_image(data, output_format="png", size="auto")
    assert verdict == "the image does not decode: not a PNG, JPEG or WebP file"


def png_with(parts: list[tuple[bytes, bytes]], **change: bytes) -> bytes:
    return assembled([(kind, change.get(kind.decode(), body)) for kind, body in parts])


RGB = chunks(encoded("PNG", "RGB"))
PIXELS = zlib.decompress(next(body for kind, body in RGB if kind == b"IDAT"))
BROKEN_PNGS = {
    "a bad CRC": encoded("PNG", "RGB")[:-5] + b"\0" + encoded("PNG", "RGB")[-4:],
    "pixel data cut short (CRC right)": png_with(RGB, IDAT=zlib.compress(PIXELS)[:-9]),
    "pixel data too short (CRC right)": png_with(RGB, IDAT=zlib.compress(PIXELS[:-1])),
    "pixel data too long (CRC right)": png_with(RGB, IDAT=zlib.compress(PIXELS + b"\0" * 999)),
    "pixel data not zlib (CRC right)": png_with(RGB, IDAT=b"\x78\x9c" + b"\xff" * 40),
    "no IEND": assembled(RGB[:-1]),
    "IDAT chunks apart": assembled(
        [
            *RGB[:-2],
            (b"IDAT", zlib.compress(PIXELS)[:20]),
            (b"tEXt", b"k\0v"),
            (b"IDAT", zlib.compress(PIXELS)[20:]),
            RGB[-1],
        ]
    ),
    "IHDR not first": assembled([(b"tEXt", b"k\0v"), *RGB]),
    "a depth its colour type does not allow": png_with(
        RGB, IHDR=struct.pack(">IIBBBBB", W, H, 4, 2, 0, 0, 0)
    ),
    "a palette image without PLTE": png_with(
        [p for p in chunks(encoded("PNG", "P")) if p[0] != b"PLTE"]
    ),
}


@pytest.mark.parametrize("data", list(BROKEN_PNGS.values()), ids=list(BROKEN_PNGS))
def test_a_broken_png_is_refused(data: bytes):
    verdict = check_image(data, output_format="png", size="auto")
    assert isinstance(verdict, str)
    assert verdict.startswith("the image does not decode: ")


def test_a_jpeg_without_its_end_is_refused_and_trailing_bytes_are_tolerated():
    data = IMAGES["jpeg RGB"][1]
    assert data.endswith(b"\xff\xd9")
    assert isinstance(check_image(data[:-2], output_format="jpeg", size="auto"), str)
    assert check_image(data + b"\0" * 100, output_format="jpeg", size="auto") == (W, H)


def test_a_webp_longer_than_its_file_is_refused():
    data = IMAGES["webp lossy"][1]
    longer = data[:4] + struct.pack("<I", len(data)) + data[8:]
    assert isinstance(check_image(longer, output_format="webp", size="auto"), str)


def test_a_4k_png_of_the_simulator_passes():
    from simulator.images import ImageRenderer
    from simulator.validation import ImageRequest

    request = ImageRequest(
        endpoint="generations",
        model="gpt-image-2",
        prompt="a harbour at dawn",
        prompt_chars=17,
        n=1,
        width=3840,
        height=2160,
        size="3840x2160",
        quality="high",
        output_format="png",
        output_compression=None,
        background="transparent",
        moderation="auto",
        stream=True,
        partial_images=1,
    )
    renderer = ImageRenderer()
    final, preview = renderer.final(request, 0), renderer.partial(request, 0, 0)
    assert len(final) > 15_000_000  # padded to a real 4K PNG's size
    assert check_image(final, output_format="png", size="3840x2160") == (3840, 2160)
    assert check_image(preview, output_format="png", size="3840x2160") == (3840, 2160)
