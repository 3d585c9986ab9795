"""What every handler reads of a request the same way: the media type it declares, a JSON body,
the job id in its path; and the clock handlers take (a parameter, so tests pass their own).

Each refusal raises the edge's own error (http_api.errors), which ``answer_for`` maps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import azure.functions as func

from http_api.errors import JobNotFound, UnsupportedMediaType
from rules.dedup import is_job_id
from rules.errors import RequestInvalid
from storage.protocol import JSON

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def declared_type(req: func.HttpRequest) -> str:
    """The body's media type as declared (``Content-Type`` without parameters, lowercase);
    empty when none is declared."""
    return str(req.headers.get("content-type", "")).split(";", 1)[0].strip().lower()


def check_json_type(req: func.HttpRequest) -> None:
    """A body declared as something other than JSON is refused (415); an undeclared one is read
    as JSON, as clients that send JSON without saying so expect."""
    declared = declared_type(req)
    if declared and declared != JSON and not declared.endswith("+json"):
        raise UnsupportedMediaType(declared)


def json_body(req: func.HttpRequest) -> object:
    """The body as JSON; RequestInvalid (``body``, ``invalid_json``) when it is not JSON, not
    UTF-8, or nested past any sense."""
    try:
        return req.get_json()
    except (ValueError, RecursionError):
        raise RequestInvalid("body", "invalid_json", "the body must be JSON") from None


def path_job_id(req: func.HttpRequest) -> str:
    """The ``{id}`` of the route; JobNotFound (a 404, before any look at the store) when it is
    not a job id at all."""
    job_id = str(req.route_params.get("id", ""))
    if not is_job_id(job_id):
        raise JobNotFound(job_id)
    return job_id
