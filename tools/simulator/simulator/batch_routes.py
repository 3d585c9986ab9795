"""The Files and Batch API routes, as the official SDK's ``client.files`` and ``client.batches``
call them, on each route owner.

    OpenAI:    /v1/files, /v1/files/{id}, /v1/files/{id}/content, /v1/batches,
               /v1/batches/{id}, /v1/batches/{id}/cancel
    Azure:     the same under /openai/ with ``?api-version=...`` (``AzureOpenAI``), and under
               /openai/v1/ (the plain client on Azure's v1 path)

Each call is checked as the image routes are (Azure ``api-version``, then credentials, in the
owner's envelope), then answered from ``SimState.files`` and ``SimState.batches``. An upload is
stored as it is: the lines of a batch input file are read when the batch validates
(``batch_runner``), as the service does. These calls are not rate-limited and not in the ledger
(they cost nothing); the requests a batch runs are.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from aiohttp import BodyPartReader, web

from simulator import errors
from simulator.auth import check_auth
from simulator.batches import BATCH_ENDPOINTS, IMAGE_ENDPOINTS, Batch, new_batch_id
from simulator.config import ANY
from simulator.errors import ApiError
from simulator.files import FILE_PURPOSES, StoredFile
from simulator.generation import log_failure
from simulator.handlers import OPENAI_VERSION, Route
from simulator.state import SimState

__all__ = ["add_batch_routes"]

# Files of other purposes may be up to 512 MB (CreateFile's description); batch input files
# have their own limit, ``batch.max_file_bytes``.
MAX_FILE_BYTES = 512 * 1000 * 1000
# Uploaded batch files expire after 30 days unless ``expires_after`` says otherwise.
BATCH_FILE_LIFETIME_S = 30 * 86_400
# ``expires_after.seconds`` and ``output_expires_after.seconds``: 1 hour to 30 days.
LIFETIME_RANGE = (3600, 2_592_000)
METADATA_PAIRS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512

Action = Callable[["_Call"], Awaitable[web.StreamResponse]]


class _Call:
    """One Files or Batch API request: its owner, its headers, its answers."""

    def __init__(self, state: SimState, request: web.Request, route: Route) -> None:
        self.state = state
        self.request = request
        self.route = route
        self.owner: Literal["openai", "azure"] = "openai" if route == "openai" else "azure"
        self.settings = state.config.route(self.owner)
        self.started = time.monotonic()
        self.request_id = f"req_{uuid.uuid4().hex}"

    def admit(self) -> None:
        """Azure's ``api-version`` on the ``/openai/`` path, then the credentials."""
        if self.route == "azure":
            version = self.request.query.get("api-version")
            if not version:
                raise errors.azure_resource_not_found()
            versions = self.state.config.api_versions
            if versions != ANY and version not in versions:
                raise errors.api_version_not_supported()
        check_auth(self.route, self.settings, self.request.headers)

    def headers(self) -> dict[str, str]:
        elapsed_ms = (time.monotonic() - self.started) * 1000
        headers = {
            "x-request-id": self.request_id,
            "openai-version": OPENAI_VERSION,
            "openai-processing-ms": str(max(1, round(elapsed_ms))),
        }
        if self.owner == "azure":
            headers["apim-request-id"] = str(uuid.uuid4())
            headers["x-ms-region"] = self.settings.region
        return headers

    def json(self, body: Mapping[str, Any]) -> web.Response:
        return web.json_response(dict(body), headers=self.headers())

    def error(self, err: ApiError) -> web.Response:
        headers = self.headers()
        headers.update(err.headers)
        return web.json_response(err.envelope(), status=err.status, headers=headers)

    def now(self) -> int:
        return int(time.time())

    def after(self, start: int, service_s: float) -> int:
        """The Unix time ``service_s`` of service time after ``start`` (scaled like every
        duration)."""
        return start + math.ceil(self.state.scale.report(service_s))


