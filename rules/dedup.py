"""Duplicate submits: the same caller asking for the same job gets the same job.

Field report A (docs/reference/field-reports.md): "same user, same prompt, same parameters, same
pending job should normally return the existing job status instead of launching another full
generation". Job ids are deterministic, so the durable store itself settles races: two concurrent
submits compute the same instance id, and only one start can create it (start-if-absent); the other
finds it pending and returns it.

    job_id_for(secret, caller, key or None, fingerprint, generation)   # img-<24 hex>-<n>

With an ``Idempotency-Key`` the id comes from (caller, key); without one, from (caller, the
request's fingerprint); always as an HMAC under a secret setting, so that an id, which shows up in
URLs, logs and blob names, cannot be used to confirm a guessed prompt. ``generation`` counts
the jobs made under one id base: a finished job stays where it is, and the next distinct job
takes the next generation, so no finished job's status or images are ever overwritten.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re

from rules.errors import RequestInvalid
from rules.request import ImageJobRequest

MAX_KEY_CHARS = 255
# What job_id_for makes; anything else in a URL's id is not a job (checked before any look).
JOB_ID = re.compile(r"img-[0-9a-f]{24}-[1-9][0-9]{0,8}")


def fingerprint(request: ImageJobRequest, webhook_url: str | None = None) -> str:
    """A digest of everything the request asks for, prompt included (the digest, not the text,
    is what is kept), and of its webhook URL when it has one: the same key with another
    ``webhookUrl`` is another body (409), not a replay that would drop the new URL. Without a
    webhook the digest is what it always was, so job ids do not change."""
    canonical = json.dumps(request.to_json(), sort_keys=True, separators=(",", ":"))
    if webhook_url is not None:
        canonical += "\nwebhook\n" + webhook_url
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_CHARS or not key.isprintable():
        raise RequestInvalid(
            "Idempotency-Key",
            "invalid_value",
            f"the Idempotency-Key header must be 1 to {MAX_KEY_CHARS} printable characters",
        )
    return key


def job_id_for(
    secret: bytes, caller: str, key: str | None, request_fingerprint: str, generation: int
) -> str:
    """An HMAC under ``secret``: without it, nobody can check a guessed prompt against an id."""
    basis = f"key\n{caller}\n{key}" if key is not None else f"body\n{caller}\n{request_fingerprint}"
    digest = hmac.new(secret, basis.encode(), hashlib.sha256).hexdigest()[:24]
    return f"img-{digest}-{generation}"


def caller_digest(secret: bytes, caller: str) -> str:
    """What a job records of its caller: enough to compare, nothing to read back."""
    return hmac.new(secret, f"caller\n{caller}".encode(), hashlib.sha256).hexdigest()[:32]


def is_job_id(text: str) -> bool:
    """Whether ``text`` has the form of a job id (a string job_id_for could have made)."""
    return JOB_ID.fullmatch(text) is not None
