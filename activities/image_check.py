"""Checking the final image before it is stored: the format and size asked, and whole.

Read from the image's own structure in bounded memory, never decoded into pixels (a 3840x2160
RGBA image is 33 MB of pixels, twice its PNG) and never copied (a memoryview over the buffer
the stream was decoded into). What is checked, per format:

- PNG: the signature; IHDR first, with a bit depth, colour type, compression, filter and
  interlace method the format allows; every chunk inside the file with its CRC right; PLTE
  before IDAT for a palette image; IDAT chunks consecutive; IEND present. Then the pixel data
  is inflated 256 KiB at a time and thrown away: its zlib stream must end, and give exactly
  the bytes the header's size needs (a truncated, corrupt or oversized stream is refused).
- JPEG: SOI; every marker segment before the scan inside the file; a frame header (SOF) with
  the size; a scan (SOS); an EOI after the scan within the last KiB (a truncated file has none).
- WebP: RIFF and WEBP, the RIFF size within the file; every chunk inside it; the size from
  the first VP8 (keyframe start code), VP8L (signature) or VP8X (canvas) chunk, and for VP8X
  an image chunk (VP8, VP8L or ANMF) present.

Compared with PIL's verify(), used before: the same header facts and, for PNG, the same CRCs,
plus the inflate of PNG's pixel data (PIL's verify never inflated it) and the end of JPEG and
WebP files (PIL read only their headers). Not checked, by either: the JPEG scan's and the WebP
bitstream's entropy-coded data, and whether pixel rows carry valid PNG filter bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

# The names PIL gives the formats: messages say "asked for png, got JPEG" as they did.
FORMAT_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bit depths each PNG colour type allows, and its samples per pixel.
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7: (x0, y0, dx, dy) of each pass.
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_INFLATE_PIECE = 256 * 1024
# JPEG markers without a length, and the frame headers (SOF0-15 but DHT, JPG and DAC).
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_JPEG_SOF = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}
_JPEG_EOI_WITHIN = 1024


class Unfit(Exception):
    """Why the image is not what was asked (the message)."""


def check_image(
    data: bytes | memoryview, *, output_format: str, size: str
) -> tuple[int, int] | str:
    """``(width, height)`` when the image is what was asked, else why it is not."""
    view = memoryview(data).cast("B")
    try:
        found = sniff(view)
        if found is None:
            raise Unfit("the image does not decode: not a PNG, JPEG or WebP file")
        if found != FORMAT_NAMES[output_format]:
            return f"asked for {output_format}, got {found}"
        width, height = {"PNG": _png, "JPEG": _jpeg, "WEBP": _webp}[found](view)
    except Unfit as exc:
        return str(exc)
    finally:
        view.release()
    if size != "auto" and f"{width}x{height}" != size:
        return f"asked for {size}, got {width}x{height}"
    return width, height


def sniff(view: memoryview) -> str | None:
    """The format the image's first bytes say (PIL's name), None for none of ours."""
    head = bytes(view[:12])
    if head.startswith(PNG_SIGNATURE):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _broken(what: str) -> Unfit:
    return Unfit(f"the image does not decode: {what}")


# --- PNG ---------------------------------------------------------------------------------------


def _png_chunks(view: memoryview) -> Iterator[tuple[bytes, memoryview]]:
    """Each chunk's type and data, its CRC checked, up to and with IEND."""
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(view):
            raise _broken("PNG truncated (no IEND)")
        length, kind = struct.unpack_from(">I4s", view, pos)
        end = pos + 8 + length + 4
        if length > 0x7FFFFFFF or end > len(view):
            raise _broken(f"PNG truncated (in a {kind!r} chunk)")
        (crc,) = struct.unpack_from(">I", view, end - 4)
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            raise _broken(f"PNG chunk {kind!r} has a bad CRC")
        yield kind, view[pos + 8 : end - 4]
        if kind == b"IEND":
            return
        pos = end


def _png(view: memoryview) -> tuple[int, int]:
    chunks = _png_chunks(view)
    kind, header = next(chunks)
    if kind != b"IHDR" or len(header) != 13:
        raise _broken("PNG without IHDR first")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", header
    )
    if width == 0 or height == 0 or depth not in _PNG_DEPTHS.get(colour, ()):
        raise _broken(f"PNG header {width}x{height}, depth {depth}, colour type {colour}")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise _broken("PNG header with an unknown method")
    expected = _png_pixel_bytes(width, height, depth * _PNG_SAMPLES[colour], interlace == 1)
    inflater = zlib.decompressobj()
    inflated, palette, idat_state = 0, False, 0  # 0 before IDAT, 1 in the run, 2 after it
    for kind, body in chunks:
        if kind == b"PLTE":
            palette = True
        if kind != b"IDAT":
            idat_state = 2 if idat_state else 0
            continue
        if idat_state == 2:
            raise _broken("PNG with IDAT chunks apart")
        if colour == 3 and not palette:
            raise _broken("PNG palette image without PLTE before its data")
        idat_state = 1
        inflated += _inflate(inflater, body, expected - inflated)
    if not inflater.eof or inflated != expected:
        raise _broken(f"PNG pixel data is {inflated} bytes of the {expected} its size needs")
    return width, height


