"""A batch through the route's Batch API: upload the requests as a JSONL file, create the batch,
read its status, cancel it, and collect its output file into normal jobs' images and records.

The API (platform.openai.com/docs/api-reference/batch and /files; docs/reference/
gpt-image-2-api.md): ``POST /files`` (multipart, ``purpose=batch``), ``POST /batches``
(``input_file_id``, ``endpoint``, ``completion_window`` ``24h``, ``metadata``), ``GET
/batches/{id}``, ``POST /batches/{id}/cancel``, ``GET /batches?limit=``, ``GET
/files/{id}/content``. Each output line is ``{"custom_id", "response": {"status_code",
"request_id", "body"}, "error"}``; failed requests go to the error file in the same form. Azure
OpenAI serves the same paths under ``/openai`` with ``api-version``, and its request lines name
the (Global Batch) deployment as ``model``.

Never two upstream batches for one of ours: the created batch's id is recorded in Blob at once,
and a re-run (the activity runs at least once) first reads that record, then looks for an
upstream batch tagged with our batch id, and only then creates one.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from activities.batch_items import JSONL, item_result, read_wave, write_results
from activities.finish import build_metadata
from activities.image_check import check_image
from rules.batch_records import ItemResult, WaveItem
from rules.batches import BATCH_API_URL, BATCH_DISCOUNT
from rules.cost import attempt_cost
from rules.job_records import FinishInput, JobInput, JobState, Outcome
from rules.outcome import Failure, FailureKind, Layer, StoredImage, Timings
from rules.redaction import scrub
from rules.settings import AppSettings, RouteSettings
from storage.protocol import JSON, BatchStore, ImageStore, image_name, metadata_name

log = logging.getLogger("imagejobs.batch_api")

# Upstream statuses after which a batch changes no more.
FINISHED = frozenset({"completed", "failed", "expired", "cancelled"})
TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True)
class Upstream:
    """An upstream batch as its status read tells it."""

    batch: str
    status: str
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file: str | None = None
    error_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "status": self.status,
            "total": self.total,
            "completed": self.completed,
            "failed": self.failed,
            "output_file": self.output_file,
            "error_file": self.error_file,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Upstream:
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


class BatchApi:
    """The route's Files and Batch endpoints, with its auth."""

    def __init__(
        self,
        route: RouteSettings,
        auth: Callable[[], tuple[str, str] | None],
        client: httpx.Client,
    ) -> None:
        self.route = route
        self.auth = auth
        self.client = client

    def url(self, path: str) -> str:
        if self.route.owner == "azure":
            return f"{self.route.base_url}/openai{path}?api-version={self.route.api_version}"
        return f"{self.route.base_url}{path}"

    def headers(self) -> dict[str, str]:
        said = self.auth()
        return {said[0]: said[1]} if said else {}

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.client.request(
            method, self.url(path), headers=self.headers(), timeout=TIMEOUT, **kwargs
        )
        if response.status_code >= 400:
            raise BatchApiError(path, response.status_code, response.text)
        answer: dict[str, Any] = response.json()
        return answer

    def lines(self, file_id: str) -> Iterator[dict[str, Any]]:
        """A file's JSONL lines, streamed (an output file of images can be large)."""
        url = self.url(f"/files/{file_id}/content")
        with self.client.stream("GET", url, headers=self.headers(), timeout=TIMEOUT) as response:
            if response.status_code >= 400:
                response.read()
                raise BatchApiError(
                    f"/files/{file_id}/content", response.status_code, response.text
                )
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)


class BatchApiError(Exception):
    """The Batch API answered with an error; the message is scrubbed of keys and prompts."""

    def __init__(self, path: str, status: int, body: str) -> None:
        super().__init__(f"{path} answered {status}: {scrub(body)[:300]}")
        self.status = status


def _request_line(item: WaveItem, route: RouteSettings) -> dict[str, Any]:
    job = JobInput.from_json(item.job)
    request = job.request
    body: dict[str, Any] = {
        "model": route.deployment if route.owner == "azure" else route.model,
        "prompt": request.prompt,
        "n": request.n,
        "size": request.size,
        "quality": request.quality,
        "output_format": request.output_format,
        "background": request.background,
        "moderation": request.moderation,
    }
    if request.output_compression is not None:
        body["output_compression"] = request.output_compression
    # Our job id is the upstream custom_id: the output maps back to the job without a lookup.
    return {"custom_id": item.job_id, "method": "POST", "url": BATCH_API_URL, "body": body}


def upstream_record(batch_id: str) -> str:
    return f"{batch_id}/upstream.json"


def submit(api: BatchApi, store: BatchStore, *, batch_id: str, waves: int) -> Upstream:
    """The upstream batch for ours: the recorded one, one tagged with our id, or a new one."""
    recorded = store.get(name=upstream_record(batch_id))
    if recorded is not None:
        return Upstream.from_json(json.loads(recorded))
    listed = api.call("GET", "/batches", params={"limit": 100})
    for answer in listed.get("data") or ():
        if (answer.get("metadata") or {}).get("batch_id") == batch_id:
            found = Upstream.from_answer(answer)
            _record(store, batch_id, found)
            return found
    lines = [
        json.dumps(_request_line(item, api.route), ensure_ascii=False)
        for wave in range(waves)
        for item in read_wave(store, batch_id, wave)
    ]
    content = ("\n".join(lines) + "\n").encode()
    uploaded = api.call(
        "POST",
        "/files",
        data={"purpose": "batch"},
        files={"file": (f"{batch_id}.jsonl", content, JSONL)},
    )
    created = api.call(
        "POST",
        "/batches",
        json={
            "input_file_id": uploaded["id"],
            "endpoint": BATCH_API_URL,
            "completion_window": "24h",
            "metadata": {"batch_id": batch_id},
        },
    )
    upstream = Upstream.from_answer(created)
    _record(store, batch_id, upstream)
    return upstream


