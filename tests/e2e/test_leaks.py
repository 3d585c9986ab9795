"""No output of the service carries the route's key, the prompt or the caller: a leak hunt.

The stack runs with marker values that cannot turn up by chance: the simulator accepts only
``KEY`` (tests/e2e/data/leak-markers.json, so a job that did not send it would fail with a 401),
the default caller is ``CALLER``, and every job's prompt holds ``PROMPT_MARK``. Jobs that end
every way are made (saved, failed after a retry on a route error that echoes the key, the
prompt, an address and a signed link, cancelled, a batch, and one through the CLI), then every
output is gathered by the collectors in ``COLLECTORS``: every API answer (status, list,
evidence, routes, cancel, batch status and report), every CLI output (generate, status, list,
evidence as JSON and Markdown), the stack's logs, every blob of every container (image bytes
aside), and every webhook delivery (the saved, failed and cancelled jobs push their ends to a
receiver on loopback: each event's body and headers). None may hold the key or the caller, nor
the webhook URL's token or the webhook master secret; the prompt only in an answer to a status
request that asked for it (``includePrompt=true``), and in the batch's own inputs
(``INPUTS_KEPT``). A new output is one more collector in ``COLLECTORS``.
"""

from __future__ import annotations

import functools
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from clients.cli import Runtime, main
from localrun.stack import LocalStack
from loopserver.testing import wait_until
from tests.webhook_receiver import Delivery, Receiver

from .conftest import ROOT

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

KEY = "LeakKey7f3a9c2e51d84b06aa19c3e2"
CALLER = "leak-caller-5b1e9d0c"
PROMPT_MARK = "Zebrafinch Quartzviolin 4417"
PROMPT = f"{PROMPT_MARK} on a white background, studio light"
# What would show a leak even where a route or a log cut it short: the whole marker and a
# piece of it that redaction takes out (8 characters or more of the key; 16 of the prompt).
KEY_PIECES = (KEY, KEY[4:16], KEY[-12:])
PROMPT_PIECES = (PROMPT_MARK, "Zebrafinch", "Quartzviolin")
CALLER_PIECES = (CALLER, CALLER[-8:])
# A signed link's secrets (its query string) go nowhere; an address nowhere in a packet.
LINK_PIECES = ("SIGNATUREMARK", "CODEMARK")
# A webhook URL's token (kept in the job's durable input only) and the secret every caller's
# signing secret is derived from go nowhere either.
WEBHOOK_TOKEN = "HookTokenMark9d41"
WEBHOOK_SECRET = "leak-webhook-master-3c8e51f07a"
WEBHOOK_PIECES = (WEBHOOK_TOKEN, WEBHOOK_SECRET)
ADDRESS = "192.0.2.17"
# A route error that echoes everything it should not (as OpenAI's 401 echoes a masked key, a
# moderation message the prompt), plus an address and a signed link.
ECHO = (
    f"Your prompt '{PROMPT}' was refused for key {KEY} (ending {KEY[-6:]}); details at "
    f"https://route.example/log?sig=SIGNATUREMARK&code=CODEMARK from {ADDRESS}"
)
# The batch's inputs, kept in Blob to run it: the manifest as posted and its waves. They hold
# the prompts by design (every item is run from them); the key and the caller never.
INPUTS_KEPT = re.compile(r"^batches/(claimed/bat-[0-9a-f]+\.jsonl|bat-[0-9a-f]+/wave-\d+\.json)$")
STACK_OPTIONS: dict[str, Any] = {
    "time_scale": 25.0,
    "simulator_config": ROOT / "tests" / "e2e" / "data" / "leak-markers.json",
    # The simulator's config alone makes the stack give the app this key (matching_settings);
    # said here too, so the test does not lean on that.
    "extra_env": {
        "IMAGE_ROUTE_AZURE_KEY": KEY,
        "IMAGE_ROUTE_OPENAI_KEY": KEY,
        "IMAGE_DEFAULT_CALLER": CALLER,
        "IMAGE_SHARED_CALLER_MAY_LIST": "true",
        # Webhooks on, to the test's receiver on loopback over http (local runs only).
        "IMAGE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "IMAGE_WEBHOOK_ALLOW_HTTP": "true",
        "IMAGE_WEBHOOK_ALLOW_LOOPBACK": "true",
    },
}


