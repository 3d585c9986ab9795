"""Image answers read as their bytes arrive, so that an image crosses the worker once.

A 3840x2160 PNG is about 21 MB of base64 in ONE SSE ``data:`` line, or one field of a JSON
answer. Read as text lines (httpx-sse), then parsed (json.loads), then decoded (b64decode), the
worker held it up to five times at once: the line's pieces and the joined line, the field's
value, the parsed string and b64decode's ASCII copy of it, and the image. Here:

- ``SseParser`` splits the stream into events from bytes exactly as httpx-sse does from text
  (CR, LF or CRLF line ends, comment lines, ``event``/``data``/``id``/``retry`` fields, one
  leading space stripped from a value, data lines joined with LF, an event dispatched at a
  blank line when it has anything, the last id kept across events), except that a ``data``
  value is handed on piece by piece, never held whole;
- ``JsonImageScanner`` reads those pieces as JSON just enough to know where it is (strings,
  nesting, keys) and copies everything to a small text, the skeleton, except the characters of
  each wanted ``b64_json`` string, which go to a ``Base64Sink`` and leave an empty string in
  the skeleton;
- ``Base64Sink`` decodes base64 in whole 4-character groups into an ``ImageBuffer`` as they
  come: an anonymous memory map of its own, grown in place (mremap), written to Blob from a
  view of it (storage.azure_blob), and handed back to the system whole when the last reference
  goes. Not the malloc heap: there, a freed 16 MB image raises glibc's mmap threshold, the next
  image grows by realloc copies on the heap, and the memory stays with the process.

The caller json.loads the skeleton (a few hundred bytes) and takes the image from the event
(``StreamedJson.image``). Peak: the image once, plus the piece being read.

What a good answer gives is what json.loads + b64decode gave. Bad ones fail as they did, with
errors of the same kinds (ValueError: the answer is unreadable): a control character or a bad
escape inside the string makes the text "not JSON" (as json.loads says), a non-ASCII character
or bad padding fails the decode (as b64decode does) when the image is taken, and only then, so
an event that is ignored stays ignored. Base64 with padding in the middle (never sent by a
route) decodes up to a padding that completes a group, as b64decode does; padding elsewhere in
the middle, which b64decode skips, may fail here (unreadable rather than a garbled image).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import mmap
import re
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Where a wanted string is: object keys and array indices from the top of the JSON text.
Path = tuple[str | int, ...]

# The field every image answer carries its image in.
B64_FIELD = "b64_json"
# A streamed event's image: the top-level field.
EVENT_IMAGE: Path = (B64_FIELD,)

_ALPHABET = (string.ascii_letters + string.digits + "+/=").encode()
_NOT_BASE64 = bytes(b for b in range(256) if b not in _ALPHABET)
_CONTROL = re.compile(rb"[\x00-\x1f]")
_STRUCTURE = re.compile(rb'[{}\[\]",:]')
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
# Keys are compared as raw bytes; a longer one is no key we look for.
_KEY_MAX = 64


def _first(data: bytes, pos: int, one: bytes, other: bytes) -> int:
    """Where ``one`` or ``other`` first occurs in ``data`` from ``pos``, else its length: two
    memchr scans, which beat a regex character class by two orders of magnitude on the 21 MB
    of an image's line."""
    a, b = data.find(one, pos), data.find(other, pos)
    if a < 0:
        return len(data) if b < 0 else b
    return a if b < 0 else min(a, b)


def _string_end(data: bytes, pos: int) -> int:
    """Where the JSON string at ``pos`` ends or has an escape, else the length of ``data``."""
    return _first(data, pos, b'"', b"\\")


class ImageBuffer:
    """Bytes appended at the end, in an anonymous memory map (see the module docstring); only
    the pages written count in the process's memory, so the capacity reserved costs nothing.

        buffer = ImageBuffer()
        buffer.extend(piece)...
        store.put(name=..., data=buffer.view(), ...)   # no copy of the whole
    """

    # The first reservation: a 1024x1024 PNG fits; a 3840x2160 one grows in place 4 times.
    FIRST_CAPACITY = 2 * 1024 * 1024

    def __init__(self, data: bytes = b"") -> None:
        self._map = _anonymous_map(max(len(data), self.FIRST_CAPACITY))
        self._size = 0
        self.extend(data)

    def __len__(self) -> int:
        return self._size

    def extend(self, data: bytes) -> None:
        end = self._size + len(data)
        if end > len(self._map):
            self._grow(max(end, 2 * len(self._map)))
        self._map[self._size : end] = data
        self._size = end

    def view(self) -> memoryview:
        """The bytes so far, not copied; the buffer cannot grow while a view is held."""
        return memoryview(self._map)[: self._size]

    def _grow(self, capacity: int) -> None:
        try:
            self._map.resize(capacity)  # mremap on Linux: no copy, nothing resident added
        except (OSError, SystemError):  # where anonymous maps cannot be resized: copy once
            bigger = _anonymous_map(capacity)
            with memoryview(self._map) as old:
                bigger[: self._size] = old[: self._size]
            self._map.close()
            self._map = bigger


