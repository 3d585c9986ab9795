"""The records a batch travels in: the batch orchestration's input (and its state across
continue-as-new), its custom status, each item's result in the report, and its output.

    POST /api/batches, batch timer ──BatchInput──▶ image_batch orchestration
        ├── split_manifest (activity) ──▶ waves of items in Blob ──▶ BatchSplit
        ├── per wave: image_job sub-orchestrations ──Outcome──▶ ItemResult lines (Blob)
        └── write_batch_report (activity) ──▶ report.jsonl, report.csv ──▶ BatchOutcome
    GET /api/batches/{id} ◀── durable status (BatchInput, BatchStatus, BatchOutcome)

Stored records carry ``"v"`` and are read by the rule in rules.records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rules.batches import COMPLETION_WINDOW, BatchPlan
from rules.records import as_object, checked_version, reading, required
from rules.settings import AppSettings

BATCH_SCHEMA_VERSION = 1
# Version 2 of BatchInput added ``decided``: what the orchestration schedules by, frozen at the
# start (a settings change never replays a running batch differently). A version 1 (or 0) input
# has none: the orchestration falls back to the settings for it, as it always did.
BATCH_INPUT_SCHEMA_VERSION = 2
# How long past the Batch API's completion window a batch is still waited for (a poll that
# fails meanwhile counts as "unchanged"); after it, the upstream batch is cancelled.
COMPLETION_MARGIN_S = 3600.0


class BatchState(StrEnum):
    """Where a batch is: reading its manifest, running (real time), waiting on the route's
    Batch API, writing its report, and how it ended."""

    SPLITTING = "splitting"
    RUNNING = "running"
    SUBMITTED = "submitted"
    REPORTING = "reporting"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


TERMINAL_BATCH_STATES = frozenset({BatchState.COMPLETED, BatchState.CANCELLED, BatchState.FAILED})


@dataclass(frozen=True)
class BatchCounts:
    """Items by what became of them; ``invalid`` lines never ran."""

    items: int = 0
    invalid: int = 0
    started: int = 0
    saved: int = 0
    failed: int = 0
    cancelled: int = 0
    cost_usd: float = 0.0

    @property
    def done(self) -> int:
        return self.saved + self.failed + self.cancelled

    def by_state(self) -> dict[str, int]:
        """The items (``items``: the valid lines) each in exactly one state, as the status
        answer's ``counts`` shows them: ``notStarted + running + saved + failed + cancelled``
        is ``items``.

        ``started`` counts items handed to a job, and an item that never started may still end
        (``cancelled`` when the batch is cancelled, ``failed`` when its own work fails), so the
        items not started are what is neither running nor ended, never ``items - started``
        (which counted a cancelled batch's unstarted items twice). ``running`` is what started
        and has not ended; both are bounded so that the parts never exceed ``items``."""
        done = min(self.done, self.items)
        running = min(max(0, self.started - self.done), self.items - done)
        return {
            "items": self.items,
            "invalid": self.invalid,
            "notStarted": self.items - done - running,
            "running": running,
            "saved": self.saved,
            "failed": self.failed,
            "cancelled": self.cancelled,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "invalid": self.invalid,
            "started": self.started,
            "saved": self.saved,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "cost_usd": round(self.cost_usd, 6),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> BatchCounts:
        if not data:
            return cls()
        return cls(
            items=int(data.get("items", 0)),
            invalid=int(data.get("invalid", 0)),
            started=int(data.get("started", 0)),
            saved=int(data.get("saved", 0)),
            failed=int(data.get("failed", 0)),
            cancelled=int(data.get("cancelled", 0)),
            cost_usd=float(data.get("cost_usd", 0.0)),
        )


@dataclass(frozen=True)
class BatchDecided:
    """What a batch orchestration decides by, taken from the settings once, when the batch
    starts: items in flight, waves per execution, the routes its cancel reaches, the first
    poll wait of a Batch API batch and how long it is waited for (route seconds)."""

    in_flight: int
    waves_per_execution: int
    routes: tuple[str, ...]
    poll_s: float
    give_up_s: float

    @classmethod
    def from_settings(cls, settings: AppSettings) -> BatchDecided:
        window_s = COMPLETION_WINDOW.total_seconds() + COMPLETION_MARGIN_S
        return cls(
            in_flight=settings.batches.in_flight,
            waves_per_execution=settings.batches.waves_per_execution,
            routes=tuple(settings.routes),
            poll_s=settings.batches.batch_api_poll_s,
            give_up_s=window_s / settings.time_scale,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "in_flight": self.in_flight,
            "waves_per_execution": self.waves_per_execution,
            "routes": list(self.routes),
            "poll_s": self.poll_s,
            "give_up_s": self.give_up_s,
        }

    @classmethod
    @reading("batch decided")
    def from_json(cls, value: object) -> BatchDecided:
        data = as_object(value, "batch decided")
        return cls(
            in_flight=int(data["in_flight"]),
            waves_per_execution=int(data["waves_per_execution"]),
            routes=tuple(str(route) for route in data["routes"]),
            poll_s=float(data["poll_s"]),
            give_up_s=float(data["give_up_s"]),
        )


@dataclass(frozen=True)
class BatchInput:
    """The batch orchestration's input. ``caller`` is the caller's digest (every item job is
    that caller's), ``manifest`` the manifest's blob in the batches container, ``plan`` the
    mode and quotes decided before any work. Across continue-as-new: ``next_wave`` (the first
    wave not yet run), ``waves`` (known once split), ``counts`` so far, and the Batch API's ids
    once submitted."""

    batch_id: str
    caller: str
    created_at: str
    manifest: str
    plan: BatchPlan
    next_wave: int = 0
    waves: int | None = None
    counts: BatchCounts = field(default_factory=BatchCounts)
    upstream_batch: str | None = None
    # Executions so far (continue-as-new): each writes its items' results as one blob.
    execution: int = 0
    cancelled: bool = False
    # Frozen at the start (BatchDecided); None: an input of version 1 or older.
    decided: BatchDecided | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": BATCH_SCHEMA_VERSION,
            "execution": self.execution,
            "cancelled": self.cancelled,
            "batch_id": self.batch_id,
            "caller": self.caller,
            "created_at": self.created_at,
            "manifest": self.manifest,
            "plan": self.plan.to_json(),
            "next_wave": self.next_wave,
            "waves": self.waves,
            "counts": self.counts.to_json(),
            "upstream_batch": self.upstream_batch,
        }
        if self.decided is not None:  # without it, written exactly as version 1
            data.update(v=BATCH_INPUT_SCHEMA_VERSION, decided=self.decided.to_json())
        return data

    @classmethod
    @reading("batch input")
    def from_json(cls, value: object) -> BatchInput:
        """Versions 0 and 1 have no ``decided`` (None: the settings decide, as they did)."""
        data = as_object(value, "batch input")
        checked_version(data, "batch input", BATCH_INPUT_SCHEMA_VERSION)
        waves = data.get("waves")
        decided = data.get("decided")
        return cls(
            batch_id=required(data, "batch_id", "batch input"),
            caller=required(data, "caller", "batch input"),
            created_at=required(data, "created_at", "batch input"),
            manifest=required(data, "manifest", "batch input"),
            plan=BatchPlan.from_json(required(data, "plan", "batch input")),
            next_wave=int(data.get("next_wave", 0)),
            waves=None if waves is None else int(waves),
            counts=BatchCounts.from_json(data.get("counts")),
            upstream_batch=data.get("upstream_batch"),
            execution=int(data.get("execution", 0)),
            cancelled=bool(data.get("cancelled", False)),
            decided=BatchDecided.from_json(decided) if decided else None,
        )

    def deciding(self, settings: AppSettings) -> BatchDecided:
        """What the orchestration decides by: frozen in the input, else (an older input) the
        settings, as before."""
        return self.decided or BatchDecided.from_settings(settings)


@dataclass(frozen=True)
class BatchSplit:
    """What reading the manifest came to: valid items, invalid lines, waves written, and the
    routes its items may queue at (each item's route and the failover partner frozen in its
    job: where a cancel of the batch must reach; None: a split answered by an earlier
    deployment, which did not say)."""

    items: int
    invalid: int
    waves: int
    routes: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"items": self.items, "invalid": self.invalid, "waves": self.waves}
        if self.routes is not None:
            data["routes"] = list(self.routes)
        return data

    @classmethod
    @reading("batch split")
    def from_json(cls, value: object) -> BatchSplit:
        data = as_object(value, "batch split")
        routes = data.get("routes")
        return cls(
            int(data["items"]),
            int(data["invalid"]),
            int(data["waves"]),
            None if routes is None else tuple(str(route) for route in routes),
        )


@dataclass(frozen=True)
class BatchStatus:
    """The batch orchestration's custom status: its state, the counts so far, and the
    expected end (ISO 8601; None when unknown)."""

    state: BatchState
    counts: BatchCounts
    wave: int = 0
    waves: int | None = None
    eta: str | None = None
    upstream_status: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "counts": self.counts.to_json(),
            "wave": self.wave,
            "waves": self.waves,
            "eta": self.eta,
            "upstream_status": self.upstream_status,
        }

    @classmethod
    @reading("batch status")
    def from_json(cls, value: object) -> BatchStatus | None:
        if value is None or value == "":
            return None
        data = as_object(value, "batch status")
        waves = data.get("waves")
        return cls(
            state=BatchState(data["state"]),
            counts=BatchCounts.from_json(data.get("counts")),
            wave=int(data.get("wave", 0)),
            waves=None if waves is None else int(waves),
            eta=data.get("eta"),
            upstream_status=data.get("upstream_status"),
        )


@dataclass(frozen=True)
class WaveItem:
    """One item of a wave as the orchestration starts it: its job id and the job's input."""

    line: int
    custom_id: str
    job_id: str
    job: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "custom_id": self.custom_id,
            "job_id": self.job_id,
            "job": self.job,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WaveItem:
        return cls(
            line=int(data["line"]),
            custom_id=str(data["custom_id"]),
            job_id=str(data["job_id"]),
            job=dict(data["job"]),
        )


@dataclass(frozen=True)
class ItemResult:
    """One item's line in the report: the caller's id, the job, what it came to."""

    line: int
    custom_id: str
    job_id: str | None
    state: str
    failure: str | None = None
    error: str | None = None
    attempts: int = 0
    cost_usd: float | None = None
    request_started_at: str | None = None
    final_image_ms: int | None = None
    image_blob: str | None = None
    billing: str = "realtime"

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "custom_id": self.custom_id,
            "job_id": self.job_id,
            "state": self.state,
            "failure": self.failure,
            "error": self.error,
            "attempts": self.attempts,
            "cost_usd": self.cost_usd,
            "request_started_at": self.request_started_at,
            "final_image_ms": self.final_image_ms,
            "image_blob": self.image_blob,
            "billing": self.billing,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ItemResult:
        return cls(
            line=int(data["line"]),
            custom_id=str(data["custom_id"]),
            job_id=data.get("job_id"),
            state=str(data["state"]),
            failure=data.get("failure"),
            error=data.get("error"),
            attempts=int(data.get("attempts", 0)),
            cost_usd=data.get("cost_usd"),
            request_started_at=data.get("request_started_at"),
            final_image_ms=data.get("final_image_ms"),
            image_blob=data.get("image_blob"),
            billing=str(data.get("billing", "realtime")),
        )


@dataclass(frozen=True)
class BatchOutcome:
    """The batch orchestration's output."""

    state: BatchState
    counts: BatchCounts
    report_jsonl: str | None
    report_csv: str | None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": BATCH_SCHEMA_VERSION,
            "state": self.state.value,
            "counts": self.counts.to_json(),
            "report_jsonl": self.report_jsonl,
            "report_csv": self.report_csv,
            "reason": self.reason,
        }

    @classmethod
    @reading("batch outcome")
    def from_json(cls, value: object) -> BatchOutcome:
        data = as_object(value, "batch outcome")
        checked_version(data, "batch outcome", BATCH_SCHEMA_VERSION)
        return cls(
            state=BatchState(data["state"]),
            counts=BatchCounts.from_json(data.get("counts")),
            report_jsonl=data.get("report_jsonl"),
            report_csv=data.get("report_csv"),
            reason=data.get("reason"),
        )


@dataclass(frozen=True)
class BatchReport:
    """The report's blobs (in the batches container) and the totals counted from its lines."""

    jsonl: str
    csv: str
    counts: BatchCounts

    def to_json(self) -> dict[str, Any]:
        return {"jsonl": self.jsonl, "csv": self.csv, "counts": self.counts.to_json()}

    @classmethod
    @reading("batch report")
    def from_json(cls, value: object) -> BatchReport:
        data = as_object(value, "batch report")
        return cls(
            jsonl=str(data["jsonl"]),
            csv=str(data["csv"]),
            counts=BatchCounts.from_json(data["counts"]),
        )


def counted(results: list[ItemResult]) -> BatchCounts:
    """The totals of a report's lines."""
    states = [result.state for result in results]
    return BatchCounts(
        items=sum(1 for state in states if state != "invalid"),
        invalid=states.count("invalid"),
        started=sum(1 for result in results if result.attempts > 0),
        saved=states.count("saved"),
        failed=states.count("failed"),
        cancelled=states.count("cancelled"),
        cost_usd=round(sum(result.cost_usd or 0.0 for result in results), 6),
    )


@dataclass(frozen=True)
class BatchApiCall:
    """What the Batch API activities are handed: the batch, its waves and route, the upstream
    batch once known (None: look for the recorded one, or the one tagged with our id), and, for
    a cancel, why."""

    batch_id: str
    waves: int
    route: str
    upstream: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "waves": self.waves,
            "route": self.route,
            "upstream": self.upstream,
            "reason": self.reason,
        }

    @classmethod
    @reading("batch api call")
    def from_json(cls, value: object) -> BatchApiCall:
        data = as_object(value, "batch api call")
        upstream, reason = data.get("upstream"), data.get("reason")
        return cls(
            batch_id=str(data["batch_id"]),
            waves=int(data["waves"]),
            route=str(data["route"]),
            upstream=None if upstream is None else str(upstream),
            reason=None if reason is None else str(reason),
        )


