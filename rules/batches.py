"""Batches: a JSONL manifest of image requests, read line by line, and the choice between running
it in real time and sending it through the route's Batch API. Pure rules.

A manifest is JSON Lines (one JSON object per line, UTF-8). Each line is one image request with
the caller's own ``custom_id`` and the fields of ``POST /api/images`` (``prompt``, ``size``,
``quality``...); a line in the OpenAI Batch API's own form (``custom_id``, ``method``,
``url`` ``/v1/images/generations``, ``body``) is read the same. An optional first line
``{"batch": {...}}`` carries the batch's options (``deadline``, ``route``). A line that breaks a
rule is reported with its number, field and reason; the other lines run.

The two modes (``plan_batch``):
- ``realtime``: every item is a normal job at batch priority on the route's governor (it never
  starves interactive jobs), paced at the route's limits;
- ``batch_api``: the whole batch goes to the route's Batch API (24 h completion window, half the
  synchronous price: platform.openai.com/docs/guides/batch), chosen when the batch's deadline is
  at least the completion window away and its route has the Batch API turned on
  (``IMAGE_ROUTE_<R>_BATCH_API``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from rules.cost import estimated_cost_usd
from rules.errors import RequestInvalid
from rules.json_text import JsonRefused, strict_json
from rules.models import rules_for
from rules.request import ImageJobRequest, parse_failover, parse_job_request
from rules.send_plan import too_slow
from rules.settings import AppSettings

# The Batch API's limits (platform.openai.com/docs/guides/batch): 50,000 requests per batch,
# a 24 h completion window, half the synchronous price.
MAX_ITEMS = 50_000
COMPLETION_WINDOW = timedelta(hours=24)
BATCH_DISCOUNT = 0.5
MAX_CUSTOM_ID_CHARS = 64
BATCH_API_URL = "/v1/images/generations"
# Options a manifest's first line may carry.
OPTIONS = ("deadline", "route")
# The top-level fields of a line in the OpenAI Batch API's own form.
BATCH_API_LINE_FIELDS = ("custom_id", "method", "url", "body")


class BatchMode(StrEnum):
    REALTIME = "realtime"
    BATCH_API = "batch_api"


@dataclass(frozen=True)
class BatchItem:
    """One valid line: its number in the manifest (1-based), the caller's id, the request."""

    line: int
    custom_id: str
    request: ImageJobRequest
    failover: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "custom_id": self.custom_id,
            "request": self.request.to_json(),
            "failover": self.failover,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchItem:
        return cls(
            line=int(data["line"]),
            custom_id=str(data["custom_id"]),
            request=ImageJobRequest.from_json(data["request"]),
            failover=bool(data.get("failover", True)),
        )


@dataclass(frozen=True)
class LineError:
    """A line that does not run: its number, its custom_id when it had one, and why."""

    line: int
    custom_id: str | None
    field: str
    code: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "custom_id": self.custom_id,
            "field": self.field,
            "code": self.code,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LineError:
        return cls(
            line=int(data["line"]),
            custom_id=data.get("custom_id"),
            field=str(data["field"]),
            code=str(data["code"]),
            message=str(data["message"]),
        )


@dataclass(frozen=True)
class BatchOptions:
    deadline: datetime | None = None
    route: str | None = None


@dataclass(frozen=True)
class Manifest:
    items: tuple[BatchItem, ...]
    errors: tuple[LineError, ...]
    options: BatchOptions

    @property
    def lines(self) -> int:
        return len(self.items) + len(self.errors)


class ManifestInvalid(RequestInvalid):
    """The manifest as a whole cannot run (not UTF-8, no line, too many lines)."""


