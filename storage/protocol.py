"""The storage protocol and the blob layout of a job (pure: names only)."""

from __future__ import annotations

from typing import Protocol

# What ImageStore.put takes: bytes, or a view of the buffer an image was decoded into as it
# arrived (activities.image_stream.ImageBuffer), which a store writes without copying it whole.
BlobData = bytes | memoryview


class ImageStore(Protocol):
    """Keyword-only, so a call site always says which blob and what kind of content it writes."""

    def put(self, *, name: str, data: BlobData, content_type: str) -> None: ...

    def put_new(self, *, name: str, data: bytes, content_type: str) -> bool:
        """Create the blob unless one exists (one conditional request: of two callers, exactly
        one creates it); False when it already existed."""
        ...

    def get(self, *, name: str) -> bytes | None:
        """The blob's bytes, or None when it does not exist."""
        ...

    def read_link(self, *, name: str, ttl_s: int) -> str:
        """A read-only link to the blob that expires after ``ttl_s`` seconds."""
        ...


class PageTokenInvalid(Exception):
    """A list page token the store refuses (not one it handed out, or expired)."""

    def __init__(self, token: str) -> None:
        super().__init__("not a page token of this list")
        self.token = token


class AsyncImageStore(Protocol):
    """The same store, for code on an event loop (the HTTP edge): no thread per call."""

    async def put(self, *, name: str, data: bytes, content_type: str) -> None: ...

    async def get(self, *, name: str) -> bytes | None: ...

    async def list_page(
        self, *, prefix: str, limit: int, after: str | None
    ) -> tuple[list[str], str | None]:
        """Up to ``limit`` blob names under ``prefix`` in name order, from where ``after`` (a
        token this call returned) left off; and the token for the next page, None at the end.
        Raises PageTokenInvalid for a token the store refuses."""
        ...

    def read_link(self, *, name: str, ttl_s: int) -> str:
        """As ImageStore.read_link; may block (a user-delegation key): call it off the loop
        unless ``links_are_local``."""
        ...

    @property
    def links_are_local(self) -> bool:
        """True when read_link signs with a key at hand (no network call)."""
        ...

    async def get_bounded(
        self, *, name: str, max_bytes: int, container: str | None = None
    ) -> bytes | None:
        """The blob's bytes (in ``container``, default the store's own), None when it does not
        exist; BlobTooLarge, before its bytes are read, when it has more than ``max_bytes``."""
        ...

    async def put_new(self, *, name: str, data: bytes, content_type: str) -> bool:
        """Write the blob unless it exists (one round trip); False when it already did."""
        ...

    def write_link(self, *, name: str, ttl_s: int) -> str:
        """A link that may create or overwrite this one blob, and do nothing else, until it
        expires after ``ttl_s`` seconds; may block as read_link does."""
        ...

    async def get_versioned(self, *, name: str) -> tuple[bytes, str] | None:
        """The blob's bytes and its ETag (for ``put_if_unchanged``), None when it does not
        exist."""
        ...

    async def put_if_unchanged(
        self, *, name: str, data: bytes, content_type: str, etag: str
    ) -> bool:
        """Overwrite the blob only if its ETag is still ``etag`` (one round trip, the service
        checks it): False when it changed, or went, since it was read."""
        ...


class BlobTooLarge(Exception):
    """A blob read with a bound has more bytes than the bound."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(f"the blob has {size} bytes")


JSON = "application/json"
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


def image_name(job_id: str, output_format: str, index: int, count: int) -> str:
    """``{id}/image.{ext}``, or ``{id}/image-{k}.{ext}`` when the job makes several images."""
    ext = EXTENSIONS[output_format]
    return f"{job_id}/image.{ext}" if count == 1 else f"{job_id}/image-{index}.{ext}"


def kept_image_name(job_id: str, output_format: str, attempt: int, index: int) -> str:
    """An image a failed attempt received (n > 1: a later one failed): kept, apart."""
    return f"{job_id}/attempt-{attempt}-image-{index}.{EXTENSIONS[output_format]}"


def preview_name(job_id: str, output_format: str, attempt: int, index: int) -> str:
    # The attempt is in the name so that a retry's previews never overwrite, or pass for, the
    # previews of an attempt that failed.
    return f"{job_id}/preview-{attempt}-{index}.{EXTENSIONS[output_format]}"


def progress_name(job_id: str, attempt: int) -> str:
    # One per attempt, so a late write of an earlier attempt never passes for a later one.
    return f"{job_id}/progress-{attempt}.json"


def cancel_name(job_id: str) -> str:
    """The cancel marker: the running activity watches for it and closes its stream."""
    return f"{job_id}/cancel.json"


def route_cool_down_name(route: str) -> str:
    """``routes/{route}/cool-down.json``: the route's latest 429 pause, which every attempt of
    the route reads before its send (rules.route_records.CoolDown)."""
    return f"routes/{route}/cool-down.json"


def route_slot_name(route: str, key: str) -> str:
    """``routes/{route}/slots/{key}.json``: the claim of one send slot of the route, created only
    if absent by the attempt that sends in it (rules.route_records.SlotClaim). Never rewritten;
    left for the storage account's lifecycle rule to delete (infra/app/api.bicep)."""
    return f"routes/{route}/slots/{key}.json"


