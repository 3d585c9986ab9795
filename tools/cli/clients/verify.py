"""Verify a webhook delivery as a receiver would: the Standard Webhooks signature over the
payload's exact bytes, with the secret ``GET /api/webhook-secret`` hands out.

    verdict = verify(payload, headers, "whsec_...")        # Verdict(ok, message)

Headers are read from a JSON object (``{"webhook-id": ...}``) or HTTP header lines
(``webhook-id: ...``, as ``curl -D`` writes them). By default the check is the
``standardwebhooks`` library's own, which refuses a timestamp more than five minutes from now
(replays); ``any_age`` checks the signature alone, for a delivery captured earlier (the
signature still proves who sent those bytes, not when they were fresh). The secret is never
printed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

REQUIRED = ("webhook-id", "webhook-timestamp", "webhook-signature")


class UnreadableInput(ValueError):
    """The headers, payload or secret given cannot be read (a usage error, exit code 2)."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str


def parse_headers(text: str) -> dict[str, str]:
    """Headers from a JSON object or from ``Name: value`` lines (a status line and blank lines
    are skipped); names lowercased."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            raise UnreadableInput(
                "the headers are neither a JSON object nor header lines"
            ) from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise UnreadableInput("the headers' JSON must be an object of strings")
        return {str(k).lower(): v for k, v in data.items()}
    headers: dict[str, str] = {}
    for line in stripped.splitlines():
        if ":" not in line or line.upper().startswith("HTTP/"):
            continue
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    return headers


def webhook(secret: str) -> Webhook:
    """The library's verifier for ``secret`` (``whsec_`` and base64, or base64 alone)."""
    try:
        return Webhook(secret.strip())
    except Exception as exc:  # the library raises binascii.Error, its own, RuntimeError
        raise UnreadableInput(
            f"the secret is not a webhook secret ({type(exc).__name__})"
        ) from None


def verify(
    payload: bytes, headers: dict[str, str], secret: str, *, any_age: bool = False
) -> Verdict:
    """Whether ``payload`` with ``headers`` was signed with ``secret``."""
    verifier = webhook(secret)
    missing = [name for name in REQUIRED if not headers.get(name)]
    if missing:
        return Verdict(False, f"missing header {', '.join(missing)}")
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        return Verdict(False, "the payload is not UTF-8 text")
    try:
        if any_age:
            _signature_only(verifier, text, headers)
        else:
            verifier.verify(text, headers, json_parse=False)
    except WebhookVerificationError as refused:
        return Verdict(False, str(refused).lower())
    return Verdict(True, _described(text, headers))


def _signature_only(verifier: Webhook, text: str, headers: dict[str, str]) -> None:
    """The library's signature for the id, timestamp and payload, compared with each ``v1``
    signature sent; the timestamp's age is not judged."""
    try:
        signed_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    except (ValueError, OverflowError, OSError):
        raise WebhookVerificationError("Invalid Signature Headers") from None
    expected = verifier.sign(headers["webhook-id"], signed_at, text).split(",", 1)[1]
    for sent in headers["webhook-signature"].split(" "):
        version, _, signature = sent.partition(",")
        if version == "v1" and hmac.compare_digest(base64.b64decode(expected), _b64(signature)):
            return
    raise WebhookVerificationError("No matching signature found")


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _described(text: str, headers: dict[str, str]) -> str:
    """What was verified: the event's type and job, and when it was signed."""
    signed = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    what = ""
    try:
        event: Any = json.loads(text)
        if isinstance(event, dict):
            data = event.get("data")
            job = data.get("id") if isinstance(data, dict) else None
            what = f" ({event.get('type')}, job {job})"
    except ValueError:
        what = " (a payload that is not JSON)"
    return f"{headers['webhook-id']}{what}, signed {signed.isoformat().replace('+00:00', 'Z')}"