def _anonymous_map(size: int) -> mmap.mmap:
    """Private where the system says so: a shared anonymous map (Python's default) that grows
    in place faults (SIGBUS) past its first size, being backed by a shared memory object."""
    if hasattr(mmap, "MAP_PRIVATE"):
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    return mmap.mmap(-1, size)


class Base64Sink:
    """Base64 text in pieces of any length, decoded into ``data`` as whole 4-character groups
    arrive, as b64decode decodes the whole (characters outside the alphabet skipped). A fault
    is kept in ``error`` and raised by ``image()``, never by ``feed``."""

    def __init__(self) -> None:
        self.data = ImageBuffer()
        self.error: ValueError | None = None
        self._rest = b""
        self._ended = False  # a padded group came: b64decode stops there

    def feed(self, text: bytes) -> bool:
        """Decode what ``text`` completes; False when it held anything but base64 characters
        (skipped, as b64decode skips them; never in what a route sends)."""
        groups = text.translate(None, _NOT_BASE64)
        clean = len(groups) == len(text)
        if not clean and not text.isascii() and self.error is None:
            self.error = ValueError("string argument should contain only ASCII characters")
        if self.error is not None or self._ended:
            return clean
        groups = self._rest + groups
        whole = len(groups) - len(groups) % 4
        self._decode(groups[:whole])
        self._rest = groups[whole:]
        return clean

    def close(self) -> None:
        """The string ended: what is left must decode on its own (b64decode's padding rule)."""
        if self._rest:
            self._decode(self._rest)
        self._rest = b""

    def image(self) -> ImageBuffer:
        if self.error is not None:
            raise self.error
        return self.data

    def _decode(self, groups: bytes) -> None:
        if self.error is not None or self._ended or not groups:
            return
        try:
            self.data.extend(binascii.a2b_base64(groups))
        except binascii.Error as exc:
            self.error = exc
            return
        # A group that ends in padding ends the data for b64decode, whatever follows.
        self._ended = b"=" in groups and b"=" in groups[3::4]


@dataclass(slots=True)
class _Frame:
    is_object: bool
    key: str | None = None
    index: int = 0
    expecting_key: bool = True


_OUT, _STRING, _KEY, _TARGET = range(4)


