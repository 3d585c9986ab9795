"""The escalation packet as this CLI prints it: the service's JSON with the moments also in the
local time zone of the person who runs it, or the same as Markdown for a ticket.

    packet = with_local_moment(answer.body)      # adds moment.local
    print(markdown(packet))

The service sends the packet already sanitized (no key, prompt, image, IP address, signed link
or caller id: rules/evidence/); nothing here adds anything of the sort, only a time zone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

MOMENTS = (
    ("createdAt", "created"),
    ("firstSendAt", "first send"),
    ("lastSendAt", "last send"),
    ("finishedAt", "finished"),
)
CLOCKS = (
    ("connectMs", "connect"),
    ("firstByteMs", "first byte"),
    ("firstPartialImageMs", "first partial image"),
    ("finalImageMs", "final image"),
    ("downloadMs", "download (duration)"),
    ("uploadMs", "upload to Blob (duration)"),
    ("readInputsMs", "read inputs (duration)"),
    ("uploadInputsMs", "send inputs (duration)"),
)


def _parse(moment: object) -> datetime | None:
    if not isinstance(moment, str) or not moment:
        return None
    try:
        return datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return None


def _offset(delta: timedelta | None) -> str:
    minutes = int((delta or timedelta()).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def with_local_moment(packet: Mapping[str, Any], zone: tzinfo | None = None) -> dict[str, Any]:
    """The packet with ``moment.local``: the time zone of this machine (or ``zone``), its
    offset, and each moment of ``moment`` (and ``generatedAt``) in it."""
    result: dict[str, Any] = json.loads(json.dumps(packet))  # a copy: the answer stays as it is
    moment = result.get("moment")
    if not isinstance(moment, dict):
        return result
    reference = _parse(result.get("generatedAt")) or datetime.now().astimezone()
    local_reference = reference.astimezone(zone)
    local: dict[str, Any] = {
        "timezone": local_reference.tzname() or "local",
        "utcOffset": _offset(local_reference.utcoffset()),
        "generatedAt": local_reference.isoformat(timespec="milliseconds"),
    }
    for key, _label in MOMENTS:
        parsed = _parse(moment.get(key))
        local[key] = parsed.astimezone(zone).isoformat(timespec="milliseconds") if parsed else None
    moment["local"] = local
    return result


def _cell(value: object) -> str:
    """A table cell: Markdown's pipe escaped, lines joined, None as a dash."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = value if isinstance(value, str) else json.dumps(value)
    return " ".join(text.split()).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def markdown(packet: Mapping[str, Any]) -> str:
    """The packet as a Markdown document, every part of field report A's packet a section."""
    p: Mapping[str, Any] = packet
    moment = p.get("moment") or {}
    local = moment.get("local") or {}
    route = p.get("route") or {}
    returned = p.get("returned") or {}
    retries = p.get("retries") or {}
    infra = p.get("infrastructure") or {}
    repro = p.get("reproduction") or {}
    cost = p.get("cost") or {}
    service = p.get("service") or {}
    out = [f"# Escalation packet: image job {p.get('id')}", ""]
    state = str(p.get("state"))
    if p.get("failure"):
        state += f" ({p['failure']})"
    out.append(
        f"State **{state}**. Packet v{p.get('v')} from {service.get('name')} "
        f"{service.get('version')}, generated {p.get('generatedAt')}"
        + (f" ({local.get('generatedAt')} {local.get('timezone')})" if local else "")
        + "."
    )
    if not p.get("complete"):
        out.append("")
        out.append("The job had not ended (or its record is missing): the clocks are partial.")
    out += ["", "## Time", ""]
    zone = f"local ({local.get('timezone')}, UTC{local.get('utcOffset')})" if local else "local"
    rows = [(label, moment.get(key), local.get(key)) for key, label in MOMENTS]
    out += _table(["moment", "UTC", zone], rows)
    out += ["", f"Occurrence: {moment.get('occurrence')}."]

    out += ["", "## Route", ""]
    out += [
        f"- route: `{route.get('name')}`, owner **{route.get('owner')}**",
        f"- model: {route.get('model')}, {route.get('api')}, endpoint `{route.get('endpoint')}`",
        f"- host: {_cell(route.get('host'))}, path `{route.get('path')}`",
    ]
    if route.get("deployment") or route.get("apiVersion"):
        out.append(
            f"- deployment: {_cell(route.get('deployment'))}, "
            f"api-version {_cell(route.get('apiVersion'))}"
        )
    streamed = "streamed" if route.get("stream") else "not streamed"
    if route.get("stream"):
        streamed += f", {route.get('partialImages')} partial image(s)"
    out.append(f"- sent: {streamed}; priority {_cell(p.get('priority'))}")

    out += ["", "## Request shape", "", "The prompt is withheld; its length is `promptChars`.", ""]
    out += _table(["field", "value"], list((p.get("request") or {}).items()))
    for note in p.get("sentAs") or []:
        out.append(f"\nSent differently from the request: {note}")

    out += ["", "## Timing", "", f"Last attempt, ms from its send ({_cell(_started(p))}):", ""]
    timings = p.get("timings") or {}
    out += _table(["clock", "ms"], [(label, timings.get(key)) for key, label in CLOCKS])
    out += [
        "",
        f"- timeout layer: {_cell(p.get('timeoutLayer'))}",
        f"- retries: {retries.get('count')} (post-send resends "
        f"{retries.get('postSendResends')}, gateway's own {retries.get('gatewayRetries')})",
    ]
    out += [f"  - {reason}" for reason in retries.get("reasons") or []]
    attempts = p.get("attempts") or []
    if attempts:
        out += ["", "### Attempts", ""]
        out += _table(
            [
                "#",
                "outcome",
                "layer",
                "sent",
                "HTTP",
                "type",
                "code",
                "request id",
                "first byte",
                "final image",
                "timeout",
                "then",
            ],
            [
                (
                    a.get("attempt"),
                    a.get("outcome"),
                    a.get("layer"),
                    a.get("sent"),
                    a.get("httpStatus"),
                    a.get("type"),
                    a.get("code"),
                    a.get("requestId"),
                    (a.get("timings") or {}).get("firstByteMs"),
                    (a.get("timings") or {}).get("finalImageMs"),
                    a.get("timeoutLayer"),
                    _decision(a.get("decision")),
                )
                for a in attempts
            ],
        )

    out += ["", "## Returned evidence", ""]
    error = returned.get("error") or {}
    out.append(f"- HTTP status: {_cell(returned.get('httpStatus'))}")
    if error:
        out.append(
            f"- error: {error.get('kind')} at the {error.get('layer')} layer; type "
            f"`{error.get('type')}`, code `{error.get('code')}`, param `{error.get('param')}`"
        )
        out.append(f"- message: {_cell(error.get('message'))}")
    ids = ", ".join(f"`{i}`" for i in returned.get("requestIds") or []) or "-"
    out.append(f"- request ids: {ids}")
    if returned.get("rateLimit"):
        out.append(f"- rate-limit headers: {_cell(returned.get('rateLimit'))}")
    if cost.get("usd") is not None:
        estimated = " (estimated)" if cost.get("estimated") else ""
        out.append(f"- cost: ${cost['usd']}{estimated}")

    out += ["", "## Local infrastructure", ""]
    out += [
        f"- host: {infra.get('host')}; Functions runtime {_cell(infra.get('functionsRuntime'))};"
        f" Python {infra.get('python')}",
        f"- region: {_cell(infra.get('region'))}; plan {_cell(infra.get('plan'))}; storage "
        f"{infra.get('storage')}; time scale {infra.get('timeScale')}",
        f"- gateway: {_cell(infra.get('gateway'))}",
        f"- timeouts (s): {_cell(infra.get('timeoutsS'))}",
        f"- route pace: {_cell(infra.get('pace'))}",
    ]
    stand_ins = infra.get("localStandIns") or []
    out.append("- local stand-ins: " + ("; ".join(stand_ins) if stand_ins else "none"))

    out += ["", "## Reproduction", "", "```sh", str(repro.get("curl")), "```", ""]
    out += ["```python", str(repro.get("python")).rstrip("\n"), "```"]
    out += [f"- {note}" for note in repro.get("notes") or []]

    out += ["", "## Withheld", ""]
    out += [f"- {item}" for item in p.get("withheld") or []]
    return "\n".join(out) + "\n"


def _started(packet: Mapping[str, Any]) -> object:
    return (packet.get("timings") or {}).get("requestStartedAt")


def _decision(decision: object) -> str:
    if not isinstance(decision, Mapping):
        return "-"
    if decision.get("retry"):
        return f"retry after {decision.get('waitS')}s"
    return f"gave up: {decision.get('reason')}"
