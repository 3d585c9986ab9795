"""``verify-webhook``: a webhook delivery's signature checked offline."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.text import Text

from clients.api import ExitCode
from clients.commands.common import Settings
from clients.render import Screen
from clients.verify import UnreadableInput, parse_headers, verify


@click.command("verify-webhook")
@click.option(
    "--payload",
    "payload_file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    required=True,
    metavar="FILE",
    help="The request body exactly as received (`-`: standard input).",
)
@click.option(
    "--headers",
    "headers_file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    metavar="FILE",
    help="The request's headers: a JSON object or `Name: value` lines (`-`: standard input).",
)
@click.option("--id", "webhook_id", metavar="ID", help="The webhook-id header (or in --headers).")
@click.option("--timestamp", metavar="SECONDS", help="The webhook-timestamp header.")
@click.option("--signature", metavar="SIG", help="The webhook-signature header.")
@click.option(
    "--secret",
    envvar="IMAGEJOBS_WEBHOOK_SECRET",
    show_envvar=True,
    required=True,
    metavar="WHSEC",
    help="The caller's secret (whsec_..., from GET /api/webhook-secret); never printed. "
    "Prefer the environment variable: a command line shows in `ps`.",
)
@click.option(
    "--any-age",
    is_flag=True,
    help="Check the signature only: a delivery captured more than 5 minutes ago is otherwise "
    "refused as a possible replay.",
)
@click.pass_context
def verify_webhook(
    ctx: click.Context,
    /,
    payload_file: str,
    headers_file: str | None,
    webhook_id: str | None,
    timestamp: str | None,
    signature: str | None,
    secret: str,
    any_age: bool,
) -> int:
    """Check a webhook delivery's Standard Webhooks signature: exit 0 when it verifies, 1 when
    it does not. Nothing is sent anywhere."""
    settings = ctx.obj
    assert isinstance(settings, Settings)
    screen = Screen(settings.runtime.out, settings.runtime.err)
    if payload_file == "-" and headers_file == "-":
        raise click.UsageError("--payload and --headers cannot both be standard input")
    try:
        headers = parse_headers(_read(headers_file).decode()) if headers_file else {}
        given = {"webhook-id": webhook_id, "webhook-timestamp": timestamp}
        given["webhook-signature"] = signature
        headers.update({name: value for name, value in given.items() if value is not None})
        verdict = verify(_read(payload_file), headers, secret, any_age=any_age)
    except UnreadableInput as unreadable:
        raise click.UsageError(str(unreadable)) from None
    if not verdict.ok:
        screen.error(
            f"{verdict.message}; the payload may not be the service's", label="not verified"
        )
        return ExitCode.NOT_VERIFIED
    settings.runtime.out.print(Text(f"verified: {verdict.message}"), soft_wrap=True)
    return ExitCode.OK


def _read(path: str) -> bytes:
    """A file's bytes exactly as they are (a signature covers every byte); ``-``: stdin."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise click.UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