class JsonImageScanner:
    """JSON text in pieces: the wanted strings decoded into Base64Sinks, everything else kept
    as ``skeleton``. It never raises: text that json.loads would refuse inside a wanted string
    sets ``invalid``; anything else wrong stays in the skeleton for json.loads to refuse."""

    def __init__(self, wanted: Callable[[Path], bool]) -> None:
        self.skeleton = bytearray()
        self.invalid: ValueError | None = None
        self._wanted = wanted
        self._images: dict[Path, Base64Sink] = {}
        self._frames: list[_Frame] = []
        self._mode = _OUT
        self._key = bytearray()
        self._escape: bytearray | None = None  # in a string: the escape read so far
        self._sink: Base64Sink | None = None

    def feed(self, piece: bytes) -> None:
        pos, end = 0, len(piece)
        while pos < end:
            if self._mode == _TARGET:
                pos = self._target(piece, pos)
            elif self._mode != _OUT:
                pos = self._string(piece, pos)
            else:
                found = _STRUCTURE.search(piece, pos)
                if found is None:
                    self.skeleton += piece[pos:]
                    return
                at = found.start()
                self.skeleton += piece[pos : at + 1]
                self._structure(piece[at])
                pos = at + 1

    def take(self, path: Path) -> Base64Sink | None:
        """The decoded string at ``path`` (the last one, as json.loads keeps the last of a
        repeated key), None when none was wanted there. Taken: the scanner no longer holds
        it, so a preview's memory goes with its upload, not with the next event."""
        return self._images.pop(path, None)

    def text(self) -> str:
        """The skeleton as json.loads should read it (undecodable UTF-8 replaced, as httpx
        decodes text)."""
        return self.skeleton.decode("utf-8", errors="replace")

    def _structure(self, char: int) -> None:
        frames = self._frames
        top = frames[-1] if frames else None
        if char == ord("{"):
            frames.append(_Frame(is_object=True))
        elif char == ord("["):
            frames.append(_Frame(is_object=False))
        elif char in (ord("}"), ord("]")):
            if frames:
                frames.pop()
        elif char == ord(","):
            if top is not None and top.is_object:
                top.expecting_key, top.key = True, None
            elif top is not None:
                top.index += 1
        elif char == ord(":"):
            if top is not None and top.is_object:
                top.expecting_key = False
        elif top is not None and top.is_object and top.expecting_key:  # a key begins
            self._mode, self._key = _KEY, bytearray()
        else:  # a string value begins
            path = tuple(f.key or "" if f.is_object else f.index for f in frames)
            if self._wanted(path):
                self._mode, self._sink = _TARGET, Base64Sink()
                self._images[path] = self._sink
            else:
                self._mode = _STRING

    def _string(self, piece: bytes, pos: int) -> int:
        """A string kept in the skeleton (a key is also collected, to know the path)."""
        if self._escape is not None:  # the character after a backslash: kept as it is
            self._escape = None
            self._keep_string(piece[pos : pos + 1])
            return pos + 1
        stop = _string_end(piece, pos)
        self._keep_string(piece[pos:stop])
        if stop == len(piece):
            return stop
        self.skeleton.append(piece[stop])
        if piece[stop] == _BACKSLASH:
            self._escape = bytearray()
            if self._mode == _KEY:
                self._key.append(_BACKSLASH)
        else:
            if self._mode == _KEY and self._frames:
                key = self._key.decode("utf-8", errors="replace")
                self._frames[-1].key = key if len(self._key) <= _KEY_MAX else None
            self._mode = _OUT
        return stop + 1

    def _keep_string(self, text: bytes) -> None:
        self.skeleton += text
        if self._mode == _KEY and len(self._key) <= _KEY_MAX:
            self._key += text[: _KEY_MAX + 1 - len(self._key)]

    def _target(self, piece: bytes, pos: int) -> int:
        """A wanted string: its characters go to the sink, the skeleton keeps ``""``."""
        assert self._sink is not None
        if self._escape is not None:
            return self._target_escape(piece, pos)
        stop = _string_end(piece, pos)
        text = piece[pos:stop]
        if not self._sink.feed(text) and self.invalid is None and _CONTROL.search(text):
            self.invalid = ValueError("Invalid control character in a b64_json string")
        if stop == len(piece):
            return stop
        if piece[stop] == _BACKSLASH:
            self._escape = bytearray()
        else:
            self.skeleton.append(_QUOTE)
            self._sink.close()
            self._mode, self._sink = _OUT, None
        return stop + 1

    def _target_escape(self, piece: bytes, pos: int) -> int:
        """An escape inside a wanted string (``\\/`` from some encoders), across pieces."""
        assert self._sink is not None
        assert self._escape is not None
        escape = self._escape
        want = 5 if escape[:1] == b"u" or (not escape and piece[pos : pos + 1] == b"u") else 1
        take = piece[pos : pos + want - len(escape)]
        escape += take
        if len(escape) < want:
            return pos + len(take)
        try:
            char: str = json.loads(b'"\\' + bytes(escape) + b'"')
        except ValueError as exc:
            self.invalid = self.invalid or exc
            char = ""
        self._sink.feed(char.encode("utf-8", "surrogatepass"))
        self._escape = None
        return pos + len(take)


class StreamedJson:
    """One JSON text fed in pieces: its skeleton, parsed, and its images, decoded as they came.

    answer = StreamedJson(lambda path: path == ("b64_json",))
    answer.feed(piece)...
    item = answer.loads()
    image = answer.image(item)
    """

    def __init__(self, wanted: Callable[[Path], bool]) -> None:
        self.scanner = JsonImageScanner(wanted)

    def feed(self, piece: bytes) -> None:
        self.scanner.feed(piece)

    def text(self) -> str:
        return self.scanner.text()

    def loads(self) -> Any:
        """The skeleton parsed; ValueError as json.loads would have raised on the whole text."""
        if self.scanner.invalid is not None:
            raise self.scanner.invalid
        return json.loads(self.text())

    def image(self, item: Mapping[str, Any], path: Path = EVENT_IMAGE) -> ImageBuffer:
        """The image of ``item`` (the parsed object ``path`` ends in): decoded as it arrived,
        or, when it was not a string there (a gateway's own shape), decoded as before.
        Raises ValueError, TypeError or KeyError for an image that cannot be read. Once per
        image: the event keeps nothing of it."""
        sink = self.scanner.take(path)
        if sink is not None and item[B64_FIELD] == "":
            return sink.image()
        return ImageBuffer(base64.b64decode(item[B64_FIELD]))