@dataclass(frozen=True)
class Output:
    """One thing the service (or its tools) put out: where from, and its text."""

    where: str
    text: str
    # Whether the prompt may be in it: the caller asked for it (includePrompt=true), or it is
    # the batch's own input.
    prompt_allowed: bool = False


@dataclass
class Outputs:
    """What the run made: the recorded answers and CLI runs, and the stack to read."""

    stack: LocalStack
    answers: list[Output] = field(default_factory=list)
    cli: list[Output] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)


Collector = Callable[[Outputs], Iterator[Output]]


def api_answers(outputs: Outputs) -> Iterator[Output]:
    yield from outputs.answers


def cli_outputs(outputs: Outputs) -> Iterator[Output]:
    yield from outputs.cli


def stack_logs(outputs: Outputs) -> Iterator[Output]:
    """Every log the stack wrote: devhost (the app's own log lines among them), the
    simulator, Azurite."""
    for path in sorted(outputs.stack.log_dir.iterdir()):
        yield Output(f"log {path.name}", path.read_text(encoding="utf-8", errors="replace"))


IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF")


def blobs(outputs: Outputs) -> Iterator[Output]:
    """Every blob of every container (images, batches, and any other), names included; the
    bytes of images aside (told by their magic bytes, not their name)."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(outputs.stack.storage_connection_string)
    with service:
        for container in service.list_containers():
            client = service.get_container_client(container.name)
            for blob in client.list_blobs():
                where = f"{container.name}/{blob.name}"
                yield Output(f"blob name {where}", where)
                data: bytes = client.download_blob(blob.name).readall()
                if data.startswith(IMAGE_MAGIC):
                    continue
                text = data.decode("utf-8", errors="replace")
                yield Output(f"blob {where}", text, prompt_allowed=bool(INPUTS_KEPT.match(where)))


def webhook_deliveries(outputs: Outputs) -> Iterator[Output]:
    """Every request the service made to the test's webhook receiver: its headers and body."""
    for delivery in outputs.deliveries:
        headers = "\n".join(f"{k}: {v}" for k, v in delivery.headers.items())
        yield Output(f"webhook {delivery.webhook_id}", f"{headers}\n\n{delivery.body}")


# Each kind of output, gathered after the jobs ran. Another kind of output is one more
# function here: Outputs -> Iterator[Output].
COLLECTORS: list[Collector] = [api_answers, cli_outputs, stack_logs, blobs, webhook_deliveries]


def leaks_in(output: Output) -> list[str]:
    found = []
    text = output.text.lower()
    for name, pieces in (
        ("key", KEY_PIECES),
        ("caller", CALLER_PIECES),
        ("link", LINK_PIECES),
        ("webhook", WEBHOOK_PIECES),
    ):
        found += [f"{name} {piece!r}" for piece in pieces if piece.lower() in text]
    if not output.prompt_allowed:
        found += [f"prompt {piece!r}" for piece in PROMPT_PIECES if piece.lower() in text]
    if "evidence" in output.where and ADDRESS in text:  # the packet promises no address
        found.append(f"address {ADDRESS}")
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    from localrun.azurite import azurite_bin
    from loopserver.testing import missing_service

    if azurite_bin(ROOT) is None:
        missing_service("Azurite", "run `make setup` (npm ci installs azurite 3.35.0)")
    state = tmp_path_factory.mktemp("leak-stack")
    local = LocalStack(
        ROOT, state_dir=state, azurite_port=0, simulator_port=0, devhost_port=0, **STACK_OPTIONS
    )
    with local:
        yield local