def parse_manifest(
    data: bytes, settings: AppSettings, *, options: BatchOptions | None = None
) -> Manifest:
    """Every line of ``data`` read: the valid items and each bad line's error. ``options``
    (e.g. from the request's query) win over the manifest's own first line. Raises
    ManifestInvalid for a manifest that has no line to run or cannot be read at all."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestInvalid(
            "manifest", "invalid_encoding", "a manifest is UTF-8 JSON Lines"
        ) from None
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    own = BatchOptions()
    if numbered:
        first = _json_line(numbered[0][1])
        if _is_options_line(first):
            assert isinstance(first, dict)
            own = _options(first["batch"], settings)
            numbered = numbered[1:]
    if not numbered:
        raise ManifestInvalid("manifest", "empty", "the manifest holds no request line")
    if len(numbered) > MAX_ITEMS:
        raise ManifestInvalid(
            "manifest", "too_many_items", f"a manifest holds at most {MAX_ITEMS:,} lines"
        )
    chosen = options or BatchOptions()
    merged = BatchOptions(deadline=chosen.deadline or own.deadline, route=chosen.route or own.route)
    items: list[BatchItem] = []
    errors: list[LineError] = []
    seen: set[str] = set()
    for number, line in numbered:
        try:
            item = _item(number, line, settings, merged.route)
        except _LineRefused as refused:
            errors.append(refused.error)
            continue
        if item.custom_id in seen:
            errors.append(
                LineError(number, item.custom_id, "custom_id", "duplicate", "custom_id repeats")
            )
            continue
        seen.add(item.custom_id)
        items.append(item)
    return Manifest(tuple(items), tuple(errors), merged)


class _LineRefused(Exception):
    def __init__(self, error: LineError) -> None:
        super().__init__(error.message)
        self.error = error


def _json_line(line: str) -> object:
    """A line's JSON value, or None when it is not JSON; JsonRefused (a ValueError) is caught
    too: ``_item`` reads the line again to name the problem."""
    try:
        return strict_json(line)
    except (ValueError, RecursionError):
        return None


def _is_options_line(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"batch"}


def _item(number: int, line: str, settings: AppSettings, route: str | None) -> BatchItem:
    try:
        value = strict_json(line)
    except JsonRefused as exc:
        raise _LineRefused(
            LineError(number, None, "line", "invalid_json", f"not a JSON object: {exc}")
        ) from None
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise _LineRefused(LineError(number, None, "line", "invalid_json", "not a JSON object"))
    if "batch" in value and "custom_id" not in value:
        # The options line is the first one or none: later, it is no request either.
        raise _LineRefused(
            LineError(
                number,
                None,
                "batch",
                "unsupported",
                'the batch options line ({"batch": {...}}) may only be the manifest\'s first line',
            )
        )
    custom_id = value.get("custom_id")
    if not isinstance(custom_id, str) or not 0 < len(custom_id) <= MAX_CUSTOM_ID_CHARS:
        raise _LineRefused(
            LineError(
                number,
                None,
                "custom_id",
                "invalid_value",
                f"custom_id must be a string of 1 to {MAX_CUSTOM_ID_CHARS} characters",
            )
        )
    body = _request_body(number, custom_id, value)
    if route is not None and "route" not in body:
        body["route"] = route
    for field in ("images", "mask"):
        if field in body:
            raise _LineRefused(
                LineError(number, custom_id, field, "unsupported", "a batch takes no edits")
            )
    if "priority" in body:  # a start's field (rules.request): every item runs at batch priority
        raise _LineRefused(
            LineError(
                number,
                custom_id,
                "priority",
                "unsupported",
                "a batch item takes no priority: every item runs at the batch's",
            )
        )
    if "webhookUrl" in body:  # a start's field (rules.webhooks): a batch has its report
        raise _LineRefused(
            LineError(
                number, custom_id, "webhookUrl", "unsupported", "a batch item takes no webhook"
            )
        )
    try:
        request = parse_job_request(body, settings)
        failover = parse_failover(body)
        if (slow := too_slow(request, settings)) is not None:
            raise slow
    except RequestInvalid as exc:
        raise _LineRefused(LineError(number, custom_id, exc.field, exc.code, str(exc))) from None
    return BatchItem(number, custom_id, request, failover)


def _request_body(number: int, custom_id: str, value: dict[str, Any]) -> dict[str, Any]:
    """The request fields of a line: ours beside custom_id, or the Batch API form's body."""
    if "body" not in value and "url" not in value:
        return {k: v for k, v in value.items() if k != "custom_id"}
    unknown = sorted(set(value) - set(BATCH_API_LINE_FIELDS))
    if unknown:  # as a line of our own form refuses a field it does not know
        raise _LineRefused(
            LineError(
                number,
                custom_id,
                unknown[0],
                "unknown_field",
                f"unknown field {unknown[0][:64]!r} in a Batch API line (custom_id, method, url, "
                "body)",
            )
        )
    url, body = value.get("url"), value.get("body")
    if url != BATCH_API_URL or value.get("method", "POST") != "POST":
        raise _LineRefused(
            LineError(
                number, custom_id, "url", "unsupported", f"a batch line posts to {BATCH_API_URL}"
            )
        )
    if not isinstance(body, dict):
        raise _LineRefused(
            LineError(number, custom_id, "body", "invalid_type", "body must be a JSON object")
        )
    fields = dict(body)
    fields.pop("model", None)  # the route's model answers it
    fields.pop("stream", None)  # the service decides how each request is sent
    return fields


