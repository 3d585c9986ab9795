"""What every handler reads of a request the same way: its query parameters, the media type it
declares, a JSON body, the job id in its path; and the clock handlers take (a parameter, so tests
pass their own).

Query parameters are held to the endpoint's own names, as a JSON body is held to its fields: a
name the endpoint does not take is refused (400 ``unknown_parameter``), and one that differs from
a known name only by case (``dryrun``) is refused naming the right spelling, never read as
absent (``?dryrun=true`` would otherwise start a real, billed batch). A boolean parameter is
``true`` or ``false`` in any case; anything else (``1``, ``yes``, empty) is a 400.

Each refusal raises the edge's own error (http_api.errors), which ``answer_for`` maps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import azure.functions as func

from http_api.errors import JobNotFound, UnsupportedMediaType
from rules.dedup import is_job_id
from rules.errors import RequestInvalid
from rules.json_text import JsonRefused, strict_json
from storage.protocol import JSON

Clock = Callable[[], datetime]

# The function key as a query parameter (the host reads it; URLs the API hands out carry it).
KEY_PARAMETER = "code"
# How much of an unknown parameter's name a message repeats.
_NAME_SHOWN = 64


def utc_now() -> datetime:
    return datetime.now(UTC)


def check_query(req: func.HttpRequest, *known: str) -> None:
    """Refuses a query parameter the endpoint does not take (``known``, and the function key's
    ``code`` everywhere): 400 ``unknown_parameter`` naming it, and the right spelling when it
    differs from a known one only by case."""
    allowed = (*known, KEY_PARAMETER)
    by_case = {name.lower(): name for name in allowed}
    for name in req.params:
        if name in allowed:
            continue
        shown = name[:_NAME_SHOWN]
        right = by_case.get(name.lower())
        if right is not None:
            message = (
                f"unknown query parameter {shown!r}: did you mean {right!r}? "
                "(parameter names are case-sensitive)"
            )
        elif known:
            message = f"unknown query parameter {shown!r}; this endpoint takes " + ", ".join(known)
        else:
            message = f"unknown query parameter {shown!r}; this endpoint takes none"
        raise RequestInvalid(shown, "unknown_parameter", message)


def bool_param(req: func.HttpRequest, name: str) -> bool:
    """A boolean query parameter: ``true`` or ``false`` in any case, false when absent; any
    other value (``1``, ``yes``, empty) is a 400 naming it, never taken for either."""
    raw = req.params.get(name)
    if raw is None:
        return False
    value = str(raw).lower()
    if value not in ("true", "false"):
        raise RequestInvalid(name, "invalid_value", f"{name} must be true or false")
    return value == "true"


def declared_type(req: func.HttpRequest) -> str:
    """The body's media type as declared (``Content-Type`` without parameters, lowercase);
    empty when none is declared."""
    return str(req.headers.get("content-type", "")).split(";", 1)[0].strip().lower()


def check_json_type(
    req: func.HttpRequest, *, accepts: tuple[str, ...] = (JSON,), note: str = ""
) -> None:
    """A body declared as something other than JSON is refused (415, naming what the endpoint
    takes: ``accepts``, and ``note``); an undeclared one is read as JSON, as clients that send
    JSON without saying so expect."""
    declared = declared_type(req)
    if declared and declared != JSON and not declared.endswith("+json"):
        raise UnsupportedMediaType(declared, accepts=accepts, note=note)


def json_body(req: func.HttpRequest) -> object:
    """The body as JSON; RequestInvalid (``body``, ``invalid_json``) when it is not JSON, not
    UTF-8, nested past any sense, or uses what strict JSON has not (NaN, Infinity, a key
    repeated in one object: each named)."""
    try:
        return strict_json(req.get_body().decode("utf-8"))
    except JsonRefused as exc:
        raise RequestInvalid("body", "invalid_json", f"the body must be JSON: {exc}") from None
    except (ValueError, RecursionError):
        raise RequestInvalid("body", "invalid_json", "the body must be JSON") from None


def path_job_id(req: func.HttpRequest) -> str:
    """The ``{id}`` of the route; JobNotFound (a 404, before any look at the store) when it is
    not a job id at all."""
    job_id = str(req.route_params.get("id", ""))
    if not is_job_id(job_id):
        raise JobNotFound(job_id)
    return job_id
