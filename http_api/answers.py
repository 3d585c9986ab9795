"""JSON answers and the URLs the API hands out.

Answers are camelCase throughout (``stateText``, ``timings.firstByteMs``,
``request.outputFormat``); what the service stores and logs (metadata.json, the job event) keeps
the records' snake_case, the names KQL queries and the OpenAI API use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import azure.functions as func

from storage.protocol import JSON


def json_answer(
    body: Mapping[str, Any], status: int, *, headers: Mapping[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype=JSON, headers=dict(headers or {})
    )


def status_url(req: func.HttpRequest, job_id: str, public_base_url: str | None) -> str:
    """The job's status URL, usable at once by the caller who gets it.

    Built on ``public_base_url`` (IMAGE_PUBLIC_BASE_URL, e.g. ``https://host/api``) when set,
    never on a client-supplied Host alone; else on the URL this request came to (POST
    /api/images, GET /api/images/{id} and POST /api/images/{id}/cancel all sit under
    /api/images). A caller that sent its function key as ``?code=`` gets it back on the URL,
    in the same form, so the link works for it as it is.
    """
    if public_base_url:
        images = f"{public_base_url.rstrip('/')}/images"
    else:
        base = str(req.url).split("?", 1)[0].rstrip("/")
        images = base[: base.rindex("/images") + len("/images")] if "/images" in base else base
    url = f"{images}/{quote(job_id, safe='')}"
    code = req.params.get("code")
    return f"{url}?{urlencode({'code': code})}" if code else url


def camel_keys(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with its top-level keys in camelCase (``first_byte_ms`` -> ``firstByteMs``)."""
    return {_camel(key): value for key, value in record.items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
