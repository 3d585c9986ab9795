"""Checking the final image before it is stored: it must decode, in the format and size asked."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def check_image(data: bytes, *, output_format: str, size: str) -> tuple[int, int] | str:
    """``(width, height)`` when the image is what was asked, else why it is not."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            found_format, width, height = image.format, image.width, image.height
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        return f"the image does not decode: {type(exc).__name__}"
    if found_format != PIL_FORMATS[output_format]:
        return f"asked for {output_format}, got {found_format}"
    if size != "auto" and f"{width}x{height}" != size:
        return f"asked for {size}, got {width}x{height}"
    return width, height
