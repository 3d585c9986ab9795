"""Sanitizing what a route said before it is stored or shown: a pure rule.

Upstream text (an error's message, type, code, param, a request id, header values) goes to
status answers, metadata.json, progress records and logs. A route may echo what it was sent:
OpenAI's 401 shows the key masked (``sk-proj-****wXyZ``), a moderation message may quote the
prompt, cut after its first N characters. Two steps: ``scrub`` removes anything that looks like a
key where the failure is made (nothing of the attempt is known there); ``redact``, the rule the
attempt applies with its own key and prompt, removes every trace of them, whole or in part.
A link in upstream text keeps no query string, fragment or user info (``bare_urls``): that is
where a signed link carries its signature.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from typing import Any

from rules.outcome import Failure

# The longest upstream text looked at (the rest is dropped), and the longest kept after it.
UPSTREAM_TEXT_MAX = 4000
MESSAGE_MAX = 500
KEY_MARK = "[redacted key]"
PROMPT_MARK = "[redacted prompt]"
# A key piece this long is the key's, wherever it appears; a head or tail piece this long is,
# next to a mask (``*``, ``...``, ``…``), a masked echo, and so is a tail ending a word. Prompt
# pieces: a head or tail this long is a truncated echo; any piece this long is an echo.
_KEY_PIECE = 8
# A key or prompt shorter than this is not looked for.
_SHORTEST = 3
_KEY_EDGE = 4
_PROMPT_EDGE = 8
_PROMPT_PIECE = 16
_KEY_LIKE = re.compile(r"\b(sk-|sess-|key-)[\w*.\u2026\-]{4,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[\w\-.~+/=]{8,}")
# A key and what a route wraps it in when it shows it masked.
_TOKEN = re.compile(r"[\w\-*.\u2026~+/=]+")
_KEY_CHAR = re.compile(r"[\w\-]")
_MASK = re.compile(r"\*|\.\.\.|\u2026")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>(){}`]+")


@dataclass(frozen=True)
class Secrets:
    """What the attempt sent that upstream text must never carry on: the route's key or token
    (the auth header's value, and the token alone after ``Bearer``) and the job's prompt."""

    keys: tuple[str, ...] = field(default=(), repr=False)
    prompt: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, auth: tuple[str, str] | None, prompt: str | None) -> Secrets:
        keys: list[str] = []
        if auth is not None:
            value = auth[1].strip()
            scheme, _, token = value.partition(" ")
            if token.strip() and scheme.lower() in ("bearer", "basic"):
                value = token.strip()  # the scheme's name is no secret
            keys.append(value)
        return cls(keys=tuple(key for key in keys if key), prompt=prompt or None)


def redact(text: str, secrets: Secrets) -> str:
    """``text`` from upstream without the route's key or the job's prompt, whole or in part.

    The rule, for the key: the whole key anywhere; any piece of it of 8 characters or more;
    its first or last 4 characters or more where a mask (``*``, ``...``, ``…``) sits in the same
    word, as routes show keys (``sk-...abcd``), and its last 4 or more at the end of any word
    (``ending in abcd``); the whole word such a piece sits in is replaced.
    For the prompt (compared without case, any run of white space as one space): the whole
    prompt; its first or last 8 characters or more (an echo cut short); any piece of 16 or
    more. A key or prompt shorter than those lengths counts only whole, as a word of its own;
    one of 1 or 2 characters is not looked for. Then anything key-like (``sk-...``,
    ``Bearer ...``) goes too. Text past 4000 characters is not looked at, and the result is
    cut to 500.
    """
    text = text[:UPSTREAM_TEXT_MAX]
    spans: list[tuple[int, int, str]] = []
    for key in secrets.keys:
        for start, end in _pieces(text, key, piece=_KEY_PIECE, edge=_KEY_EDGE, fold=False):
            spans.append((*_key_word(text, start, end), KEY_MARK))
    if secrets.prompt:
        for start, end in _pieces(
            text, secrets.prompt, piece=_PROMPT_PIECE, edge=_PROMPT_EDGE, fold=True
        ):
            spans.append((start, end, PROMPT_MARK))
    out: list[str] = []
    at = 0
    for start, end, mark in sorted(spans):
        if end <= at:
            continue
        if start >= at:
            out.append(text[at:start])
            out.append(mark)
        at = end
    out.append(text[at:])
    return scrub("".join(out))[:MESSAGE_MAX]


def redact_failure(failure: Failure, secrets: Secrets) -> Failure:
    """The failure with every text that may have come from upstream redacted."""

    def clean(value: str | None) -> str | None:
        return None if value is None else redact(value, secrets)

    return replace(
        failure,
        message=redact(failure.message, secrets),
        error_type=clean(failure.error_type),
        code=clean(failure.code),
        param=clean(failure.param),
        request_id=clean(failure.request_id),
    )


def redact_json(value: Any, secrets: Secrets) -> Any:
    """Every string inside a JSON-like value (usage, headers) redacted; the rest as it is."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {key: redact_json(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(item, secrets) for item in value]
    return value


def scrub(message: str) -> str:
    """Anything key-like out of a route's text, before anything of the attempt is known: keys
    (``sk-...``, ``Bearer ...``), and what a link may carry that is a credential (its query
    string and fragment, a SAS signature or a ``?code=``, and user info): ``bare_urls``."""
    return scrub_keys(message[:UPSTREAM_TEXT_MAX])


def scrub_keys(text: str) -> str:
    """Anything key-like (``sk-...``, ``Bearer ...``, a link's query string, fragment and user
    info) out of ``text``, whatever its length: for text of our own too, such as what the app's
    telemetry exports (telemetry.py)."""
    return bare_urls(_BEARER.sub(r"\1[redacted]", _KEY_LIKE.sub(r"\1[redacted]", text)))


def bare_urls(text: str) -> str:
    """Every URL in ``text`` cut to its scheme, host, port and path. Idempotent."""
    return _URL.sub(_bare_url, text)


def _bare_url(match: re.Match[str]) -> str:
    url, trail = match.group(0), ""
    # A URL ends where prose goes on: a full stop or comma after it is the sentence's.
    while url and url[-1] in ".,;:!?":
        url, trail = url[:-1], url[-1] + trail
    scheme, _, rest = url.partition("://")
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rsplit('@', 1)[-1]}{slash}{path}{trail}"