def _png_pixel_bytes(width: int, height: int, bits: int, interlaced: bool) -> int:
    """The filtered scanlines' bytes: one filter byte per row, then the row's packed bits."""
    if not interlaced:
        return height * (1 + (width * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        columns = (width - x0 + dx - 1) // dx if width > x0 else 0
        rows = (height - y0 + dy - 1) // dy if height > y0 else 0
        if columns and rows:
            total += rows * (1 + (columns * bits + 7) // 8)
    return total


def _inflate(inflater: zlib._Decompress, body: memoryview, room: int) -> int:
    """Inflate ``body`` into nothing, a piece at a time (never more than one piece of input or
    output held); the bytes it gave. More than ``room``: refused (no zlib bomb is inflated)."""
    given = 0
    for start in range(0, len(body), _INFLATE_PIECE):
        if inflater.eof:
            break
        piece: bytes | memoryview = body[start : start + _INFLATE_PIECE]
        while piece:
            try:
                given += len(inflater.decompress(piece, _INFLATE_PIECE))
            except zlib.error as exc:
                raise _broken(f"PNG pixel data is corrupt ({exc})") from None
            if given > room:
                raise _broken("PNG pixel data is larger than its size needs")
            piece = inflater.unconsumed_tail
    return given


# --- JPEG --------------------------------------------------------------------------------------


def _jpeg(view: memoryview) -> tuple[int, int]:
    pos, size = 2, None
    while True:
        while pos + 1 < len(view) and view[pos] == 0xFF and view[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 2 > len(view) or view[pos] != 0xFF:
            raise _broken("JPEG truncated or malformed before its scan")
        marker = view[pos + 1]
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if pos + 4 > len(view):
            raise _broken("JPEG truncated before its scan")
        (length,) = struct.unpack_from(">H", view, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > len(view):
            raise _broken("JPEG truncated before its scan")
        if marker in _JPEG_SOF and length >= 7:
            height, width = struct.unpack_from(">HH", view, pos + 5)
            size = (width, height)
        if marker == 0xDA:  # start of scan: the headers are done
            break
        if marker == 0xD9:
            raise _broken("JPEG ends before its scan")
        pos = end
    if size is None or 0 in size:
        raise _broken("JPEG without a frame size")
    tail_from = max(end, len(view) - _JPEG_EOI_WITHIN)
    if bytes(view[tail_from:]).rfind(b"\xff\xd9") < 0:
        raise _broken("JPEG truncated (no end of image)")
    return size


# --- WebP --------------------------------------------------------------------------------------


def _webp(view: memoryview) -> tuple[int, int]:
    (riff_size,) = struct.unpack_from("<I", view, 4)
    end = 8 + riff_size
    if riff_size < 4 or end > len(view):
        raise _broken("WebP truncated (shorter than its RIFF size)")
    pos, size, has_image, first = 12, None, False, True
    while pos < end:
        if pos + 8 > end:
            raise _broken("WebP truncated in a chunk header")
        kind, length = struct.unpack_from("<4sI", view, pos)
        body = pos + 8
        if body + length > end:
            raise _broken(f"WebP truncated (in a {kind!r} chunk)")
        payload = view[body : body + length]
        if first:
            size = _webp_size(kind, payload)
            first = False
        has_image = has_image or kind in (b"VP8 ", b"VP8L", b"ANMF")
        pos = body + length + (length & 1)
    if size is None or not has_image:
        raise _broken("WebP without an image")
    return size


def _webp_size(kind: bytes, payload: memoryview) -> tuple[int, int]:
    if kind == b"VP8 ":
        if len(payload) < 10 or payload[0] & 1 or bytes(payload[3:6]) != b"\x9d\x01\x2a":
            raise _broken("WebP VP8 chunk without a keyframe header")
        width, height = struct.unpack_from("<HH", payload, 6)
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L":
        if len(payload) < 5 or payload[0] != 0x2F:
            raise _broken("WebP VP8L chunk without its signature")
        (bits,) = struct.unpack_from("<I", payload, 1)
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8X":
        if len(payload) < 10:
            raise _broken("WebP VP8X chunk too short")
        width = int.from_bytes(payload[4:7], "little") + 1
        height = int.from_bytes(payload[7:10], "little") + 1
        return width, height
    raise _broken(f"WebP starting with a {kind!r} chunk")