class Recorder:
    """The API over HTTP, every answer kept as an Output (with its headers)."""

    def __init__(self, stack: LocalStack, outputs: Outputs) -> None:
        self.outputs = outputs
        self.stack = stack
        self.http = httpx.Client(
            base_url=stack.devhost_url,
            headers={"x-functions-key": stack.function_key},
            timeout=30.0,
            event_hooks={"response": [self._keep]},
        )
        self.links = httpx.Client(timeout=30.0, event_hooks={"response": [self._keep]})

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        request = response.request
        where = f"{request.method} {request.url.path}?{request.url.query.decode()}"
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        body = response.content
        if body.startswith(IMAGE_MAGIC):
            body = b""
        self.outputs.answers.append(
            Output(
                where,
                f"{response.status_code}\n{headers}\n\n{body.decode('utf-8', 'replace')}",
                prompt_allowed="includePrompt=true" in request.url.query.decode(),
            )
        )

    def fault(self, **spec: Any) -> None:
        answer = httpx.post(f"{self.stack.simulator_url}/_sim/faults", json=spec, timeout=10)
        assert answer.status_code == 201, answer.text

    def start(self, **body: Any) -> str:
        answer = self.http.post("/api/images", json={"prompt": PROMPT, **body})
        assert answer.status_code == 202, answer.text
        job_id = str(answer.json()["id"])
        self.outputs.job_ids.append(job_id)
        return job_id

    def wait(self, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answer = self.http.get(f"/api/images/{job_id}")
            if answer.status_code == 200:
                final: dict[str, Any] = answer.json()
                return final
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not end")

    def read_everything_about(self, job_id: str) -> None:
        """Every answer the API has about a job, and every link those answers hand out."""
        status = self.http.get(f"/api/images/{job_id}").json()
        self.http.get(f"/api/images/{job_id}", params={"includePrompt": "true"})
        self.http.get(f"/api/images/{job_id}/evidence")
        for url in links_in(status):
            self.links.get(url)


def links_in(answer: Any) -> list[str]:
    """Every http(s) link in an answer: previews, images, metadata, reports."""
    found = []
    if isinstance(answer, dict):
        for value in answer.values():
            found += links_in(value)
    elif isinstance(answer, list):
        for value in answer:
            found += links_in(value)
    elif isinstance(answer, str) and answer.startswith("http") and "/api/" not in answer:
        found.append(answer)
    return found


def run_cli(outputs: Outputs, stack: LocalStack, *argv: str) -> int:
    """The CLI in-process, as a person runs it against the stack; its output kept."""
    out, err = io.StringIO(), io.StringIO()
    runtime = Runtime(
        out=Console(file=out, width=100, color_system=None),
        err=Console(file=err, width=100, color_system=None),
    )
    code = main(
        ["--url", stack.devhost_url, "--key", stack.function_key, *argv],
        runtime=runtime,
        restore_sigint=True,
    )
    outputs.cli.append(Output(f"cli {' '.join(argv)}", out.getvalue() + err.getvalue()))
    return code


@pytest.fixture(scope="module")
def receiver(stack: LocalStack) -> Iterator[Receiver]:
    """A webhook receiver on loopback that verifies each delivery with the caller's secret."""
    answer = httpx.get(
        f"{stack.devhost_url}/api/webhook-secret",
        headers={"x-functions-key": stack.function_key},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    with Receiver() as running:
        running.secret = answer.json()["secret"]
        yield running


def test_no_output_carries_the_key_the_prompt_or_the_caller(stack, receiver, tmp_path):
    outputs = Outputs(stack)
    api = Recorder(stack, outputs)
    hook = f"{receiver.url}?token={WEBHOOK_TOKEN}"

    saved = api.start(quality="low", size="1024x1024", webhookUrl=hook)
    assert api.wait(saved)["state"] == "saved"

    # A retry, then a route error that echoes the key, the prompt, an address, a signed link.
    api.fault(kind="http_error", status=503, count=1, match={"route": "openai"})
    api.fault(
        kind="http_error",
        status=400,
        type="invalid_request_error",
        code="moderation_blocked",
        message=ECHO,
        count=1,
        match={"route": "openai"},
    )
    failed = api.start(route="openai", quality="low", webhookUrl=hook)
    final = api.wait(failed)
    assert final["state"] == "failed", final
    assert final["retryCount"] == 1

    api.fault(kind="slow_first_byte", delay_s=150, count=1, match={"route": "openai"})
    cancelled = api.start(route="openai", quality="medium", webhookUrl=hook)
    wait_until(
        lambda: api.http.get(f"/api/images/{cancelled}").json()["state"] != "queued",
        timeout=30,
        what="the job to reach the route",
    )
    assert api.http.post(f"/api/images/{cancelled}/cancel").status_code == 202
    assert api.wait(cancelled)["state"] == "cancelled"

    batch = api.http.post(
        "/api/batches",
        json={
            "items": [
                {"custom_id": "leak-1", "prompt": PROMPT + " one", "quality": "low"},
                {"custom_id": "leak-2", "prompt": PROMPT + " two", "quality": "low"},
            ]
        },
    )
    assert batch.status_code == 202, batch.text
    batch_id = batch.json()["id"]
    report = wait_until(
        lambda: (a := api.http.get(f"/api/batches/{batch_id}")).status_code == 200 and a.json(),
        timeout=120,
        interval=0.2,
        what="the batch to end",
    )
    assert report["counts"]["saved"] == 2, report
    lines = api.links.get(report["report"]["jsonl"]).text.splitlines()
    batch_items = [json.loads(line)["job_id"] for line in lines]
    assert len(batch_items) == 2, lines
    api.links.get(report["report"]["csv"])

    image = tmp_path / "leak.png"
    assert run_cli(outputs, stack, "generate", "--prompt", PROMPT, "--quality", "low",
                   "--wait", "--poll-interval", "0.1", "--image", str(image)) == 0  # fmt: skip
    by_cli = outputs.cli[-1].text.split()[1]
    assert by_cli.startswith("img-")
    outputs.job_ids.append(by_cli)

    for job_id in [*outputs.job_ids, *batch_items]:
        api.read_everything_about(job_id)
        for argv in (
            ("status", job_id),
            ("status", job_id, "--json"),
            ("evidence", job_id, "--format", "json"),
            ("evidence", job_id, "--format", "md"),
        ):
            assert run_cli(outputs, stack, *argv) == 0, outputs.cli[-1]
    # Each webhook job's end reached the receiver, signed (the records are on the jobs too).
    pushed = {saved: "image.saved", failed: "image.failed", cancelled: "image.cancelled"}
    for job_id, event in pushed.items():
        seen = wait_until(
            functools.partial(receiver.of, job_id), timeout=60, what=f"{event} of {job_id}"
        )
        assert seen[0].payload["type"] == event
    wait_until(
        lambda: all(
            (hooks := api.http.get(f"/api/images/{job_id}").json()["webhooks"])
            and hooks[0]["state"] == "delivered"
            for job_id in pushed
        ),
        timeout=30,
        what="the deliveries recorded on the jobs",
    )
    outputs.deliveries = receiver.deliveries
    api.http.get("/api/images", params={"limit": "100"})
    api.http.get("/api/routes")
    api.http.post(f"/api/images/{saved}/cancel")
    assert run_cli(outputs, stack, "list", "--all") == 0
    assert run_cli(outputs, stack, "list", "--json") == 0
    assert run_cli(outputs, stack, "cancel", saved) == 0

    # The markers really were in play: the route answered with its echo, the prompt is shown
    # where it was asked for, and the batch's inputs hold it.
    gathered = [output for collect in COLLECTORS for output in collect(outputs)]
    assert any(PROMPT_MARK in o.text for o in gathered if o.prompt_allowed)
    assert any("includePrompt=true" in o.where and PROMPT_MARK in o.text for o in outputs.answers)
    evidence = api.http.get(f"/api/images/{failed}/evidence").json()
    message = evidence["returned"]["error"]["message"]
    assert "[redacted prompt]" in message, message
    assert "[redacted key]" in message, message
    assert "[ip]" in message, message
    assert "sig=" not in message, message
    assert any(o.where.startswith("webhook msg_") for o in gathered)
    assert all(d.verified for d in outputs.deliveries)
    assert any(WEBHOOK_TOKEN in d.query for d in outputs.deliveries)  # the token was in play
    kinds = {o.where.split()[0] for o in gathered}
    assert {"GET", "POST", "cli", "log", "blob", "webhook"} <= kinds, kinds

    leaks = {o.where: found for o in gathered if (found := leaks_in(o))}
    assert not leaks, json.dumps(leaks, indent=1)


def test_the_stack_really_used_the_marker_key(stack):
    """The simulator takes no other key: a job that did not send the marker would fail."""
    config = json.loads(Path(STACK_OPTIONS["simulator_config"]).read_text())
    assert config["azure"]["keys"] == [KEY] == config["openai"]["keys"]
    refused = httpx.post(
        f"{stack.simulator_url}/v1/images/generations",
        headers={"Authorization": "Bearer not-the-marker"},
        json={"model": "gpt-image-2", "prompt": "x"},
        timeout=10,
    )
    assert refused.status_code == 401
