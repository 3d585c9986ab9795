"""The storage protocol and the blob layout of a job (pure: names only)."""

from __future__ import annotations

from typing import Protocol


class ImageStore(Protocol):
    """Keyword-only, so a call site always says which blob and what kind of content it writes."""

    def put(self, *, name: str, data: bytes, content_type: str) -> None: ...

    def get(self, *, name: str) -> bytes | None:
        """The blob's bytes, or None when it does not exist."""
        ...

    def read_link(self, *, name: str, ttl_s: int) -> str:
        """A read-only link to the blob that expires after ``ttl_s`` seconds."""
        ...


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


def metadata_name(job_id: str) -> str:
    return f"{job_id}/metadata.json"


def key_record_name(id_base: str) -> str:
    """Where an Idempotency-Key's answer is kept: named by the HMAC id base, never the key."""
    return f"keys/{id_base}.json"
