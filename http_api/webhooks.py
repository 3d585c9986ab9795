"""GET /api/webhook-secret: the secret with which the calling identity's webhooks are signed;
and a job's deliveries as its status answer shows them (``webhooks``).

The secret is derived from IMAGE_WEBHOOK_SECRET and the caller's digest (rules.webhooks), so a
caller's every job is signed with it and nothing per caller is stored. The caller is the one
that starts jobs: the Easy Auth principal, or the shared default caller, which every holder of
a function key is (then every key holder gets the same secret, as they see the same jobs). The
answer is the only place the secret appears: it is never logged.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from http_api.answers import json_answer
from http_api.caller import caller_of, has_own_identity
from http_api.errors import blob_call
from http_api.request_reading import check_query
from rules.dedup import caller_digest
from rules.errors import RequestInvalid
from rules.settings import AppSettings
from rules.webhooks import WEBHOOK_FIELD, WebhookLog, caller_secret, whsec
from storage.protocol import AsyncImageStore, webhooks_name


async def webhook_secret(req: func.HttpRequest, settings: AppSettings) -> func.HttpResponse:
    """200 ``{secret, scheme, identity}``: ``secret`` is ``whsec_...`` (base64 of 32 bytes),
    as the ``standardwebhooks`` libraries take it; ``identity`` says whose it is (``own`` for
    an Easy Auth principal, ``shared`` for the default caller every key holder is)."""
    check_query(req)
    master = settings.webhooks.secret
    if master is None:
        raise RequestInvalid(
            WEBHOOK_FIELD, "unsupported", "webhooks are off on this service (no webhook secret)"
        )
    digest = caller_digest(settings.job_id_secret, caller_of(req, settings))
    answer = {
        "secret": whsec(caller_secret(master, digest)),
        "scheme": "standard-webhooks/v1",
        "identity": "own" if has_own_identity(req, settings) else "shared",
    }
    # Never cached by anything in between.
    return json_answer(answer, 200, headers={"Cache-Control": "no-store"})


async def deliveries(store: AsyncImageStore, job_id: str, job_created_at: str) -> list[Any]:
    """The status answer's ``webhooks``: each event's delivery from ``{id}/webhooks.json``
    (state, attempts with status code or error, the next attempt's time); empty until the
    first attempt is recorded. StoreUnavailable, RecordUnreadable."""
    with blob_call(job_id=job_id):
        raw = await store.get(name=webhooks_name(job_id))
    if raw is None:
        return []
    log = WebhookLog.from_json(raw)
    if log.job_created_at != job_created_at:  # an earlier job under this id left it
        return []
    return [delivery.answer() for delivery in log.deliveries]


async def purged_deliveries(store: AsyncImageStore, job_id: str) -> list[Any] | None:
    """The ``webhooks`` of a job answered from metadata.json (its durable history, which held
    the webhook, is purged): the deliveries ``{id}/webhooks.json`` recorded, or None when there
    is no record. A finished job's folder is never another job's (http_api.job_ids), so the
    record is this job's. StoreUnavailable, RecordUnreadable."""
    with blob_call(job_id=job_id):
        raw = await store.get(name=webhooks_name(job_id))
    if raw is None:
        return None
    log = WebhookLog.from_json(raw)
    if log.job_id != job_id:
        return None
    return [delivery.answer() for delivery in log.deliveries]
