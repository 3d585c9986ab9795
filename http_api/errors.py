"""Every failure the HTTP handlers can meet, and the ONE mapping from a failure to an answer.

    ImageJobError (rules.errors)          the project's base; carries the job id
    ├── RequestInvalid                    400, names the field
    ├── SettingsInvalid                   500 settings_invalid (logged with the setting's name)
    ├── RecordUnreadable (rules.records)  503 record_unreadable (a newer deployment's record)
    └── EdgeError                         raised by the HTTP edge itself
        ├── JobNotFound                   404: unknown id, or another caller's job
        ├── IdentityRequired              403: the list asked by the shared default caller
        ├── NoSuchRoute                   404: a path the API does not have
        ├── MethodNotAllowed              405 + Allow: a path of the API, another method
        ├── KeyConflict                   409: an Idempotency-Key reused for another body
        ├── JobNotEnded                   409: a client's timings for a job without metadata.json
        ├── UnsupportedMediaType          415: a body of a type the endpoint does not take
        ├── StoreUnavailable              503 + Retry-After: the job store or Blob failed (named)
        └── NoFreeJobId                   500: every generation under an id base is taken
    azure.core AzureError                 503 + Retry-After: Blob failed where no wrapper caught it
    TimeoutError                          503 + Retry-After: the work took longer than its bound:
                                          ``blob_timeout`` when a Blob call was what it waited
                                          on (``blob_timed``, ``blob_call``), else
                                          ``store_timeout`` (the durable job store)
    any other Exception                   500 internal_error (a bug: logged with its traceback)

Every answer is the JSON error envelope ``{"error": {"code", "message", "field"}}``: never an
empty body, never a traceback, never a setting's value or a key. ``answer_for`` is used by all
handlers (through http_api.blueprint); tests/app/test_http_errors.py proves every kind is mapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import Iterator
from typing import Any, cast

import azure.functions as func
from azure.core.exceptions import AzureError

from http_api.answers import json_answer
from rules.errors import ImageJobError, RequestInvalid, SettingsInvalid
from rules.records import RecordUnreadable
from storage.protocol import JSON, AsyncImageStore

log = logging.getLogger("imagejobs.http")

# How long a client should wait before trying again after a 503 (seconds).
RETRY_AFTER_UNAVAILABLE_S = 5


class EdgeError(ImageJobError):
    """A failure the HTTP edge itself raises; always carries the job id where there is one."""


class JobNotFound(EdgeError):
    """No such job, or not the caller's (the same answer, so ids cannot be probed)."""

    def __init__(self, job_id: str) -> None:
        super().__init__("no such image job", job_id=job_id)


class BatchNotFound(EdgeError):
    """No such batch, or not the caller's (the same answer, so ids cannot be probed)."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        super().__init__("no such batch")


class IdentityRequired(EdgeError):
    """What only a caller with an identity of its own may ask (the list of its jobs): the
    shared default caller would see every key holder's jobs."""

    def __init__(self) -> None:
        super().__init__("an identity of the caller's own is required")


class NoSuchRoute(EdgeError):
    """No route of the API has this path."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"no such route: {path}")


class MethodNotAllowed(EdgeError):
    """A route of the API with other methods."""

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        self.method = method
        self.allowed = allowed
        super().__init__(f"{method} is not allowed here")


class UnsupportedMediaType(EdgeError):
    """A request body declared as a type the endpoint does not take; ``accepts`` names what it
    takes, and ``note`` when one of them is for a purpose of its own."""

    def __init__(
        self, content_type: str, *, accepts: tuple[str, ...] = (JSON,), note: str = ""
    ) -> None:
        self.content_type = content_type
        self.accepts = accepts
        self.note = note
        super().__init__(f"one of {', '.join(accepts)} is expected, not {content_type}")


class KeyConflict(EdgeError):
    """The Idempotency-Key was used before with a different request body."""

    def __init__(self, job_id: str) -> None:
        super().__init__("the Idempotency-Key was used for a different request", job_id=job_id)


class JobNotEnded(EdgeError):
    """The caller's job has no metadata.json yet (it is running, or its record could not be
    written): a client's timings have nowhere to go."""

    def __init__(self, job_id: str) -> None:
        super().__init__("the job has not ended", job_id=job_id)


# The two stores behind the edge, as answers and logs name them.
JOB_STORE = "the durable job store"
BLOB = "Blob storage"


class StoreUnavailable(EdgeError):
    """The durable job store or Blob (``component``) answered with an error or not at all:
    whether the job exists cannot be told, so nothing is guessed (guessing "absent" could start
    a second job)."""

    def __init__(self, what: str, *, job_id: str | None = None, component: str = JOB_STORE) -> None:
        self.component = component
        super().__init__(what, job_id=job_id)


def blob_failure(exc: BaseException, *, job_id: str | None = None) -> StoreUnavailable:
    """What a failed Blob call is at the edge: the store failed (a 503), never a guess."""
    return StoreUnavailable(f"Blob failed: {type(exc).__name__}", job_id=job_id, component=BLOB)


# Set on the cancellation that ends a bounded wait (asyncio.timeout) while a Blob call was what
# the wait was on: the TimeoutError it becomes then names Blob, not the durable job store.
_BLOB_WAITED = "imagejobs_blob_waited"


@contextlib.contextmanager
def blob_wait() -> Iterator[None]:
    """Around an await on Blob: a timeout that cancels it is known as Blob's
    (``blob_timed_out``)."""
    try:
        yield
    except asyncio.CancelledError as exc:
        setattr(exc, _BLOB_WAITED, True)
        raise