def _options(value: object, settings: AppSettings) -> BatchOptions:
    if not isinstance(value, dict):
        raise ManifestInvalid("batch", "invalid_type", "the batch options must be a JSON object")
    unknown = sorted(set(value) - set(OPTIONS))
    if unknown:
        raise ManifestInvalid(unknown[0], "unknown_field", f"unknown batch option {unknown[0]!r}")
    return BatchOptions(
        deadline=parse_deadline(value.get("deadline")),
        route=parse_route(value.get("route"), settings),
    )


def parse_deadline(value: object) -> datetime | None:
    """An ISO 8601 moment with its offset (``2026-12-01T18:00:00Z``); None when absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ManifestInvalid("deadline", "invalid_type", "deadline must be an ISO 8601 text")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ManifestInvalid(
            "deadline", "invalid_value", "deadline must be ISO 8601, e.g. 2026-12-01T18:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise ManifestInvalid("deadline", "invalid_value", "deadline needs its offset, e.g. Z")
    try:
        moment.astimezone(UTC)  # 0001-01-01T00:00:00+01:00 is no moment in UTC
    except OverflowError:
        raise ManifestInvalid(
            "deadline", "invalid_value", "deadline is out of range (years 1 to 9999 in UTC)"
        ) from None
    return moment


def check_deadline_ahead(deadline: datetime | None, now: datetime) -> None:
    """A deadline given with a new batch is still to come: one already past (a typo's year, a
    stale script) is refused, not planned as "0.0 h away"."""
    if deadline is not None and deadline <= now:
        raise ManifestInvalid(
            "deadline", "invalid_value", f"deadline {deadline.isoformat()} is in the past"
        )


def parse_route(value: object, settings: AppSettings) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value not in settings.routes:
        choices = ", ".join(sorted(settings.routes))
        raise ManifestInvalid("route", "invalid_value", f"route must be one of: {choices}")
    return value


@dataclass(frozen=True)
class BatchPlan:
    """How a batch runs, why, and what each way would cost and take (quotes: USD, estimated
    from the published prices; durations in seconds of the route's time)."""

    mode: BatchMode
    reason: str
    items: int
    invalid: int
    realtime_usd: float | None
    batch_api_usd: float | None
    realtime_s: float | None
    deadline: datetime | None
    # The one route of a batch_api batch (None: the items' own routes, in real time).
    route: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "mode": self.mode.value,
            "reason": self.reason,
            "items": self.items,
            "invalid": self.invalid,
            "realtime_usd": self.realtime_usd,
            "batch_api_usd": self.batch_api_usd,
            "realtime_s": self.realtime_s,
            "deadline": self.deadline.isoformat() if self.deadline else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchPlan:
        deadline = data.get("deadline")
        return cls(
            mode=BatchMode(data["mode"]),
            reason=str(data["reason"]),
            items=int(data["items"]),
            invalid=int(data["invalid"]),
            realtime_usd=data.get("realtime_usd"),
            batch_api_usd=data.get("batch_api_usd"),
            realtime_s=data.get("realtime_s"),
            deadline=datetime.fromisoformat(deadline) if deadline else None,
            route=data.get("route"),
        )


def quote_usd(items: tuple[BatchItem, ...], settings: AppSettings) -> float | None:
    """What the items cost as synchronous calls, estimated from their shapes; None when a
    model has no price."""
    total = 0.0
    for item in items:
        request = item.request
        cost = estimated_cost_usd(
            settings.route(request.route).model,
            size=request.size,
            quality=request.quality,
            n=request.n,
            partial_images=request.partial_images,
        )
        if cost is None:
            return None
        total += cost
    return round(total, 6)


def realtime_duration_s(
    items: tuple[BatchItem, ...], settings: AppSettings, *, generation_s: float
) -> float | None:
    """How long the items take at their routes' pace: one send per spacing per route, the last
    one's generation after it; None where a route has no limit (it is not paced)."""
    per_route: dict[str, int] = {}
    for item in items:
        per_route[item.request.route] = per_route.get(item.request.route, 0) + 1
    longest = 0.0
    for route, count in per_route.items():
        pace = settings.pace(route)
        per_minute = pace.requests_per_minute or pace.images_per_minute
        if per_minute is None:
            return None
        longest = max(longest, (count - 1) * pace.window_s / per_minute)
    return longest + generation_s


def plan_batch(
    manifest: Manifest, settings: AppSettings, now: datetime, *, generation_s: float
) -> BatchPlan:
    """The batch's mode and both quotes. The Batch API when the deadline is at least its
    completion window away and every item's route takes Batch API requests (one route);
    otherwise real time, with the reason."""
    items = manifest.items
    realtime = quote_usd(items, settings)
    batch_api = round(realtime * BATCH_DISCOUNT, 6) if realtime is not None else None
    duration = realtime_duration_s(items, settings, generation_s=generation_s)
    deadline = manifest.options.deadline
    routes = sorted({item.request.route for item in items})
    mode, reason = BatchMode.REALTIME, "no deadline: runs now, at the route's pace"
    if deadline is not None:
        window = now + COMPLETION_WINDOW
        if deadline < window:
            hours = max(0.0, (deadline - now).total_seconds() / 3600)
            reason = (
                f"the deadline is {hours:.1f} h away, inside the Batch API's 24 h completion "
                "window: runs now, at the route's pace"
            )
        elif len(routes) != 1 or not settings.route(routes[0]).batch_api:
            reason = (
                "the deadline allows the Batch API, but "
                + (
                    "its items use more than one route"
                    if len(routes) != 1
                    else f"route {routes[0]} has no Batch API (IMAGE_ROUTE_<R>_BATCH_API)"
                )
                + ": runs now, at the route's pace"
            )
        else:
            mode = BatchMode.BATCH_API
            reason = (
                "the deadline is at least 24 h away and the route takes Batch API requests: "
                "sent through the Batch API at half the price"
            )
    if duration is not None and deadline is not None and mode is BatchMode.REALTIME:
        finish = now + timedelta(seconds=duration)
        if finish > deadline:
            reason += f"; at the route's pace it is expected to finish {_late(finish, deadline)}"
    return BatchPlan(
        mode=mode,
        reason=reason,
        items=len(items),
        invalid=len(manifest.errors),
        realtime_usd=realtime,
        batch_api_usd=batch_api,
        realtime_s=None if duration is None else math.ceil(duration),
        deadline=deadline,
        route=routes[0] if mode is BatchMode.BATCH_API else None,
    )


def _late(finish: datetime, deadline: datetime) -> str:
    minutes = (finish - deadline).total_seconds() / 60
    return f"{minutes:.0f} min after the deadline"


def batch_id_for(secret: bytes, caller: str, key: str | None, manifest: bytes) -> str:
    """``bat-<24 hex>``: an HMAC of the caller and the Idempotency-Key (else the manifest's
    digest), so one caller's same manifest is one batch and an id tells nothing of it."""
    basis = key if key is not None else "sha256:" + hashlib.sha256(manifest).hexdigest()
    digest = hmac.new(secret, f"batch\n{caller}\n{basis}".encode(), hashlib.sha256)
    return f"bat-{digest.hexdigest()[:24]}"


def planned(manifest: Manifest, settings: AppSettings, now: datetime) -> BatchPlan:
    """``plan_batch`` with the slowest item's calibrated generation as the real-time tail."""
    generation_s = max(
        (
            item.request.expected_generation_s(rules_for(settings.route(item.request.route).model))
            / settings.time_scale
            for item in manifest.items
        ),
        default=0.0,
    )
    return plan_batch(manifest, settings, now, generation_s=generation_s)
