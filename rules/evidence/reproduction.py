"""The packet's reproduction: a curl command and an openai SDK snippet that send the job's shape
to its route, with placeholders for the prompt, the key and a route host that is an IP address
(rules.evidence)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rules.evidence.facts import JobFacts
from rules.evidence.sanitize import _is_ip
from rules.outcome import SentAs
from rules.settings import RouteSettings

HOST_PLACEHOLDER = "ROUTE_HOST"
PROMPT_PLACEHOLDER = "PROMPT"
KEY_PLACEHOLDER = "$IMAGE_ROUTE_KEY"


@dataclass(frozen=True)
class Reproduction:
    """The smallest request that shows the problem again, with placeholders for the secrets."""

    curl: str
    python: str
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"curl": self.curl, "python": self.python, "notes": list(self.notes)}


def reproduction(facts: JobFacts, route: RouteSettings | None, sent_as: SentAs) -> Reproduction:
    """A curl command and an openai SDK snippet that send the same shape to the same route,
    with ``PROMPT`` for the prompt and the key read from ``$IMAGE_ROUTE_KEY``."""
    shape = facts.request
    edit = facts.endpoint == "edits"
    body: dict[str, Any] = {"prompt": PROMPT_PLACEHOLDER}
    for name in ("n", "size", "quality", "output_format", "output_compression", "background"):
        if shape.get(name) is not None:
            body[name] = shape[name]
    if not edit and shape.get("moderation") is not None:
        body["moderation"] = shape["moderation"]
    if sent_as.stream:
        body["stream"] = True
        body["partial_images"] = sent_as.partial_images or 0
    owner = route.owner if route else "openai"
    notes = [f"PROMPT stands for the job's prompt ({shape.get('prompt_chars', '?')} characters)"]
    if route is None:
        notes.append(f"the route {facts.route!r} is no longer configured: its URL is unknown")
        base, scheme_host = "/v1", "https://ROUTE_HOST"
    else:
        parts = urlsplit(route.base_url)
        hostname = parts.hostname or HOST_PLACEHOLDER
        if _is_ip(hostname):
            hostname = HOST_PLACEHOLDER
            notes.append("ROUTE_HOST stands for the route's host, an IP address")
        elif ":" in hostname:
            hostname = f"[{hostname}]"
        port = f":{parts.port}" if parts.port else ""
        scheme_host = f"{parts.scheme}://{hostname}{port}"
        base = parts.path.rstrip("/")
    inputs = _inputs(shape) if edit else []
    if inputs:
        notes.append(
            "INPUT-k files stand for the job's input images: "
            + "; ".join(f"{name} ({describe})" for name, describe in inputs)
        )
    endpoint = "edits" if edit else "generations"
    if owner == "azure" and route is not None:
        url = f"{scheme_host}/openai/deployments/{route.deployment}/images/{endpoint}"
        auth = f"api-key: {KEY_PLACEHOLDER}"
        query = ["--url-query", f"api-version={route.api_version}"]
        model = route.deployment or "gpt-image-2"
    else:
        url = f"{scheme_host}{base}/images/{endpoint}"
        auth = f"Authorization: Bearer {KEY_PLACEHOLDER}"
        query = []
        model = route.model if route else "gpt-image-2"
        body = {"model": model, **body}
    curl = ["curl", "-sS", "-N", url, *query, "-H", auth]
    if edit:
        for name, value in body.items():
            shown = ("true" if value else "false") if isinstance(value, bool) else str(value)
            curl += ["-F", f"{name}={shown}"]
        for name, _ in inputs:
            field_name = "mask" if name.startswith("MASK") else "image[]"
            curl += ["-F", f"{field_name}=@{name}"]
    else:
        curl += ["-H", "Content-Type: application/json", "-d", _json(body)]
    curl_text = " ".join(_quote(word) for word in curl)
    python = _python_snippet(owner, route, scheme_host, base, model, body, inputs, edit)
    return Reproduction(curl=curl_text, python=python, notes=tuple(notes))


def _inputs(shape: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for index, image in enumerate(shape.get("images") or ()):
        found.append((f"INPUT-{index}.{image.get('format', 'png')}", _describe(image)))
    mask = shape.get("mask")
    if mask:
        found.append((f"MASK.{mask.get('format', 'png')}", _describe(mask)))
    return found


def _describe(image: Mapping[str, Any]) -> str:
    return f"{image.get('format')}, {image.get('width')}x{image.get('height')}"


def _python_snippet(
    owner: str,
    route: RouteSettings | None,
    scheme_host: str,
    base: str,
    model: str,
    body: Mapping[str, Any],
    inputs: Sequence[tuple[str, str]],
    edit: bool,
) -> str:
    if owner == "azure" and route is not None:
        client = (
            "from openai import AzureOpenAI\n"
            f"client = AzureOpenAI(azure_endpoint={scheme_host!r}, "
            f"api_version={route.api_version!r}, api_key=os.environ['IMAGE_ROUTE_KEY'])\n"
        )
    else:
        client = (
            "from openai import OpenAI\n"
            f"client = OpenAI(base_url={scheme_host + base!r}, "
            "api_key=os.environ['IMAGE_ROUTE_KEY'])\n"
        )
    arguments = {"model": model, **{k: v for k, v in body.items() if k != "model"}}
    lines = [f"    {name}={value!r}," for name, value in arguments.items()]
    if edit:
        images = [name for name, _ in inputs if not name.startswith("MASK")]
        masks = [name for name, _ in inputs if name.startswith("MASK")]
        opened = ", ".join(f"open({name!r}, 'rb')" for name in images)
        lines.insert(0, f"    image=[{opened}],")
        if masks:
            lines.insert(1, f"    mask=open({masks[0]!r}, 'rb'),")
    call = "client.images.edit(" if edit else "client.images.generate("
    return "import os\n" + client + "result = " + call + "\n" + "\n".join(lines) + "\n)\n"


def _json(body: Mapping[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False)


def _quote(word: str) -> str:
    # The key's placeholder stays a shell variable, in double quotes; the rest is quoted safe.
    if KEY_PLACEHOLDER in word:
        return '"' + word.replace('"', '\\"') + '"'
    return shlex.quote(word)
