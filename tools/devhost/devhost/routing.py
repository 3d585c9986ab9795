"""HTTP trigger route templates, matched the way the Functions host (ASP.NET Core routing) does.

A Python v2 app declares `@app.route(route="products/{category:alpha}/{id:int?}")`; the host turns
that into an ASP.NET Core route template under the `api` prefix. This module is the pure part of
that: parsing a template, matching a request path against it, and ordering several templates so the
most specific one wins. No I/O, so every rule is unit-tested on its own.

Rules kept from ASP.NET Core routing:
- literal segments match case-insensitively; parameters keep the request's spelling;
- `{name}` matches one non-empty segment, `{name?}` may be left out (only at the end), `{*rest}`
  (or `{**rest}`) takes the rest of the path, slashes included, and may be empty;
- constraints after `:` (`int`, `long`, `bool`, `alpha`, `guid`, `double`, `float`, `decimal`,
  `datetime`, `min(n)`, `max(n)`, `range(a,b)`, `minlength(n)`, `maxlength(n)`, `length(n)`,
  `length(a,b)`, `regex(...)`), several may be chained (`{id:int:min(1)}`);
- a parameter left out arrives as None (the Python worker gives the function no value for it);
- literals beat constrained parameters beat plain parameters beat catch-alls, segment by segment.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Generic, TypeVar

__all__ = ["RouteMatch", "RouteTable", "RouteTemplate", "RouteTemplateError"]

T = TypeVar("T")


class RouteTemplateError(ValueError):
    """A route template the host would refuse; carries the template."""

    def __init__(self, template: str, reason: str) -> None:
        super().__init__(f"invalid route template {template!r}: {reason}")
        self.template = template


def _is_int(value: str, low: int, high: int) -> bool:
    if not re.fullmatch(r"[+-]?\d+", value):
        return False
    return low <= int(value) <= high


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.strip().lower() not in {"nan", "inf", "-inf", "+inf", "infinity", "-infinity"}


def _is_decimal(value: str) -> bool:
    try:
        Decimal(value)
    except InvalidOperation:
        return False
    return _is_float(value)


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value.strip("{}()"))
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)

_SIMPLE_CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "int": lambda v: _is_int(v, *_INT32),
    "long": lambda v: _is_int(v, *_INT64),
    "bool": lambda v: v.lower() in {"true", "false"},
    "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
    "guid": _is_guid,
    "double": _is_float,
    "float": _is_float,
    "decimal": _is_decimal,
    "datetime": _is_datetime,
}


def _int_args(template: str, name: str, args: str, count: int) -> list[int]:
    parts = [p.strip() for p in args.split(",")]
    if len(parts) != count or not all(re.fullmatch(r"-?\d+", p) for p in parts):
        raise RouteTemplateError(template, f"constraint {name}({args}) needs {count} integer(s)")
    return [int(p) for p in parts]


def _constraint(template: str, text: str) -> Callable[[str], bool]:
    """Build the check for one constraint such as `int`, `min(1)` or `regex(^a+$)`."""
    m = re.fullmatch(r"(\w+)(?:\((.*)\))?", text, flags=re.DOTALL)
    if m is None:
        raise RouteTemplateError(template, f"unreadable constraint {text!r}")
    name, args = m.group(1).lower(), m.group(2)
    if args is None:
        if name in _SIMPLE_CONSTRAINTS:
            return _SIMPLE_CONSTRAINTS[name]
        if name == "required":
            return lambda v: v != ""
        raise RouteTemplateError(template, f"unknown constraint {text!r}")
    if name == "regex":
        pattern = re.compile(args, flags=re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    if name == "min":
        (low,) = _int_args(template, name, args, 1)
        return lambda v: _is_int(v, *_INT64) and int(v) >= low
    if name == "max":
        (high,) = _int_args(template, name, args, 1)
        return lambda v: _is_int(v, *_INT64) and int(v) <= high
    if name == "range":
        low, high = _int_args(template, name, args, 2)
        return lambda v: _is_int(v, *_INT64) and low <= int(v) <= high
    if name == "minlength":
        (n,) = _int_args(template, name, args, 1)
        return lambda v: len(v) >= n
    if name == "maxlength":
        (n,) = _int_args(template, name, args, 1)
        return lambda v: len(v) <= n
    if name == "length":
        bounds = _int_args(template, name, args, args.count(",") + 1)
        if len(bounds) == 1:
            return lambda v: len(v) == bounds[0]
        if len(bounds) == 2:
            return lambda v: bounds[0] <= len(v) <= bounds[1]
    raise RouteTemplateError(template, f"unknown constraint {text!r}")


def _split_constraints(body: str) -> list[str]:
    """Split `id:int:regex(a:b)` at the colons that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in body:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


