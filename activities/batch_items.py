"""A batch's work in Blob: its manifest split into waves of item jobs, each wave's results, and
the report (JSONL and CSV) at the end. Called by the batch orchestration's activities.

Each item becomes a normal image job: its own job id (derived from the batch id and its
custom_id, so a re-run of the split gives the same ids), its own send plan, batch priority, the
batch's caller, and its own metadata.json when it ends.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import datetime

from rules.batch_records import BatchReport, BatchSplit, ItemResult, WaveItem, counted
from rules.batches import BatchItem, LineError, parse_manifest
from rules.dedup import fingerprint, job_id_for
from rules.errors import RequestInvalid
from rules.failover import decided_for
from rules.job_records import JobInput, JobState, Outcome
from rules.route_records import Priority
from rules.send_plan import plans
from rules.settings import AppSettings
from rules.timing import iso_utc
from storage.protocol import (
    JSON,
    BatchStore,
    line_errors_name,
    report_name,
    results_name,
    wave_name,
)

JSONL = "application/jsonl"
CSV = "text/csv"
REPORT_COLUMNS = (
    "line",
    "custom_id",
    "job_id",
    "state",
    "failure",
    "error",
    "attempts",
    "cost_usd",
    "billing",
    "request_started_at",
    "final_image_ms",
    "image_blob",
)


def item_job_id(settings: AppSettings, batch_id: str, custom_id: str) -> str:
    """The item's job id: an HMAC of the batch id and the caller's custom_id (unique within a
    batch), so the same item is the same job however often the split runs."""
    return job_id_for(settings.job_id_secret, f"batch {batch_id}", custom_id, "", 1)


def item_job(
    item: BatchItem, *, batch_id: str, caller: str, created_at: datetime, settings: AppSettings
) -> JobInput:
    planned = plans(item.request, settings)
    return JobInput(
        request=item.request,
        send=planned.first,
        send_after_gateway_kill=planned.after_gateway_kill,
        send_after_read_idle=planned.after_read_idle,
        policy=settings.retry,
        caller=caller,
        fingerprint=fingerprint(item.request),
        created_at=iso_utc(created_at),
        priority=Priority.BATCH,
        failover=item.failover,
        batch_id=batch_id,
        decided=decided_for(item.request, item.failover, settings),
    )


def split_manifest(
    store: BatchStore,
    *,
    batch_id: str,
    manifest: str,
    caller: str,
    created_at: datetime,
    settings: AppSettings,
) -> BatchSplit:
    """Read the manifest, write its waves (``settings.batches.wave`` items each) and its line
    errors. Writing the same blobs again is harmless: a re-run after a crash gives the same."""
    data = store.get(name=manifest)
    if data is None:
        raise FileNotFoundError(f"batch {batch_id}: its manifest {manifest} is gone")
    try:
        parsed = parse_manifest(data, settings)
        items, errors = parsed.items, parsed.errors
    except RequestInvalid as exc:  # the whole manifest: every line is the same error
        items, errors = (), (LineError(0, None, exc.field, exc.code, str(exc)),)
    size = settings.batches.wave
    waves = [items[start : start + size] for start in range(0, len(items), size)]
    # The routes the items may queue at: their own, and the failover partner frozen in each.
    routes: set[str] = set()
    for number, wave in enumerate(waves):
        entries = []
        for item in wave:
            job = item_job(
                item, batch_id=batch_id, caller=caller, created_at=created_at, settings=settings
            )
            routes.add(job.request.route)
            if job.decided is not None and job.decided.failover is not None:
                routes.add(job.decided.failover.route.name)
            entries.append(
                WaveItem(
                    line=item.line,
                    custom_id=item.custom_id,
                    job_id=item_job_id(settings, batch_id, item.custom_id),
                    job=job.to_json(),
                ).to_json()
            )
        store.put(
            name=wave_name(batch_id, number), data=json.dumps(entries).encode(), content_type=JSON
        )
    store.put(
        name=line_errors_name(batch_id),
        data=_jsonl(error.to_json() for error in errors),
        content_type=JSONL,
    )
    return BatchSplit(
        items=len(items), invalid=len(errors), waves=len(waves), routes=tuple(sorted(routes))
    )


def read_wave(store: BatchStore, batch_id: str, wave: int) -> list[WaveItem]:
    data = store.get(name=wave_name(batch_id, wave))
    if data is None:
        raise FileNotFoundError(f"batch {batch_id}: wave {wave} is gone")
    return [WaveItem.from_json(entry) for entry in json.loads(data)]


def item_result(
    item: WaveItem, outcome: Outcome | None, *, billing: str = "realtime"
) -> ItemResult:
    """The report's line for an item: from its job's outcome, or never started (None)."""
    if outcome is None:
        return ItemResult(
            item.line,
            item.custom_id,
            item.job_id,
            JobState.CANCELLED.value,
            error="cancelled before it started",
            billing=billing,
        )
    image = outcome.images[0].blob if outcome.images else None
    return ItemResult(
        line=item.line,
        custom_id=item.custom_id,
        job_id=item.job_id,
        state=outcome.state.value,
        failure=outcome.failure,
        error=outcome.error.message if outcome.error else None,
        attempts=outcome.retry_count + 1 if outcome.attempt else 0,
        cost_usd=outcome.cost_usd,
        request_started_at=outcome.timings.request_started_at,
        final_image_ms=outcome.timings.final_image_ms,
        image_blob=image,
        billing=billing,
    )


def write_results(
    store: BatchStore, batch_id: str, execution: int, results: list[ItemResult]
) -> None:
    """One execution's item results (each item once: an execution's items end in it)."""
    store.put(
        name=results_name(batch_id, execution),
        data=_jsonl(result.to_json() for result in results),
        content_type=JSONL,
    )


def write_report(store: BatchStore, batch_id: str, executions: int) -> BatchReport:
    """Every execution's results and every line error, in manifest order, as JSONL and CSV,
    with the totals counted from them."""
    results: list[ItemResult] = []
    for execution in range(executions):
        data = store.get(name=results_name(batch_id, execution)) or b""
        results += [ItemResult.from_json(json.loads(line)) for line in data.splitlines() if line]
    errors = store.get(name=line_errors_name(batch_id)) or b""
    for line in errors.splitlines():
        if not line:
            continue
        error = LineError.from_json(json.loads(line))
        results.append(
            ItemResult(
                line=error.line,
                custom_id=error.custom_id or "",
                job_id=None,
                state="invalid",
                failure="invalid_line",
                error=f"{error.field}: {error.message}",
            )
        )
    results.sort(key=lambda result: result.line)
    jsonl, csv_name = report_name(batch_id, "jsonl"), report_name(batch_id, "csv")
    store.put(name=jsonl, data=_jsonl(r.to_json() for r in results), content_type=JSONL)
    store.put(name=csv_name, data=_csv(results), content_type=CSV)
    return BatchReport(jsonl, csv_name, counted(results))


def _jsonl(records: Iterable[dict[str, object]]) -> bytes:
    return "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records).encode()


def _csv(results: list[ItemResult]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for result in results:
        writer.writerow({k: _cell(v) for k, v in result.to_json().items()})
    return out.getvalue().encode()


def _cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a caller's text that starts like a formula
    (``=``, ``+``, ``-``, ``@``) gets a leading apostrophe (OWASP, "CSV Injection")."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