@dataclass
class SseEvent:
    """One dispatched event: its name (``message`` when it had no ``event:`` line, as
    httpx-sse names it) and its data, None when it had no ``data:`` line."""

    event: str
    data: StreamedJson | None

    def text(self) -> str:
        return self.data.text() if self.data is not None else ""


_FIELD_END = re.compile(rb"[:\r\n]")
_CR, _LF, _SPACE = ord("\r"), ord("\n"), ord(" ")
_NAME_MAX = 16  # longer than every field name we read: such a line is ignored
_SMALL_FIELDS = (b"event", b"id", b"retry")


class SseParser:
    """Server-sent events from bytes (see the module docstring); ``wanted`` says which strings
    of each event's JSON data are decoded as they arrive."""

    def __init__(self, wanted: Callable[[Path], bool] = lambda path: path == EVENT_IMAGE) -> None:
        self.wanted = wanted
        self._name = bytearray()  # the line's field name so far
        self._field: bytes | None = None  # the line's field, once its colon came
        self._value = bytearray()  # an event/id/retry value so far
        self._strip_space = False
        self._skip_lf = False  # a CR ended the last chunk: an LF opening the next is its pair
        self._event = ""
        self._data: StreamedJson | None = None
        self._last_id = ""
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> Iterator[SseEvent]:
        """The events ``chunk`` completes, each as soon as it is complete."""
        pos, end = 0, len(chunk)
        if self._skip_lf and end:
            self._skip_lf = False
            if chunk[0] == _LF:
                pos = 1
        while pos < end:
            if self._field is None:
                found = _FIELD_END.search(chunk, pos, pos + _NAME_MAX + 1)
                stop = found.start() if found is not None else _first(chunk, pos, b"\r", b"\n")
                if len(self._name) <= _NAME_MAX:
                    self._name += chunk[pos : min(stop, pos + _NAME_MAX + 1)]
                if stop == end:
                    return
                if chunk[stop] == ord(":"):
                    self._begin_value(bytes(self._name))
                    pos = stop + 1
                    continue
                if not self._name:
                    event = self._dispatch()
                    if event is not None:
                        yield event
                else:  # a field without a colon: its value is empty
                    self._begin_value(bytes(self._name))
                    self._end_line()
            else:
                stop = _first(chunk, pos, b"\r", b"\n")
                self._value_piece(chunk[pos:stop])
                if stop == end:
                    return
                self._end_line()
            pos = stop + 1
            if chunk[stop] == _CR:
                if pos < end:
                    pos += chunk[pos] == _LF
                else:
                    self._skip_lf = True

    def _begin_value(self, name: bytes) -> None:
        self._field = name if len(name) <= _NAME_MAX else b"?"
        self._strip_space = True
        if name == b"data":
            if self._data is None:
                self._data = StreamedJson(self.wanted)
            else:  # data lines are joined with LF
                self._data.feed(b"\n")

    def _value_piece(self, piece: bytes) -> None:
        if not piece:
            return
        if self._strip_space:
            self._strip_space = False
            if piece[0] == _SPACE:
                piece = piece[1:]
        if self._field == b"data":
            assert self._data is not None
            self._data.feed(piece)
        elif self._field in _SMALL_FIELDS:
            self._value += piece
        # comments and unknown fields: dropped as they come

    def _end_line(self) -> None:
        name, value = self._field, self._value.decode("utf-8", errors="replace")
        if name == b"event":
            self._event = value
        elif name == b"id":
            if "\0" not in value:
                self._last_id = value
        elif name == b"retry":
            with contextlib.suppress(ValueError):
                self._retry = int(value)
        self._name, self._field, self._value = bytearray(), None, bytearray()

    def _dispatch(self) -> SseEvent | None:
        if not self._event and self._data is None and not self._last_id and self._retry is None:
            return None
        event = SseEvent(event=self._event or "message", data=self._data)
        self._event, self._data, self._retry = "", None, None  # the last id is kept (the spec)
        return event
