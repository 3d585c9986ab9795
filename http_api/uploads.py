"""POST /api/uploads: a short-lived link to which the caller writes one input image, and the id
by which a start request then names it (``{"images": [{"upload": id}]}``).

The link may create or overwrite that one blob and nothing else (a SAS with create and write
permission, signed with the account key, or a user-delegation key under managed identity), and
expires after UPLOAD_LINK_TTL_S. The blob sits under the caller's digest
(``uploads/{caller}/{id}``), so a caller can name only its own uploads. The starter reads it,
checks it, and copies it under its content hash (``inputs/{sha256}.{ext}``); the job never
reads the upload itself again, so writing to the link after the start changes nothing.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import azure.functions as func

from http_api.answers import json_answer
from http_api.caller import caller_of
from http_api.request_reading import Clock, check_query, utc_now
from rules.dedup import caller_digest
from rules.inputs import edit_rules
from rules.models import rules_for
from rules.settings import AppSettings
from rules.timing import iso_utc
from storage.protocol import AsyncImageStore, upload_name

# How long an upload link can be written to (seconds): minutes, as the caller uploads at once.
UPLOAD_LINK_TTL_S = 600


async def create_upload(
    req: func.HttpRequest,
    settings: AppSettings,
    store: AsyncImageStore,
    now: Clock = utc_now,
) -> func.HttpResponse:
    """201 ``{upload, url, method, headers, expiresAt, maxBytes}``: PUT the image's bytes to
    ``url`` with ``headers``, then name ``upload`` in POST /api/images. The body is ignored."""
    check_query(req)
    caller = caller_digest(settings.job_id_secret, caller_of(req, settings))
    upload_id = f"upl-{secrets.token_hex(16)}"
    name = upload_name(caller, upload_id)
    if store.links_are_local:
        url = store.write_link(name=name, ttl_s=UPLOAD_LINK_TTL_S)
    else:  # a user-delegation key may need fetching (a network call): off the event loop
        url = await asyncio.to_thread(store.write_link, name=name, ttl_s=UPLOAD_LINK_TTL_S)
    inputs = edit_rules(rules_for(settings.route(settings.default_route).model))
    answer = {
        "upload": upload_id,
        "url": url,
        "method": "PUT",
        # Azure Blob's Put Blob needs the blob type; a content type is the caller's choice.
        "headers": {"x-ms-blob-type": "BlockBlob"},
        "expiresAt": iso_utc(now() + timedelta(seconds=UPLOAD_LINK_TTL_S)),
        "maxBytes": inputs.image_max_bytes,
        "maskMaxBytes": inputs.mask_max_bytes,
    }
    return json_answer(answer, 201)