def _handler(state: SimState, route: Route, action: Action) -> Callable[..., Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        call = _Call(state, request, route)
        try:
            call.admit()
            return await action(call)
        except ApiError as err:
            return call.error(err)
        except Exception as exc:
            log_failure(f"request {call.request_id}", exc)
            return call.error(errors.server_error())

    return handle


# --- bodies ---------------------------------------------------------------------------------------


async def _json_object(request: web.Request) -> Mapping[str, object]:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise errors.invalid_json() from None
    if not isinstance(body, dict):
        raise errors.invalid_request(
            "The request body must be a JSON object.", param=None, code="invalid_type"
        )
    return body


async def _multipart(
    request: web.Request, limit_for: Callable[[dict[str, str]], int]
) -> tuple[dict[str, str], tuple[str, bytes] | None]:
    """Text fields and the ``file`` part (name, bytes). The file is read in chunks and refused
    past ``limit_for(fields read so far)`` bytes (the SDK sends ``purpose`` first)."""
    content_type = request.content_type
    if content_type != "multipart/form-data":
        raise errors.invalid_request(
            f"Invalid Content-Type header ({content_type}), expected multipart/form-data.",
            param=None,
            code=None,
        )
    fields: dict[str, str] = {}
    upload: tuple[str, bytes] | None = None
    too_large = 0
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            continue
        if part.filename is None:
            fields[part.name or ""] = await part.text()
            continue
        limit = limit_for(fields)
        data = bytearray()
        while chunk := await part.read_chunk():
            if len(data) + len(chunk) > limit:
                too_large = limit  # keep reading (and dropping), so the answer can be sent
                continue
            data += chunk
        if part.name == "file":
            upload = (part.filename, bytes(data))
    if too_large:
        raise errors.file_too_large(too_large)
    return fields, upload


def _lifetime(value: object, name: str) -> int:
    """``seconds`` of an expiration policy: an integer from 1 hour to 30 days."""
    low, high = LIFETIME_RANGE
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise errors.invalid_value(
            name, f"Invalid '{name}': expected an integer between {low} and {high}."
        )
    return value


# --- files ----------------------------------------------------------------------------------------


def _file_or_404(call: _Call) -> StoredFile:
    file_id = call.request.match_info["file_id"]
    stored = call.state.files.get(file_id)
    if stored is None:
        raise errors.no_such_file(file_id)
    return stored


async def _create_file(call: _Call) -> web.StreamResponse:
    batch_limit = call.state.config.batch.max_file_bytes

    def limit_for(fields: dict[str, str]) -> int:
        return batch_limit if fields.get("purpose") == "batch" else MAX_FILE_BYTES

    fields, upload = await _multipart(call.request, limit_for)
    if upload is None:
        raise errors.missing_parameter("file")
    purpose = fields.get("purpose")
    if not purpose:
        raise errors.missing_parameter("purpose")
    if purpose not in FILE_PURPOSES:
        raise errors.invalid_value(
            "purpose",
            f"Invalid value for 'purpose': '{purpose}'. Supported values are: "
            + ", ".join(f"'{p}'" for p in FILE_PURPOSES)
            + ".",
        )
    filename, data = upload
    if purpose == "batch":
        if not filename.endswith(".jsonl"):
            raise errors.batch_file_not_jsonl()
        if len(data) > batch_limit:
            raise errors.file_too_large(batch_limit)
    lifetime: int | None = BATCH_FILE_LIFETIME_S if purpose == "batch" else None
    if "expires_after[seconds]" in fields or "expires_after[anchor]" in fields:
        if fields.get("expires_after[anchor]") != "created_at":
            raise errors.invalid_value(
                "expires_after.anchor", "Invalid 'expires_after.anchor': expected 'created_at'."
            )
        lifetime = _lifetime(fields.get("expires_after[seconds]"), "expires_after.seconds")
    created = call.now()
    stored = call.state.files.add(
        filename=filename,
        purpose=purpose,
        data=data,
        created_at=created,
        expires_at=call.after(created, lifetime) if lifetime is not None else None,
    )
    return call.json(stored.to_json())


def _page(
    call: _Call, items: Sequence[Mapping[str, Any]], *, default_limit: int, max_limit: int
) -> web.Response:
    """A cursor page ``{"object": "list", "data", "first_id", "last_id", "has_more"}`` of
    ``items`` (already in the answer's order), after the ``after`` id, at most ``limit``."""
    query = call.request.query
    limit_text = query.get("limit", str(default_limit))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= max_limit:
        raise errors.invalid_value(
            "limit", f"Invalid 'limit': expected an integer between 1 and {max_limit}."
        )
    limit = int(limit_text)
    after = query.get("after")
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(ids)
    data = list(items[start : start + limit])
    return call.json(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": start + limit < len(items),
        }
    )


async def _list_files(call: _Call) -> web.StreamResponse:
    order = call.request.query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise errors.invalid_value("order", "Invalid 'order': expected 'asc' or 'desc'.")
    files = call.state.files.list(purpose=call.request.query.get("purpose") or None)
    if order == "desc":
        files.reverse()
    items = [f.to_json() for f in files]
    return _page(call, items, default_limit=10_000, max_limit=10_000)


async def _retrieve_file(call: _Call) -> web.StreamResponse:
    return call.json(_file_or_404(call).to_json())


async def _delete_file(call: _Call) -> web.StreamResponse:
    stored = _file_or_404(call)
    call.state.files.delete(stored.id)
    return call.json({"id": stored.id, "object": "file", "deleted": True})


async def _file_content(call: _Call) -> web.StreamResponse:
    stored = _file_or_404(call)
    return web.Response(
        body=stored.data, content_type="application/octet-stream", headers=call.headers()
    )


# --- batches --------------------------------------------------------------------------------------

_BATCH_FIELDS = frozenset(
    {"input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after"}
)


