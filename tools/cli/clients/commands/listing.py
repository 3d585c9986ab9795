"""``list``: the caller's jobs, newest first, a page at a time."""

from __future__ import annotations

from typing import Any

import click

from clients.api import ExitCode, page_token
from clients.commands.common import _connection_options, _print_json, _screen, _settings
from clients.render import jobs_table

# The service's largest page of GET /api/images.
MAX_PAGE = 100


@click.command(name="list")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    metavar="N",
    help="Show the newest N jobs (pages of up to 100 are asked for as needed).",
)
@click.option("--all", "every", is_flag=True, help="Show every job, page after page.")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as a JSON list.")
@_connection_options
@click.pass_context
def list_jobs(
    ctx: click.Context,
    limit: int,
    every: bool,
    as_json: bool,
    command_url: str | None,
    command_key: str | None,
) -> int:
    """List the caller's jobs, newest first: id, state, created.

    The service lists them for a caller with an identity of its own (Easy Auth), or for any
    key holder where IMAGE_SHARED_CALLER_MAY_LIST is on (the local sample).
    """
    settings = _settings(ctx, command_url, command_key)
    items: list[dict[str, Any]] = []
    after: str | None = None
    more = False
    with settings.client() as client:
        while True:
            want = MAX_PAGE if every else min(MAX_PAGE, limit - len(items))
            page = client.list_jobs(limit=want, after=after).body
            items += [i for i in page.get("items") or [] if isinstance(i, dict)]
            after = page_token(page.get("next"))
            more = after is not None
            if after is None or (not every and len(items) >= limit):
                break
    if as_json:
        _print_json(settings.runtime, items)
        return ExitCode.OK
    screen = _screen(settings.runtime, as_json=False)
    if not items:
        screen.line("no jobs")
        return ExitCode.OK
    screen.print(jobs_table(items))
    shown = f"{len(items)} job{'s' if len(items) != 1 else ''}, newest first"
    if more:
        shown += f"; more: {settings.command('list', '--limit', str(len(items) + limit))}"
        shown += " or --all"
    screen.line(shown, style="dim")
    return ExitCode.OK
