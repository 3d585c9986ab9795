"""Real PNG/JPEG/WebP pictures for simulated generations, cheap enough for 50 streams at once.

A client under test decodes, stores and measures these bytes, so they must be real images of exactly
the requested size and format (with real transparency when asked), deterministic for the same
inputs, and about as large as the real service's. Drawing and encoding every picture at full size
would cost seconds of CPU per large image (docs/reference/gpt-image-2-api.md, "What images cost to
make locally"), so:

- the scene is drawn small (a few hundred pixels on the long edge) and scaled up: finals with
  bilinear filtering (smooth), partials from a much smaller drawing with nearest-neighbour
  filtering (blocky, so visibly rougher than the final);
- PNG is written at zlib level 1 with the RLE strategy, which is fast on such smooth pictures;
- a smooth picture compresses to far fewer bytes than a real photo, so PNGs are padded with a
  private ancillary chunk (``siMp``, ignored by every decoder) up to ``png_bytes_per_pixel``
  (1.9 by default: the real 1024x1024 PNG is about 2 MB, the 3840x2160 one about 15.7 MB, which
  is about 21 MB of base64). Memory and transfer tests then see real payload sizes;
- results are cached (LRU bounded by bytes) and a picture being rendered is rendered once even
  when many threads ask for it at the same time.

The prompt only seeds the scene through a hash and is never kept.
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageOps

from simulator.validation import ImageRequest

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
# Long edge (pixels) of the small drawing a final image is scaled up from, per quality.
_FINAL_DRAW_EDGE = {"low": 192, "medium": 256, "high": 320}
# Long edge of partial k's drawing: 16, 32, 64 pixels, so later partials look sharper.
_PARTIAL_DRAW_EDGE = (16, 32, 64)
_Z_RLE = 3
_PAD_CHUNK = b"siMp"
_PAD_BLOCK_BYTES = 1 << 20


@dataclass
class _Pending:
    """A render in progress that other threads wait for instead of rendering it again."""

    done: threading.Event = field(default_factory=threading.Event)
    value: bytes | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int


class ImageRenderer:
    """Renders the final and partial images of a request, cached and thread-safe.

    ``seed`` is the simulator's seed: the same (prompt, seed, size, quality, format, background,
    compression, index, partial index) always gives the same bytes.
    """

    def __init__(
        self,
        max_cache_bytes: int = 256 * 2**20,
        seed: int = 0,
        *,
        png_bytes_per_pixel: float = 1.9,
    ) -> None:
        if max_cache_bytes < 0:
            raise ValueError(f"max_cache_bytes must be >= 0, got {max_cache_bytes}")
        if png_bytes_per_pixel < 0:
            raise ValueError(f"png_bytes_per_pixel must be >= 0, got {png_bytes_per_pixel}")
        self.max_cache_bytes = max_cache_bytes
        self.seed = seed
        self.png_bytes_per_pixel = png_bytes_per_pixel
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._cache_bytes = 0
        self._pending: dict[tuple[object, ...], _Pending] = {}
        self._hits = 0
        self._misses = 0
        self._pad_block = random.Random(seed).randbytes(_PAD_BLOCK_BYTES)

    # --- public API ---------------------------------------------------------------------------

    def final(self, request: ImageRequest, index: int) -> bytes:
        """The encoded final image number ``index`` (0-based, < n) of ``request``."""
        if not 0 <= index < request.n:
            raise ValueError(f"image index must be in [0, {request.n}), got {index}")
        return self._get(
            self._key(request, index, None), lambda: self._render(request, index, None)
        )

    def partial(self, request: ImageRequest, index: int, partial_index: int) -> bytes:
        """The encoded partial image ``partial_index`` (0-based) of image ``index``."""
        if not 0 <= index < request.n:
            raise ValueError(f"image index must be in [0, {request.n}), got {index}")
        if not 0 <= partial_index < len(_PARTIAL_DRAW_EDGE):
            raise ValueError(f"partial index must be in [0, 3), got {partial_index}")
        key = self._key(request, index, partial_index)
        return self._get(key, lambda: self._render(request, index, partial_index))

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._cache), self._cache_bytes)

    # --- cache --------------------------------------------------------------------------------

    def _key(
        self, request: ImageRequest, index: int, partial_index: int | None
    ) -> tuple[object, ...]:
        return (
            _scene_digest(request.prompt, self.seed, index),
            request.width,
            request.height,
            request.quality,
            request.output_format,
            request.background,
            request.output_compression,
            partial_index,
        )

    def _get(self, key: tuple[object, ...], make: Callable[[], bytes]) -> bytes:
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                self._hits += 1
                return cached
            pending = self._pending.get(key)
            owner = pending is None
            if pending is None:
                pending = _Pending()
                self._pending[key] = pending
                self._misses += 1
            else:
                self._hits += 1
        if not owner:
            pending.done.wait()
            if pending.error is not None:
                raise RuntimeError("rendering this image failed in another thread") from (
                    pending.error
                )
            assert pending.value is not None
            return pending.value
        try:
            value = make()
        except BaseException as exc:
            pending.error = exc
            with self._lock:
                del self._pending[key]
            pending.done.set()
            raise
        with self._lock:
            del self._pending[key]
            self._store(key, value)
        pending.value = value
        pending.done.set()
        return value

    def _store(self, key: tuple[object, ...], value: bytes) -> None:
        """Insert under the lock, then drop least recently used entries beyond the budget."""
        if len(value) > self.max_cache_bytes:
            return
        self._cache[key] = value
        self._cache_bytes += len(value)
        while self._cache_bytes > self.max_cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cache_bytes -= len(dropped)

    # --- drawing and encoding -----------------------------------------------------------------

    def _render(self, request: ImageRequest, index: int, partial_index: int | None) -> bytes:
        transparent = request.background == "transparent" and request.output_format != "jpeg"
        if partial_index is None:
            edge = _FINAL_DRAW_EDGE.get(request.quality, 256)
            resample = Image.Resampling.BILINEAR
        else:
            edge = _PARTIAL_DRAW_EDGE[partial_index]
            resample = Image.Resampling.NEAREST
        rng = random.Random(_scene_digest(request.prompt, self.seed, index))
        small = _draw_scene(rng, request.width, request.height, edge, transparent=transparent)
        picture = small.resize((request.width, request.height), resample)
        return self._encode(picture, request)

    def _encode(self, picture: Image.Image, request: ImageRequest) -> bytes:
        buffer = io.BytesIO()
        fmt = request.output_format
        quality = 100 if request.output_compression is None else request.output_compression
        if fmt == "png":
            picture.save(buffer, "PNG", compress_level=1, compress_type=_Z_RLE)
            return self._pad_png(buffer.getvalue(), request.width * request.height)
        if fmt == "jpeg":
            picture.convert("RGB").save(buffer, "JPEG", quality=quality)
        elif fmt == "webp":
            picture.save(buffer, "WEBP", quality=quality, method=0)
        else:
            raise ValueError(f"unsupported output format {fmt!r}")
        return buffer.getvalue()

    def _pad_png(self, data: bytes, pixels: int) -> bytes:
        """Add an ignorable private chunk before IEND so the file is as large as a real one."""
        missing = int(self.png_bytes_per_pixel * pixels) - len(data) - 12
        if missing <= 0:
            return data
        repeats, rest = divmod(missing, _PAD_BLOCK_BYTES)
        payload = self._pad_block * repeats + self._pad_block[:rest]
        crc = zlib.crc32(payload, zlib.crc32(_PAD_CHUNK))
        chunk = struct.pack(">I", len(payload)) + _PAD_CHUNK + payload + struct.pack(">I", crc)
        iend = 12  # the IEND chunk: length, type, crc
        return b"".join((data[:-iend], chunk, data[-iend:]))


def _scene_digest(prompt: str, seed: int, index: int) -> str:
    """The scene's identity: a hash, so neither the cache nor the RNG holds the prompt text."""
    material = f"{seed}\x00{index}\x00{prompt}".encode()
    return hashlib.sha256(material).hexdigest()


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _draw_scene(
    rng: random.Random, width: int, height: int, edge: int, *, transparent: bool
) -> Image.Image:
    """A small picture with the aspect of ``width`` x ``height``: a gradient and a few shapes.

    The same ``rng`` state gives the same scene at any ``edge``, so a partial is a rougher view
    of its final, as with the real service.
    """
    scale = edge / max(width, height)
    small_w = max(2, round(width * scale))
    small_h = max(2, round(height * scale))
    low, high = _colour(rng), _colour(rng)
    angle = rng.choice((0, 90, 180, 270))
    shapes = [
        (
            rng.choice(("ellipse", "rectangle", "triangle")),
            (rng.random(), rng.random(), rng.uniform(0.1, 0.45), rng.uniform(0.1, 0.45)),
            _colour(rng),
        )
        for _ in range(rng.randint(3, 6))
    ]

    gradient = Image.linear_gradient("L").rotate(angle).resize((small_w, small_h))
    picture = ImageOps.colorize(gradient, low, high)
    if transparent:
        picture = picture.convert("RGBA")
        picture.putalpha(0)
    draw = ImageDraw.Draw(picture)
    for kind, (cx, cy, rx, ry), colour in shapes:
        box = (
            (cx - rx) * small_w,
            (cy - ry) * small_h,
            (cx + rx) * small_w,
            (cy + ry) * small_h,
        )
        fill = (*colour, 255) if transparent else colour
        if kind == "ellipse":
            draw.ellipse(box, fill=fill)
        elif kind == "rectangle":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon(
                [(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) / 2, box[1])], fill
            )
    return picture
