"""The escalation packet of one job: a pure rule, typed records in, the packet out.

    packet = build_evidence(facts, metadata, route=..., infrastructure=..., secrets=..., ...)
    packet.to_json()       # what GET /api/images/{id}/evidence answers

Field report A (docs/reference/field-reports.md, "The escalation packet") lists what a provider
needs to find a slow or failed request: the time and time zone, the route and its owner, model
and endpoint, the request's shape, every clock with the layer that failed and the retries, what
the route returned, the local infrastructure, and the smallest sanitized reproduction. It also
lists what must never be in it: keys, tokens, prompts, images, IP addresses, raw caller ids,
unredacted logs. This module makes the packet from the job's own records (the durable status,
metadata.json) and holds the never-list in one place:

- nothing here reads a prompt, a key, an image or a caller: the records it is built from carry
  none (the request's shape has the prompt's length only, metadata.json a digest of the caller);
- every text that came from the route (its message, type, code, param, request ids, rate-limit
  headers, a retry's reason) goes through ``rules.redaction.redact`` with the job's key and
  prompt, as the attempt did, and then ``sanitize``: every IP address becomes ``[ip]``, every
  URL loses its query string, fragment and user info (a SAS link's signature, a ``?code=``);
- ``Evidence.to_json`` runs ``sanitize`` over every string of the packet once more, so a field
  added later cannot carry an address or a signed link out by mistake;
- the reproduction is written from the shape with ``PROMPT`` and ``$IMAGE_ROUTE_KEY``
  placeholders, and a route host that is an IP address becomes ``ROUTE_HOST``.

Its modules: ``sanitize`` (the never-list applied to text), ``facts`` (the records the packet is
built from, and the infrastructure), ``reproduction`` (curl and SDK snippet), ``packet`` (the
packet and ``build_evidence``); everything public is named here too.
"""

from __future__ import annotations

from rules.evidence.facts import (
    Infrastructure,
    JobFacts,
    JobMetadata,
    MetadataAttempt,
    ReturnedError,
    infrastructure,
)
from rules.evidence.packet import (
    CLOCK_FIELDS,
    EVIDENCE_VERSION,
    SERVICE_VERSION,
    WITHHELD,
    AttemptEvidence,
    Evidence,
    RouteFacts,
    build_evidence,
    clocks_json,
    timeout_layer,
)
from rules.evidence.reproduction import Reproduction, reproduction
from rules.evidence.sanitize import IP_MARK, is_loopback, sanitize, sanitize_json

__all__ = [
    "CLOCK_FIELDS",
    "EVIDENCE_VERSION",
    "IP_MARK",
    "SERVICE_VERSION",
    "WITHHELD",
    "AttemptEvidence",
    "Evidence",
    "Infrastructure",
    "JobFacts",
    "JobMetadata",
    "MetadataAttempt",
    "Reproduction",
    "ReturnedError",
    "RouteFacts",
    "build_evidence",
    "clocks_json",
    "infrastructure",
    "is_loopback",
    "reproduction",
    "sanitize",
    "sanitize_json",
    "timeout_layer",
]