def _string_field(body: Mapping[str, object], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise errors.missing_parameter(name)
    if not isinstance(value, str):
        raise errors.invalid_type(name, "a string", type(value).__name__)
    return value


def _endpoint(value: str, owner: str) -> str:
    """The batch's ``endpoint``: one CreateBatchRequest lists (on Azure with or without
    ``/v1``), and one the simulator serves."""
    known = value in BATCH_ENDPOINTS
    served = value in IMAGE_ENDPOINTS
    if owner == "azure":
        bare = value.removeprefix("/v1")
        known = bare in {e.removeprefix("/v1") for e in BATCH_ENDPOINTS}
        served = bare in {e.removeprefix("/v1") for e in IMAGE_ENDPOINTS}
    if not known:
        raise errors.invalid_value(
            "endpoint",
            f"Invalid value for 'endpoint': '{value}'. Supported values are: "
            + ", ".join(f"'{e}'" for e in BATCH_ENDPOINTS)
            + ".",
        )
    if not served:
        raise errors.invalid_value(
            "endpoint",
            f"The simulator serves batches for {', '.join(IMAGE_ENDPOINTS)} only, not '{value}'.",
        )
    return value


def _metadata(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.invalid_type("metadata", "an object", type(value).__name__)
    if len(value) > METADATA_PAIRS:
        raise errors.invalid_value(
            "metadata", f"Invalid 'metadata': at most {METADATA_PAIRS} pairs are allowed."
        )
    for key, item in value.items():
        if len(key) > METADATA_KEY_CHARS:
            raise errors.invalid_value(
                "metadata",
                f"Invalid 'metadata': keys are at most {METADATA_KEY_CHARS} characters.",
            )
        if not isinstance(item, str) or len(item) > METADATA_VALUE_CHARS:
            raise errors.invalid_value(
                "metadata",
                f"Invalid 'metadata': values are strings of at most {METADATA_VALUE_CHARS} "
                "characters.",
            )
    return dict(value)


def _output_lifetime(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.invalid_type("output_expires_after", "an object", type(value).__name__)
    if value.get("anchor") != "created_at":
        raise errors.invalid_value(
            "output_expires_after.anchor",
            "Invalid 'output_expires_after.anchor': expected 'created_at'.",
        )
    return _lifetime(value.get("seconds"), "output_expires_after.seconds")


async def _create_batch(call: _Call) -> web.StreamResponse:
    body = await _json_object(call.request)
    for name in body:
        if name not in _BATCH_FIELDS:
            raise errors.unknown_parameter(name)
    input_file_id = _string_field(body, "input_file_id")
    endpoint = _endpoint(_string_field(body, "endpoint"), call.owner)
    window = _string_field(body, "completion_window")
    if window != "24h":
        raise errors.invalid_value(
            "completion_window",
            f"Invalid value for 'completion_window': '{window}'. Supported values are: '24h'.",
        )
    metadata = _metadata(body.get("metadata"))
    output_lifetime = _output_lifetime(body.get("output_expires_after"))
    stored = call.state.files.get(input_file_id)
    if stored is None:
        raise errors.no_such_file(input_file_id)
    if stored.purpose != "batch":
        raise errors.batch_input_file_purpose(input_file_id, stored.purpose)
    created = call.now()
    batch = Batch(
        id=new_batch_id(),
        route=call.route,
        endpoint=endpoint,
        input_file_id=input_file_id,
        completion_window=window,
        created_at=created,
        expires_at=call.after(created, call.state.config.batch.completion_window_s),
        metadata=metadata,
        output_expires_after_s=output_lifetime,
    )
    store = call.state.batches
    store.add(batch)
    store.start(call.state, batch)
    return call.json(store.json(batch))


def _batch_or_404(call: _Call) -> Batch:
    batch_id = call.request.match_info["batch_id"]
    batch = call.state.batches.get(batch_id)
    if batch is None:
        raise errors.no_such_batch(batch_id)
    return batch


async def _retrieve_batch(call: _Call) -> web.StreamResponse:
    return call.json(call.state.batches.json(_batch_or_404(call)))


async def _cancel_batch(call: _Call) -> web.StreamResponse:
    batch = _batch_or_404(call)
    store = call.state.batches
    if not store.cancel(batch):
        raise errors.batch_not_cancellable(batch.id, batch.status)
    return call.json(store.json(batch))


async def _list_batches(call: _Call) -> web.StreamResponse:
    return _page(call, call.state.batches.list_json(), default_limit=20, max_limit=100)


# --- wiring ---------------------------------------------------------------------------------------


def add_batch_routes(app: web.Application, state: SimState) -> None:
    prefixes: tuple[tuple[str, Route], ...] = (
        ("/v1", "openai"),
        ("/openai", "azure"),
        ("/openai/v1", "azure_v1"),
    )
    for prefix, route in prefixes:

        def add(
            method: str, path: str, action: Action, prefix: str = prefix, route: Route = route
        ) -> None:
            app.router.add_route(method, prefix + path, _handler(state, route, action))

        add("POST", "/files", _create_file)
        add("GET", "/files", _list_files)
        add("GET", "/files/{file_id}", _retrieve_file)
        add("DELETE", "/files/{file_id}", _delete_file)
        add("GET", "/files/{file_id}/content", _file_content)
        add("POST", "/batches", _create_batch)
        add("GET", "/batches", _list_batches)
        add("GET", "/batches/{batch_id}", _retrieve_batch)
        add("POST", "/batches/{batch_id}/cancel", _cancel_batch)