@dataclass(frozen=True)
class CollectChunk:
    """One chunk of an upstream batch's output (or error) file to collect: from byte
    ``offset`` on, at most a bounded number of lines. A chunk run again (the activity runs at
    least once) stores the same images under the same names and writes the same results blob:
    nothing doubles, nothing is lost."""

    call: BatchApiCall
    file_id: str
    kind: str  # "output" or "error"
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {
            "call": self.call.to_json(),
            "file_id": self.file_id,
            "kind": self.kind,
            "offset": self.offset,
        }

    @classmethod
    @reading("collect chunk")
    def from_json(cls, value: object) -> CollectChunk:
        data = as_object(value, "collect chunk")
        return cls(
            call=BatchApiCall.from_json(data["call"]),
            file_id=str(data["file_id"]),
            kind=str(data["kind"]),
            offset=int(data["offset"]),
        )


@dataclass(frozen=True)
class CollectedChunk:
    """What a chunk came to: its results blob, the lines it read, and where the next chunk
    starts (None: the file is read to its end)."""

    results: str
    lines: int
    next_offset: int | None

    def to_json(self) -> dict[str, Any]:
        return {"results": self.results, "lines": self.lines, "next_offset": self.next_offset}

    @classmethod
    @reading("collected chunk")
    def from_json(cls, value: object) -> CollectedChunk:
        data = as_object(value, "collected chunk")
        next_offset = data["next_offset"]
        return cls(
            results=str(data["results"]),
            lines=int(data["lines"]),
            next_offset=None if next_offset is None else int(next_offset),
        )


