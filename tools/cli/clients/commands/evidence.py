"""``evidence ID``: the job's escalation packet, as JSON or Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clients.api import ExitCode
from clients.commands.common import _connection_options, _screen, _settings, _write
from clients.evidence import markdown, with_local_moment


@click.command()
@click.argument("job_id", metavar="ID")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["json", "md"]),
    default="md",
    show_default=True,
    help="JSON (the service's packet, with the moments in this machine's time zone too) or "
    "Markdown (for a ticket).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write the packet to FILE instead of stdout.",
)
@_connection_options
@click.pass_context
def evidence(
    ctx: click.Context,
    job_id: str,
    output_format: str,
    out: Path | None,
    command_url: str | None,
    command_key: str | None,
) -> int:
    """The job's escalation packet: what to send a provider about a slow or failed job.

    Time (UTC and this machine's time zone), route and owner, model and endpoint, the
    request's shape, every clock, the layer that timed out, retries and their reasons, what
    the route returned, request ids, the local infrastructure and a sanitized reproduction.
    Never a key, token, prompt, image, IP address, signed link or caller id.
    """
    settings = _settings(ctx, command_url, command_key)
    with settings.client() as client:
        answer = client.evidence(job_id)
    packet = with_local_moment(answer.body)
    text = json.dumps(packet, indent=2) + "\n" if output_format == "json" else markdown(packet)
    if out is None:
        settings.runtime.out.file.write(text)
        settings.runtime.out.file.flush()
        return ExitCode.OK
    _write(out, text.encode())
    _screen(settings.runtime, as_json=False).line(f"evidence of job {job_id} written to {out}")
    return ExitCode.OK