@contextlib.contextmanager
def blob_call(*, job_id: str | None = None) -> Iterator[None]:
    """Around one Blob call: any failure inside is ``blob_failure``, and a timeout that ends it
    is Blob's."""
    try:
        with blob_wait():
            yield
    except Exception as exc:
        raise blob_failure(exc, job_id=job_id) from exc


def blob_timed_out(exc: BaseException) -> bool:
    """Whether a TimeoutError ended a wait on a Blob call (see ``blob_wait``)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if getattr(cause, _BLOB_WAITED, False):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


class _BlobTimed:
    """An AsyncImageStore whose every awaited call runs in ``blob_wait``."""

    def __init__(self, store: AsyncImageStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if not inspect.iscoroutinefunction(found):
            return found

        @functools.wraps(found)
        async def call(*args: Any, **kwargs: Any) -> Any:
            with blob_wait():
                return await found(*args, **kwargs)

        return call


def blob_timed(store: AsyncImageStore) -> AsyncImageStore:
    """The edge's Blob store with its calls known as Blob's: a bounded wait that ends while one
    of them has not answered is a ``blob_timeout``, not the job store's ``store_timeout``."""
    return cast(AsyncImageStore, _BlobTimed(store))


class NoFreeJobId(EdgeError):
    """Every generation tried under the request's id base belongs to another finished job."""

    def __init__(self, job_id: str, tried: int) -> None:
        super().__init__(f"no free job id in {tried} generations", job_id=job_id)


def answer_for(exc: BaseException) -> func.HttpResponse:
    """The answer to ``exc``: the one place that turns a failure into an HTTP answer."""
    match exc:
        case RequestInvalid():
            return error_answer(400, exc.code, exc.message, exc.field)
        case JobNotFound():
            return error_answer(404, "not_found", f"no image job {exc.job_id}", "id")
        case BatchNotFound():
            return error_answer(404, "not_found", f"no batch {exc.batch_id[:64]}", "id")
        case IdentityRequired():
            return error_answer(
                403,
                "identity_required",
                "listing jobs needs a caller identity (Easy Auth); without one every key "
                "holder is the same caller",
                "x-ms-client-principal-id",
            )
        case NoSuchRoute():
            return error_answer(404, "no_such_route", "no such route; see POST /api/images", "path")
        case MethodNotAllowed():
            return json_answer(
                {
                    "error": {
                        "code": "method_not_allowed",
                        "message": f"{exc.method[:16]} is not allowed here; use "
                        + " or ".join(exc.allowed),
                        "field": "method",
                    }
                },
                405,
                headers={"Allow": ", ".join(exc.allowed)},
            )
        case UnsupportedMediaType():
            note = f", {exc.note}" if exc.note else ""
            return error_answer(
                415,
                "unsupported_media_type",
                f"the body must be {' or '.join(exc.accepts)} (Content-Type){note}",
                "Content-Type",
            )
        case KeyConflict():
            return error_answer(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
                "Idempotency-Key",
            )
        case JobNotEnded():
            return error_answer(
                409,
                "job_not_ended",
                f"job {exc.job_id} has no metadata.json: it is still running, or its record "
                "could not be written",
                "id",
            )
        case StoreUnavailable():
            log.error("%s failed (job %s): %s", exc.component, exc.job_id, exc.message)
            return _unavailable("store_error", f"{exc.component} failed; try again")
        case RecordUnreadable():
            log.error("a record of job %s could not be read: %s", exc.job_id, exc.message)
            return _unavailable(
                "record_unreadable", "the job's record could not be read; try again"
            )
        case AzureError():
            # Blob failed outside our own wrappers (the store's first use, say). Azurite older
            # than the Blob SDK refuses its API version: say how to start it.
            hint = (
                " (the storage emulator refuses this API version: start Azurite with "
                "--skipApiVersionCheck, as make run does)"
                if "api version" in str(exc).lower() or "x-ms-version" in str(exc).lower()
                else ""
            )
            log.error("%s failed: %s%s", BLOB, type(exc).__name__, hint)
            return _unavailable("store_error", f"{BLOB} failed; try again")
        case TimeoutError() if blob_timed_out(exc):
            log.error("%s did not answer in time", BLOB)
            return _unavailable("blob_timeout", f"{BLOB} did not answer in time; try again")
        case TimeoutError():
            log.error("%s did not answer in time", JOB_STORE)
            return _unavailable("store_timeout", f"{JOB_STORE} did not answer in time; try again")
        case SettingsInvalid():
            log.error("the service is misconfigured: %s", exc)
            return error_answer(500, "settings_invalid", "the service is misconfigured", "settings")
        case NoFreeJobId():
            log.error("job %s: %s", exc.job_id, exc.message)
            return error_answer(
                500, "no_free_job_id", "no job id is free for this request", "Idempotency-Key"
            )
        case _:
            log.error("internal error answering a request", exc_info=exc)
            return error_answer(500, "internal_error", "the service failed; try again", "service")


def error_answer(status: int, code: str, message: str, field: str) -> func.HttpResponse:
    return json_answer({"error": {"code": code, "message": message, "field": field}}, status)


def _unavailable(code: str, message: str) -> func.HttpResponse:
    return json_answer(
        {"error": {"code": code, "message": message, "field": "service"}},
        503,
        headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)},
    )
