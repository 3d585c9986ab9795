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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from activities.batch_items import JSONL, item_result, read_wave, write_results
from activities.finish import build_metadata
from activities.image_check import check_image
from rules.batch_records import (
    BatchApiCall,
    CollectChunk,
    CollectedChunk,
    CollectEnd,
    ItemResult,
    Upstream,
    UpstreamCancel,
    WaveItem,
)
from rules.batches import BATCH_API_URL, BATCH_DISCOUNT
from rules.cost import attempt_cost
from rules.job_records import FinishInput, JobInput, JobState, Outcome
from rules.outcome import Failure, FailureKind, Layer, StoredImage, Timings
from rules.redaction import scrub
from rules.settings import AppSettings, RouteSettings
from rules.timing import iso_utc
from storage.protocol import JSON, BatchStore, ImageStore, image_name, metadata_name

log = logging.getLogger("imagejobs.batch_api")

# Upstream statuses after which a batch changes no more.
FINISHED = frozenset({"completed", "failed", "expired", "cancelled"})
TIMEOUT = httpx.Timeout(60.0, connect=10.0)


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

    def lines_from(self, file_id: str, offset: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """A file's JSONL lines from byte ``offset`` on, streamed (an output file of images can
        be large), each with the byte offset just after it. Asks for the range (``Range``); a
        server that sends the whole file instead has the bytes before ``offset`` skipped."""
        url = self.url(f"/files/{file_id}/content")
        # Offsets count the file's own bytes: never a compressed transfer of them.
        headers = {**self.headers(), "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with self.client.stream("GET", url, headers=headers, timeout=TIMEOUT) as response:
            if response.status_code == 416 and offset:
                # A range that starts at the file's end (the previous chunk ended on its last
                # line): nothing is left to read.
                response.read()
                return
            if response.status_code >= 400:
                response.read()
                raise BatchApiError(
                    f"/files/{file_id}/content", response.status_code, response.text
                )
            skip = 0 if response.status_code == 206 else offset
            position = offset - skip  # the file's byte offset of the next byte read
            yield from _lines(response.iter_bytes(), skip=skip, position=position)


def _lines(
    reads: Iterable[bytes], *, skip: int = 0, position: int = 0
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSONL lines of ``reads`` (a file's bytes as they arrive), each with the file's byte
    offset just after it; the first ``skip`` bytes dropped, ``position`` the offset of the
    first byte read. Linear in the bytes: a line of a 4K image's base64 (tens of MiB) arrives
    in thousands of small reads, and each read is searched once, from where the last search
    stopped, never the whole line again."""
    pending = bytearray()
    searched = 0  # pending[:searched] holds no newline
    for read in reads:
        data = memoryview(read)
        if skip:
            dropped = min(skip, len(data))
            data, skip = data[dropped:], skip - dropped
            position += dropped
        pending += data
        start = 0
        while (end := pending.find(b"\n", max(searched, start))) >= 0:
            line = pending[start : end + 1]
            position += len(line)
            if line.strip():
                yield position, json.loads(line)
            start = end + 1
        if start:
            del pending[:start]
        searched = len(pending)
    if pending.strip():
        position += len(pending)
        yield position, json.loads(pending)


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


# Batches asked for per page when looking for ours (the API's maximum).
LIST_PAGE = 100


def find(api: BatchApi, store: BatchStore, *, batch_id: str) -> Upstream | None:
    """The upstream batch of ours, if one was created: the recorded one, else one tagged with
    our id, looked for through every page of the route's batches (newest first)."""
    recorded = store.get(name=upstream_record(batch_id))
    if recorded is not None:
        return Upstream.from_json(json.loads(recorded))
    params: dict[str, Any] = {"limit": LIST_PAGE}
    while True:
        listed = api.call("GET", "/batches", params=params)
        data = listed.get("data") or []
        for answer in data:
            if (answer.get("metadata") or {}).get("batch_id") == batch_id:
                found = Upstream.from_answer(answer)
                _record(store, batch_id, found)
                return found
        if not listed.get("has_more") or not data:
            return None
        params = {"limit": LIST_PAGE, "after": str(listed.get("last_id") or data[-1]["id"])}


def submit(api: BatchApi, store: BatchStore, *, batch_id: str, waves: int) -> Upstream:
    """The upstream batch for ours: the recorded one, one tagged with our id, or a new one."""
    found = find(api, store, batch_id=batch_id)
    if found is not None:
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


def upstream_cancel_record(batch_id: str) -> str:
    return f"{batch_id}/upstream-cancel.json"


def cancel(api: BatchApi, upstream: str) -> Upstream:
    return Upstream.from_answer(api.call("POST", f"/batches/{upstream}/cancel"))


def cancel_for_failure(api: BatchApi, store: BatchStore, call: BatchApiCall) -> Upstream | None:
    """A batch that failed on our side stops billing upstream: its upstream batch (the one
    named, else the recorded or tagged one) is cancelled, and the cancel recorded with why
    (``{batch}/upstream-cancel.json``). None: no upstream batch was ever created."""
    upstream_id = call.upstream
    if upstream_id is None:
        found = find(api, store, batch_id=call.batch_id)
        upstream_id = found.batch if found is not None else None
    if upstream_id is None:
        return None
    current = poll(api, upstream_id)
    if current.status not in FINISHED and current.status != "cancelling":
        current = cancel(api, upstream_id)
    record = UpstreamCancel(
        batch_id=call.batch_id,
        upstream=current,
        reason=call.reason,
        at=iso_utc(datetime.now(UTC)),
    )
    store.put(
        name=upstream_cancel_record(call.batch_id),
        data=json.dumps(record.to_json()).encode(),
        content_type=JSON,
    )
    log.warning(
        "batch %s failed (%s); its upstream batch %s is %s",
        call.batch_id,
        call.reason,
        upstream_id,
        current.status,
    )
    return current


# One collect chunk reads at most this many lines, and stops after the line that passes this
# many bytes: a chunk of 4K images stays well inside one activity's time limit.
CHUNK_LINES = 50
CHUNK_BYTES = 256 * 1024 * 1024


def chunk_results_name(batch_id: str, kind: str, offset: int) -> str:
    return f"{batch_id}/collect/{kind}-{offset}.jsonl"


def _items(batches: BatchStore, batch_id: str, waves: int) -> dict[str, WaveItem]:
    return {
        item.job_id: item for wave in range(waves) for item in read_wave(batches, batch_id, wave)
    }


def collect_chunk(
    api: BatchApi,
    batches: BatchStore,
    images: ImageStore,
    chunk: CollectChunk,
    settings: AppSettings,
    *,
    max_lines: int = CHUNK_LINES,
    max_bytes: int = CHUNK_BYTES,
) -> CollectedChunk:
    """One chunk of a file: each line's image checked and stored as its job's image, with the
    job's metadata.json, and the chunk's results written under a name of its own offset, so a
    chunk run again overwrites the same blobs (never a duplicate, never a loss)."""
    items = _items(batches, chunk.call.batch_id, chunk.call.waves)
    results: list[ItemResult] = []
    lines = 0
    next_offset: int | None = None
    for position, line in api.lines_from(chunk.file_id, chunk.offset):
        lines += 1
        item = items.get(str(line.get("custom_id")))
        if item is not None:
            outcome = _item_outcome(item, line, images, settings)
            results.append(item_result(item, outcome, billing="batch"))
        if lines >= max_lines or position - chunk.offset >= max_bytes:
            next_offset = position
            break
    name = chunk_results_name(chunk.call.batch_id, chunk.kind, chunk.offset)
    batches.put(
        name=name,
        data=b"".join(json.dumps(r.to_json()).encode() + b"\n" for r in results),
        content_type=JSONL,
    )
    return CollectedChunk(results=name, lines=lines, next_offset=next_offset)


def collect_end(
    batches: BatchStore, images: ImageStore, end: CollectEnd, settings: AppSettings
) -> int:
    """The batch's results (execution 0) from its chunks' results, the first line of an item
    winning; an item in no chunk (an expired or cancelled batch, or one that failed on our
    side) ended without an image, with its metadata.json. Returns the items counted."""
    batch_id = end.call.batch_id
    items = _items(batches, batch_id, end.call.waves)
    results: dict[str, ItemResult] = {}
    for name in end.chunks:
        data = batches.get(name=name)
        if data is None:
            raise RuntimeError(f"batch {batch_id}: collect results {name} are missing")
        for text in data.splitlines():
            if text.strip():
                result = ItemResult.from_json(json.loads(text))
                if result.job_id is not None and result.job_id not in results:
                    results[result.job_id] = result
    why = f"the Batch API batch ended {end.status} without this item"
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
