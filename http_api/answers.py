"""JSON answers and the URLs the API hands out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import azure.functions as func

from storage.protocol import JSON


def json_answer(
    body: Mapping[str, Any], status: int, *, headers: Mapping[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype=JSON, headers=dict(headers or {})
    )


def status_url(req: func.HttpRequest, job_id: str) -> str:
    """The job's status URL, from the URL this request came to: POST /api/images,
    GET /api/images/{id} and POST /api/images/{id}/cancel all sit under /api/images."""
    base = str(req.url).split("?", 1)[0].rstrip("/")
    images = base[: base.rindex("/images") + len("/images")] if "/images" in base else base
    return f"{images}/{job_id}"