def _key_word(text: str, start: int, end: int) -> tuple[int, int]:
    """The whole words a key piece touches (``sk-...abcd`` goes whole, not just ``abcd``);
    a sentence's full stop after it stays."""
    begin, finish = start, end
    for word in _TOKEN.finditer(text):
        if word.end() > start and word.start() < end:
            begin, finish = min(begin, word.start()), max(finish, word.end())
    while finish > end and text[finish - 1] == ".":
        finish -= 1
    return begin, finish


def _pieces(text: str, secret: str, *, piece: int, edge: int, fold: bool) -> list[tuple[int, int]]:
    """Where in ``text`` pieces of ``secret`` stand that count as an echo (see ``redact``)."""
    norm_text, where = _normalized(text, fold=fold)
    norm_secret = _normalized_secret(secret, fold)
    if len(norm_secret) < _SHORTEST:
        return []  # "a", "ok": nothing to tell from chance, nothing to hide
    found: list[tuple[int, int]] = []
    if len(norm_secret) < edge:
        # Too short to tell a piece from chance: only the whole of it, as a word.
        word = re.compile(rf"(?<!\w){re.escape(norm_secret)}(?!\w)")
        found = [m.span() for m in word.finditer(norm_text)]
    else:
        grams = _grams(norm_secret, edge)
        i = 0
        while i < len(norm_text):
            if norm_text[i : i + edge] not in grams:
                i += 1
                continue
            length = _longest_piece_at(norm_text, i, norm_secret)
            if length < piece and norm_text[i : i + length] != norm_secret:
                # Not long enough to be the secret's wherever it stands: a head or tail of it,
                # where the rule takes one (a prompt always, a key next to a mask).
                head, tail = _edge_pieces_at(norm_text, i, norm_secret, edge, length)
                if not fold:
                    # A key's head is mostly its public prefix (``sk-proj-``): it counts next
                    # to a mask only; its tail (what routes show) also at the end of a word.
                    masked = _masked(text, where[i], where[i] + max(head, tail, 1))
                    ends_word = tail and not _KEY_CHAR.match(text, where[i] + tail)
                    head = head if masked else 0
                    tail = tail if masked or ends_word else 0
                length = max(head, tail)
            if length:
                found.append((i, i + length))
                i += length
            else:
                i += 1
    return [(where[a], where[b - 1] + 1) for a, b in found]


# A job's secrets are looked for in several texts of one attempt: prepared once.
@functools.lru_cache(maxsize=16)
def _normalized_secret(secret: str, fold: bool) -> str:
    return _normalized(secret.strip(), fold=fold)[0]


@functools.lru_cache(maxsize=16)
def _grams(secret: str, length: int) -> frozenset[str]:
    return frozenset(secret[i : i + length] for i in range(len(secret) - length + 1))


def _longest_piece_at(text: str, start: int, secret: str) -> int:
    """The length of the longest run of ``text`` from ``start`` that occurs in ``secret``
    (a run that occurs has every shorter run from the same start occur too)."""
    low, high = 0, min(len(secret), len(text) - start)
    while low < high:
        mid = (low + high + 1) // 2
        if text[start : start + mid] in secret:
            low = mid
        else:
            high = mid - 1
    return low


def _edge_pieces_at(text: str, start: int, secret: str, edge: int, longest: int) -> tuple[int, int]:
    """The lengths of the longest head and the longest tail of ``secret`` (``edge`` long or
    more, else 0) that ``text`` has from ``start``; ``longest`` bounds both."""
    head = 0
    while head < longest and text[start + head] == secret[head]:
        head += 1
    tail = next(
        (n for n in range(longest, edge - 1, -1) if secret.endswith(text[start : start + n])), 0
    )
    return (head if head >= edge else 0), tail


def _masked(text: str, start: int, end: int) -> bool:
    """Whether the word holding ``text[start:end]`` also holds a mask."""
    begin, finish = _key_word(text, start, end)
    return bool(_MASK.search(text[begin:start] + text[end:finish]))


def _normalized(text: str, *, fold: bool) -> tuple[str, list[int]]:
    """``text`` compared as the rule says, and where each of its characters came from."""
    if not fold:
        return text, list(range(len(text)))
    chars: list[str] = []
    where: list[int] = []
    for index, char in enumerate(text):
        if char.isspace():
            if chars and chars[-1] == " ":
                continue
            char = " "
        else:
            lower = char.lower()
            char = lower if len(lower) == 1 else char
        chars.append(char)
        where.append(index)
    return "".join(chars), where