def _record(store: BatchStore, batch_id: str, upstream: Upstream) -> None:
    store.put(
        name=upstream_record(batch_id),
        data=json.dumps(upstream.to_json()).encode(),
        content_type=JSON,
    )


def poll(api: BatchApi, upstream: str) -> Upstream:
    return Upstream.from_answer(api.call("GET", f"/batches/{upstream}"))


def cancel(api: BatchApi, upstream: str) -> Upstream:
    return Upstream.from_answer(api.call("POST", f"/batches/{upstream}/cancel"))


def collect(
    api: BatchApi,
    batches: BatchStore,
    images: ImageStore,
    *,
    batch_id: str,
    waves: int,
    upstream: Upstream,
    settings: AppSettings,
) -> int:
    """Every item's outcome from the output and error files, each stored as a normal job's
    image and metadata.json, and the batch's results (execution 0). Returns the items counted.
    An item in neither file (an expired or cancelled batch) ended without an image."""
    items = {
        item.job_id: item for wave in range(waves) for item in read_wave(batches, batch_id, wave)
    }
    results: dict[str, ItemResult] = {}
    for file_id in (upstream.output_file, upstream.error_file):
        if not file_id:
            continue
        for line in api.lines(file_id):
            item = items.get(str(line.get("custom_id")))
            if item is None or item.job_id in results:
                continue
            outcome = _item_outcome(item, line, images, settings)
            results[item.job_id] = item_result(item, outcome, billing="batch")
    why = f"the Batch API batch ended {upstream.status} without this item"
    for job_id, item in items.items():
        if job_id not in results:
            missing = Failure(FailureKind.SERVER_ERROR, Layer.ROUTE, why, sent=True)
            ended = _ended(item, images, settings, missing)
            results[job_id] = item_result(item, ended, billing="batch")
    ordered = sorted(results.values(), key=lambda result: result.line)
    write_results(batches, batch_id, 0, ordered)
    return len(ordered)


def _item_outcome(
    item: WaveItem, line: dict[str, Any], images: ImageStore, settings: AppSettings
) -> Outcome:
    job = JobInput.from_json(item.job)
    response = line.get("response") or {}
    error = line.get("error")
    body = response.get("body") or {}
    status = int(response.get("status_code") or 0)
    if error or status >= 400 or not body.get("data"):
        said = error or body.get("error") or {}
        message = scrub(str(said.get("message") or f"status {status}"))
        failure = Failure(
            kind=FailureKind.REJECTED if 400 <= status < 500 else FailureKind.SERVER_ERROR,
            layer=Layer.ROUTE,
            message=message,
            sent=True,
            http_status=status or None,
            code=said.get("code"),
            request_id=response.get("request_id"),
        )
        return _ended(item, images, settings, failure, job=job)
    stored: list[StoredImage] = []
    request = job.request
    for index, entry in enumerate(body["data"]):
        data = base64.b64decode(entry["b64_json"])
        verdict = check_image(data, output_format=request.output_format, size=request.size)
        if isinstance(verdict, str):
            failure = Failure(FailureKind.IMAGE_INVALID, Layer.IMAGE_CHECK, verdict, sent=True)
            return _ended(item, images, settings, failure, job=job)
        name = image_name(item.job_id, request.output_format, index, request.n)
        content_type = f"image/{request.output_format}"
        images.put(name=name, data=data, content_type=content_type)
        stored.append(StoredImage(name, content_type, len(data), verdict[0], verdict[1]))
    usage = body.get("usage")
    cost = attempt_cost(
        settings.route(request.route).model,
        request,
        stream=False,
        partial_images=0,
        failure=None,
        usage=usage,
    )
    priced = None if cost.usd is None else round(cost.usd * BATCH_DISCOUNT, 6)
    outcome = Outcome(
        state=JobState.SAVED,
        attempt=1,
        images=tuple(stored),
        timings=Timings(http_status=status, request_id=response.get("request_id")),
        usage=usage,
        cost_usd=priced,
        cost_estimated=cost.estimated,
    )
    return _finish(item, job, outcome, images, settings)


def _ended(
    item: WaveItem,
    images: ImageStore,
    settings: AppSettings,
    failure: Failure,
    *,
    job: JobInput | None = None,
) -> Outcome:
    """A failed item's outcome, with its metadata.json."""
    job = job or JobInput.from_json(item.job)
    category = "internal_error" if failure.layer is Layer.IMAGE_CHECK else "returned_error"
    outcome = Outcome(state=JobState.FAILED, attempt=1, failure=category, error=failure)
    return _finish(item, job, outcome, images, settings)


def _finish(
    item: WaveItem, job: JobInput, outcome: Outcome, images: ImageStore, settings: AppSettings
) -> Outcome:
    """metadata.json for the item, as a job's own finish writes it: the job answers its
    caller from it (the status endpoint's path for a job without a durable history)."""
    outcome = replace(outcome, metadata_blob=metadata_name(item.job_id))
    finish = FinishInput(
        job_id=item.job_id, request=job.request, outcome=outcome, attempts=(), caller=job.caller
    )
    metadata = build_metadata(finish, settings, datetime.now(UTC))
    metadata["billing"] = "batch"
    images.put(
        name=metadata_name(item.job_id),
        data=json.dumps(metadata, indent=2).encode(),
        content_type=JSON,
    )
    return outcome