def metadata_name(job_id: str) -> str:
    return f"{job_id}/metadata.json"


def webhooks_name(job_id: str) -> str:
    """``{id}/webhooks.json``: the deliveries of the job's webhook events, rewritten after each
    attempt (rules.webhooks.WebhookLog); they go on after metadata.json is written."""
    return f"{job_id}/webhooks.json"


def input_name(sha256: str, image_format: str) -> str:
    """``inputs/{sha256}.{ext}``: an edit's input image, stored once by its content hash and
    shared by every job that uses it."""
    return f"inputs/{sha256}.{EXTENSIONS[image_format]}"


def upload_name(caller: str, upload_id: str) -> str:
    """``uploads/{caller digest}/{upload id}``: where a caller's upload link writes (a caller
    can only reference its own uploads). Uploads are read, never deleted, by the app: a
    lifecycle rule on ``uploads/`` removes them (docs/job-contract.md)."""
    return f"uploads/{caller}/{upload_id}"


def key_record_name(id_base: str) -> str:
    """Where an Idempotency-Key's answer is kept: named by the HMAC id base, never the key."""
    return f"keys/{id_base}.json"


# Newest first in name order: a name's time part counts down.
_INVERTED_EPOCH_MS = 10**14


def caller_index_name(caller: str, created_ms: int, job_id: str) -> str:
    """``callers/{caller digest}/{inverted ms}-{id}``: one empty blob per job a caller started,
    so the caller's jobs list newest first by name, a page at a time."""
    return f"callers/{caller}/{_INVERTED_EPOCH_MS - created_ms:014d}-{job_id}"


def caller_index_prefix(caller: str) -> str:
    return f"callers/{caller}/"


def job_of_index_name(name: str) -> str:
    return name.rsplit("/", 1)[-1].split("-", 1)[1]


def index_created_ms(name: str) -> int:
    """The job's created_at (epoch ms) a caller index entry was written with."""
    return _INVERTED_EPOCH_MS - int(name.rsplit("/", 1)[-1].split("-", 1)[0])


# --- the batches container (rules.batches) -------------------------------------------------

INCOMING_PREFIX = "incoming/"


class BatchStore(Protocol):
    def put(self, *, name: str, data: bytes, content_type: str) -> None: ...

    def get(self, *, name: str) -> bytes | None: ...

    def list_names(self, *, prefix: str, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` blobs under ``prefix``: (name, etag)."""
        ...

    def delete(self, *, name: str) -> None: ...

    def get_if_unchanged(self, *, name: str, etag: str) -> bytes | None:
        """The blob's bytes only while its ETag is still ``etag`` (If-Match); None when it is
        gone or was written again since."""
        ...

    def delete_if_unchanged(self, *, name: str, etag: str) -> bool:
        """Delete the blob only while its ETag is still ``etag`` (If-Match): True when deleted
        or already gone, False when it was written again since (a new upload, kept)."""
        ...

    def read_link(self, *, name: str, ttl_s: int) -> str: ...


def manifest_name(batch_id: str) -> str:
    """A claimed manifest: the batch reads it from here, whichever way it came in."""
    return f"claimed/{batch_id}.jsonl"


def wave_name(batch_id: str, wave: int) -> str:
    return f"{batch_id}/wave-{wave}.json"


def line_errors_name(batch_id: str) -> str:
    return f"{batch_id}/line-errors.jsonl"


def results_name(batch_id: str, wave: int) -> str:
    return f"{batch_id}/results-{wave}.jsonl"


def report_name(batch_id: str, extension: str) -> str:
    return f"{batch_id}/report.{extension}"


def batch_cancel_name(batch_id: str) -> str:
    """A cancelled batch's marker, in the IMAGES container: every running item's attempt
    watches it beside its own job's marker (activities.attempt)."""
    return f"batch-cancel/{batch_id}.json"