@dataclass(frozen=True)
class _Segment:
    literal: str | None = None  # set for a literal segment
    name: str | None = None  # set for a parameter segment
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    checks: tuple[Callable[[str], bool], ...] = ()

    @property
    def rank(self) -> int:
        """Lower is more specific: literal, constrained parameter, parameter, catch-all."""
        if self.literal is not None:
            return 0
        if self.catch_all:
            return 3
        return 1 if self.checks else 2

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.checks)


def _parse_segment(template: str, text: str) -> _Segment:
    if not (text.startswith("{") and text.endswith("}")):
        if "{" in text or "}" in text:
            raise RouteTemplateError(
                template, f"segment {text!r} mixes literal text and parameters (not supported)"
            )
        return _Segment(literal=text)
    body = text[1:-1]
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    default: str | None = None
    if "=" in body and "(" not in body.split("=", 1)[0]:
        body, default = body.split("=", 1)
    optional = body.endswith("?")
    body = body.rstrip("?")
    name, *constraints = _split_constraints(body)
    if not re.fullmatch(r"\w+", name):
        raise RouteTemplateError(template, f"bad parameter name {name!r}")
    checks = tuple(_constraint(template, c) for c in constraints)
    return _Segment(
        name=name, optional=optional, catch_all=catch_all, default=default, checks=checks
    )


@dataclass(frozen=True)
class RouteTemplate:
    """One parsed route template (without the `api` prefix)."""

    template: str
    segments: tuple[_Segment, ...] = field(repr=False)

    @classmethod
    def parse(cls, template: str) -> RouteTemplate:
        text = template.strip().strip("/")
        if text.startswith("~"):
            text = text.lstrip("~").strip("/")
        raw = [s for s in text.split("/")] if text else []
        if any(s == "" for s in raw):
            raise RouteTemplateError(template, "empty segment")
        segments = tuple(_parse_segment(template, s) for s in raw)
        names = [s.name for s in segments if s.name is not None]
        if len(names) != len({n.lower() for n in names}):
            raise RouteTemplateError(template, "a parameter name is used twice")
        for i, seg in enumerate(segments):
            last = i == len(segments) - 1
            if seg.catch_all and not last:
                raise RouteTemplateError(template, "a catch-all parameter must be the last segment")
            if seg.optional and not last:
                raise RouteTemplateError(template, "an optional parameter must be the last segment")
        return cls(template=template, segments=segments)

    @property
    def parameter_names(self) -> list[str]:
        return [s.name for s in self.segments if s.name is not None]

    def match(self, path: str) -> dict[str, str | None] | None:
        """Route values for a decoded request path (prefix removed), or None if no match."""
        parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
        values: dict[str, str | None] = {}
        for i, seg in enumerate(self.segments):
            if seg.catch_all:
                rest = "/".join(parts[i:])
                if rest and not seg.accepts(rest):
                    return None
                assert seg.name is not None
                values[seg.name] = rest if rest else seg.default
                return values
            if i >= len(parts):
                if seg.optional or seg.default is not None:
                    assert seg.name is not None
                    values[seg.name] = seg.default
                    continue
                return None
            part = parts[i]
            if seg.literal is not None:
                if part.lower() != seg.literal.lower():
                    return None
                continue
            if part == "" or not seg.accepts(part):
                return None
            assert seg.name is not None
            values[seg.name] = part
        if len(parts) > len(self.segments):
            return None
        return values

    def sort_key(self) -> tuple[int, ...]:
        # Per segment rank; a shorter template ranks after a longer one with the same start,
        # so `a/{b}` is tried before `a/{*rest}` and `a/b` before `a/{b}`.
        return (*(s.rank for s in self.segments), 9)


@dataclass(frozen=True)
class RouteMatch(Generic[T]):
    target: T
    values: dict[str, str | None]


class RouteTable(Generic[T]):
    """Templates with their methods, tried most specific first.

    `methods` None or empty means every method. A path that matches only with another method is no
    match (the host answers 404, not 405).
    """

    def __init__(self) -> None:
        self._routes: list[tuple[RouteTemplate, frozenset[str] | None, T]] = []

    def add(self, template: RouteTemplate, methods: Iterable[str] | None, target: T) -> None:
        allowed = frozenset(m.upper() for m in methods) if methods else None
        self._routes.append((template, allowed, target))
        self._routes.sort(key=lambda r: r[0].sort_key())

    def match(self, method: str, path: str) -> RouteMatch[T] | None:
        for template, allowed, target in self._routes:
            if allowed is not None and method.upper() not in allowed:
                continue
            values = template.match(path)
            if values is not None:
                return RouteMatch(target=target, values=values)
        return None

    @property
    def templates(self) -> Sequence[RouteTemplate]:
        return [r[0] for r in self._routes]