@dataclass(frozen=True)
class CollectEnd:
    """The end of a collect: every chunk's results (in the order read: the output file's
    first), the upstream batch's final status; items in no chunk end failed with it."""

    call: BatchApiCall
    status: str
    chunks: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"call": self.call.to_json(), "status": self.status, "chunks": list(self.chunks)}

    @classmethod
    @reading("collect end")
    def from_json(cls, value: object) -> CollectEnd:
        data = as_object(value, "collect end")
        return cls(
            call=BatchApiCall.from_json(data["call"]),
            status=str(data["status"]),
            chunks=tuple(str(chunk) for chunk in data["chunks"]),
        )


@dataclass(frozen=True)
class Upstream:
    """An upstream batch (the route's Batch API) as its status read tells it."""

    batch: str
    status: str
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file: str | None = None
    error_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": BATCH_SCHEMA_VERSION,
            "batch": self.batch,
            "status": self.status,
            "total": self.total,
            "completed": self.completed,
            "failed": self.failed,
            "output_file": self.output_file,
            "error_file": self.error_file,
        }

    @classmethod
    @reading("upstream batch")
    def from_json(cls, value: object) -> Upstream:
        """Also ``{batch}/upstream.json``; version 0 (no ``v``) has the same fields."""
        data = as_object(value, "upstream batch")
        checked_version(data, "upstream batch", BATCH_SCHEMA_VERSION)
        return cls(
            batch=str(data["batch"]),
            status=str(data["status"]),
            total=int(data.get("total") or 0),
            completed=int(data.get("completed") or 0),
            failed=int(data.get("failed") or 0),
            output_file=data.get("output_file"),
            error_file=data.get("error_file"),
        )

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> Upstream:
        counts = answer.get("request_counts") or {}
        return cls(
            batch=str(answer["id"]),
            status=str(answer.get("status", "")),
            total=int(counts.get("total") or 0),
            completed=int(counts.get("completed") or 0),
            failed=int(counts.get("failed") or 0),
            output_file=answer.get("output_file_id"),
            error_file=answer.get("error_file_id"),
        )


@dataclass(frozen=True)
class UpstreamCancel:
    """``{batch}/upstream-cancel.json``: a batch that failed here had its upstream batch
    cancelled (activities.batch_api.cancel_for_failure): the upstream batch as the cancel left
    it, why, and when (ISO 8601 UTC). Version 0 (no ``v``) has the same fields."""

    batch_id: str
    upstream: Upstream
    reason: str | None
    at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "v": BATCH_SCHEMA_VERSION,
            "batch_id": self.batch_id,
            "upstream": self.upstream.to_json(),
            "reason": self.reason,
            "at": self.at,
        }

    @classmethod
    @reading("upstream cancel")
    def from_json(cls, value: object) -> UpstreamCancel:
        data = as_object(value, "upstream cancel")
        checked_version(data, "upstream cancel", BATCH_SCHEMA_VERSION)
        return cls(
            batch_id=required(data, "batch_id", "upstream cancel"),
            upstream=Upstream.from_json(required(data, "upstream", "upstream cancel")),
            reason=data.get("reason"),
            at=required(data, "at", "upstream cancel"),
        )
