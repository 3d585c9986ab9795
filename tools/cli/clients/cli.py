"""The image job CLI: ``python -m clients.cli generate --prompt "a red apple" --wait``.

Commands: ``generate`` (start a job; with ``--wait`` follow it to the end), ``status ID``,
``wait ID`` (follow a job already started), ``cancel ID``, ``list`` (the caller's jobs),
``evidence ID`` (the job's escalation packet, JSON or Markdown), ``compare`` (the experiment
matrix, run for real: percentiles, success rate, errors, cost; a CSV and a PNG chart) and
``verify-webhook`` (check a webhook delivery's signature, offline). The function key comes from
``--key`` or ``IMAGEJOBS_KEY`` and is never printed; the service from ``--url`` or
``IMAGEJOBS_URL``. Every failure is one line on stderr saying what to do, with an exit code of
its class (``clients.api.ExitCode``); none is a traceback. ``main(argv) -> int`` is the entry
point (``make demo`` calls it).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlsplit

import click
import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from clients.api import (
    DEFAULT_URL,
    Answer,
    ExitCode,
    JobClient,
    Problem,
    SaveFailed,
    WaitTimedOut,
    page_token,
    python_command,
)
from clients.compare import (
    RunResult,
    matrix,
    run_matrix,
    runs_csv_path,
    summarize,
    summary_json,
    write_chart,
    write_csv,
    write_runs_csv,
)
from clients.evidence import markdown, with_local_moment
from clients.follow import follow, poll_delay
from clients.render import (
    LiveLine,
    Screen,
    change_line,
    compare_errors,
    compare_table,
    error_text,
    image_text,
    jobs_table,
    request_text,
    retry_text,
    run_line,
    seconds,
    waterfall_table,
)
from clients.verify import UnreadableInput, parse_headers, verify

PROG = f"{python_command()} -m clients.cli"
# The service's largest page of GET /api/images.
MAX_PAGE = 100
# compare's prompt: one for every run, so that only the shape varies between cells.
COMPARE_PROMPT = "a red apple on a white background, studio light"
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}

EXIT_CODES_HELP = """\b
Exit codes:
  0    done (generate --wait / wait: the job is saved and its images written;
       verify-webhook: the signature verifies)
  1    the job ended failed (verify-webhook: the signature does not verify)
  2    a wrong option or argument
  3    the job ended cancelled
  4    the function key is missing or wrong (HTTP 401/403)
  5    cannot connect: the stack is not running, or --url is wrong
  6    timed out: no answer within --http-timeout, or the job still running at --timeout
  7    the answer is not the service's JSON (is --url the image job service?)
  8    the service refused the request (a 4xx error: it names the code and field)
  9    the service failed (a 5xx error); try again later
  10   the job is saved, but an image could not be fetched or written here
  130  Ctrl-C: stopped following; the job goes on (`wait ID` resumes, `cancel ID` stops it)
"""


@dataclass
class Runtime:
    """Where the CLI talks and writes; tests replace the transport, consoles and clock."""

    out: Console = field(default_factory=lambda: Console(highlight=False))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    # The SIGINT handler main found (it handles Ctrl-C its own way while it runs).
    sigint_handler: Any = None


@dataclass
class Settings:
    """The group's options, as the commands see them."""

    runtime: Runtime
    url: str
    key: str | None
    http_timeout_s: float

    def client(self) -> JobClient:
        return JobClient(
            self.url, self.key, timeout_s=self.http_timeout_s, transport=self.runtime.transport
        )

    def command(self, *words: str) -> str:
        """How to run another command against the same service (never with the key)."""
        url = f" --url {self.url}" if self.url.rstrip("/") != DEFAULT_URL else ""
        return f"{PROG}{url} {' '.join(words)}"


@dataclass(frozen=True)
class FollowOptions:
    out: Path | None
    out_dir: Path | None
    previews_dir: Path | None
    poll_interval_s: float | None
    timeout_s: float
    patience_s: float
    as_json: bool


def _settings(ctx: click.Context, url: str | None, key: str | None) -> Settings:
    """The group's settings, with a command's own --url / --key winning where given."""
    settings = ctx.obj
    assert isinstance(settings, Settings)
    if url is not None:
        settings.url = url
    if key is not None:
        settings.key = key
    return settings


# --url and --key are accepted after the command too (`status ID --url ... --key ...`).
def _connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--key",
        "command_key",
        metavar="KEY",
        help="The function key (same as the global --key; never printed).",
    )(command)
    return click.option(
        "--url",
        "command_url",
        metavar="URL",
        help="The service's base URL (same as the global --url).",
    )(command)


def _follow_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--out",
            "--image",
            "out",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="FILE",
            help="Save image 0 as FILE, and the others of an n > 1 job as FILE-1.ext, "
            "FILE-2.ext, ... (--image is the same option).",
        ),
        click.option(
            "--out-dir",
            type=click.Path(file_okay=False, path_type=Path),
            metavar="DIR",
            help="Save every image in DIR as ID.ext, ID-1.ext, ... (created if missing).",
        ),
        click.option(
            "--previews-dir",
            type=click.Path(file_okay=False, path_type=Path),
            metavar="DIR",
            help="Save each partial preview in DIR as it appears (ID-preview-ATTEMPT-K.ext).",
        ),
        click.option(
            "--poll-interval",
            type=click.FloatRange(min=0.05),
            metavar="SECONDS",
            help="Poll at this pace instead of the service's Retry-After "
            "(which is honoured, capped at 30s, by default).",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0),
            default=3600.0,
            show_default=True,
            metavar="SECONDS",
            help="Stop following after this long (the job goes on; exit code 6).",
        ),
        click.option(
            "--patience",
            type=click.FloatRange(min=0),
            default=60.0,
            show_default=True,
            metavar="SECONDS",
            help="Keep polling through failed polls (service down, 5xx) this long in a row "
            "before giving up.",
        ),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            help="Print the final status answer as JSON on stdout (progress goes to stderr).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _follow_options_from(kwargs: dict[str, Any]) -> FollowOptions:
    options = FollowOptions(
        out=kwargs.pop("out"),
        out_dir=kwargs.pop("out_dir"),
        previews_dir=kwargs.pop("previews_dir"),
        poll_interval_s=kwargs.pop("poll_interval"),
        timeout_s=kwargs.pop("timeout"),
        patience_s=kwargs.pop("patience"),
        as_json=kwargs.pop("as_json"),
    )
    if options.out is not None and options.out_dir is not None:
        raise click.UsageError("give --out or --out-dir, not both")
    return options


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.option(
    "--url",
    envvar="IMAGEJOBS_URL",
    show_envvar=True,
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="The service's base URL (the part before /api/images).",
)
@click.option(
    "--key",
    envvar="IMAGEJOBS_KEY",
    show_envvar=True,
    metavar="KEY",
    help="The function key, sent as x-functions-key and never printed; locally "
    f"`{python_command()} -m devhost keys` prints it. Prefer the environment variable: a "
    "command line shows in `ps`.",
)
@click.option(
    "--http-timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long one HTTP call may take before it counts as no answer.",
)
@click.pass_context
def cli(ctx: click.Context, url: str, key: str | None, http_timeout: float) -> None:
    """Start gpt-image-2 image jobs and follow them to the end.

    A job runs in the service, not here: `generate` gets its id at once, and `--wait` (or
    `wait ID` later) follows it at the pace the service asks. Stopping this command never
    stops the job; `cancel ID` does. A slow job is never started a second time.
    """
    runtime = ctx.obj if isinstance(ctx.obj, Runtime) else Runtime()
    ctx.obj = Settings(runtime=runtime, url=url, key=key or None, http_timeout_s=http_timeout)


@cli.command()
@click.option("--prompt", required=True, help="What the image should show.")
@click.option("--size", metavar="WxH", help="e.g. 1024x1024, 1536x1024, or auto.")
@click.option("--quality", metavar="Q", help="low, medium, high or auto.")
@click.option("--output-format", metavar="FORMAT", help="png, jpeg or webp (per route).")
@click.option(
    "--output-compression", type=int, metavar="0-100", help="Compression of jpeg or webp."
)
@click.option("--background", metavar="B", help="transparent, opaque or auto.")
@click.option("--moderation", metavar="M", help="auto or low.")
@click.option("-n", "--n", "n", type=int, metavar="N", help="How many images (all are saved).")
@click.option("--partial-images", type=int, metavar="K", help="Previews to stream (0-3).")
@click.option("--route", metavar="NAME", help="The service's route (e.g. azure, openai).")
@click.option(
    "--idempotency-key",
    metavar="TEXT",
    help="Sent as Idempotency-Key: the same key returns the same job, never a second one.",
)
@click.option(
    "--webhook-url",
    metavar="URL",
    help="Where the service POSTs the job's end (signed; check one with verify-webhook).",
)
@click.option(
    "--wait/--no-wait",
    default=False,
    show_default=True,
    help="Follow the job to the end: live state, previews, clocks and images.",
)
@_follow_options
@_connection_options
@click.pass_context
def generate(ctx: click.Context, /, **kwargs: Any) -> int:
    """Start an image job (and with --wait, follow it to the end).

    Unset options take the service's defaults; the service checks every value against the
    model's rules and names the field it refuses (exit code 8).
    """
    settings = _settings(ctx, kwargs.pop("command_url"), kwargs.pop("command_key"))
    wait = kwargs.pop("wait")
    idempotency_key = kwargs.pop("idempotency_key")
    webhook_url = kwargs.pop("webhook_url")
    options = _follow_options_from(kwargs)
    if not wait and (options.out or options.out_dir or options.previews_dir):
        raise click.UsageError("--out, --out-dir and --previews-dir need --wait")
    request = {name: value for name, value in kwargs.items() if value is not None}
    if webhook_url is not None:
        request["webhookUrl"] = webhook_url
    screen = _screen(settings.runtime, as_json=options.as_json)
    started = settings.runtime.monotonic()
    with settings.client() as client:
        try:
            answer = client.start(request, idempotency_key=idempotency_key)
        except KeyboardInterrupt:
            screen.error(
                "before the service answered: a job may have started; run the same command "
                "again to get that job (the service returns a running job for the same request "
                "instead of starting another)",
                label="interrupted",
            )
            return ExitCode.INTERRUPTED
        job_id = str(answer.body.get("id"))
        _show_started(screen, settings, answer, following=wait)
        if not wait:
            if options.as_json:
                _print_json(settings.runtime, answer.body)
            return ExitCode.OK
        return _follow_and_finish(
            screen,
            settings,
            client,
            job_id,
            options,
            first_delay_s=poll_delay(answer.retry_after_s, options.poll_interval_s),
            started=started,
        )


@cli.command()
@click.argument("job_id", metavar="ID")
@_follow_options
@_connection_options
@click.pass_context
def wait(ctx: click.Context, /, job_id: str, **kwargs: Any) -> int:
    """Follow a job until it ends; show its clocks, save its images.

    The job was started before (by `generate`, or by another client). On a job that has
    ended it returns at once (a way to fetch its images again).
    """
    settings = _settings(ctx, kwargs.pop("command_url"), kwargs.pop("command_key"))
    options = _follow_options_from(kwargs)
    screen = _screen(settings.runtime, as_json=options.as_json)
    with settings.client() as client:
        return _follow_and_finish(
            screen,
            settings,
            client,
            job_id,
            options,
            first_delay_s=0.0,
            started=settings.runtime.monotonic(),
        )


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the status answer as JSON.")
@_connection_options
@click.pass_context
def status(
    ctx: click.Context,
    job_id: str,
    as_json: bool,
    command_url: str | None,
    command_key: str | None,
) -> int:
    """Show a job's status once (or as JSON with --json).

    State and its sentence, attempt, request, retry, clocks, previews, images, error.
    """
    settings = _settings(ctx, command_url, command_key)
    with settings.client() as client:
        answer = client.status(job_id)
    if as_json:
        _print_json(settings.runtime, answer.body)
        return ExitCode.OK
    screen = _screen(settings.runtime, as_json=False)
    _show_status(screen, settings, answer.body, running=answer.status_code == 202)
    return ExitCode.OK


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the cancel answer as JSON.")
@_connection_options
@click.pass_context
def cancel(
    ctx: click.Context,
    job_id: str,
    as_json: bool,
    command_url: str | None,
    command_key: str | None,
) -> int:
    """Cancel a job (it stops; its record stays).

    A queued job never reaches the model, a running stream is closed. Exit code 0 once the
    service has taken the cancel (or the job had already ended).
    """
    settings = _settings(ctx, command_url, command_key)
    with settings.client() as client:
        answer = client.cancel(job_id)
    if as_json:
        _print_json(settings.runtime, answer.body)
        return ExitCode.OK
    screen = _screen(settings.runtime, as_json=False)
    state = answer.body.get("state")
    if answer.status_code == 200:
        screen.line(f"job {job_id} had already ended: {state}")
        return ExitCode.OK
    before = answer.body.get("beforeSend")
    note = ""
    if before is True:
        note = " (before its request was sent: the model is not called)"
    elif before is False:
        note = " (its request was sent: the running stream is being closed)"
    screen.line(f"job {job_id}: {state}{note}")
    screen.line(f"follow it to the end: {settings.command('wait', job_id)}")
    return ExitCode.OK


@cli.command("verify-webhook")
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


@cli.command(name="list")
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


@cli.command()
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


def _csv_list(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in value.split(",") if part.strip())
    if not items:
        raise click.BadParameter("name at least one value (comma-separated)")
    return items


@cli.command()
@click.option(
    "--route",
    "routes",
    default="azure",
    show_default=True,
    callback=_csv_list,
    metavar="A,B",
    help="Routes to compare (comma-separated; GET /api/routes lists them).",
)
@click.option(
    "--quality",
    "qualities",
    default="low",
    show_default=True,
    callback=_csv_list,
    metavar="Q,...",
    help="Qualities (low, medium, high, auto).",
)
@click.option(
    "--size",
    "sizes",
    default="1024x1024",
    show_default=True,
    callback=_csv_list,
    metavar="WxH,...",
    help="Sizes (e.g. 1024x1024,1536x1024).",
)
@click.option(
    "--format",
    "formats",
    default="png",
    show_default=True,
    callback=_csv_list,
    metavar="F,...",
    help="Output formats (png, jpeg, webp).",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    metavar="N",
    help="Jobs per cell.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    metavar="K",
    help="Jobs running at once.",
)
@click.option(
    "--prompt",
    default=COMPARE_PROMPT,
    show_default=True,
    help="The prompt of every run (one prompt for all: only the shape varies).",
)
@click.option(
    "--partial-images",
    type=int,
    metavar="K",
    help="Previews to stream (the service's default).",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("compare.csv"),
    show_default=True,
    metavar="FILE",
    help="The summary, one row per cell; the runs go beside it as FILE-runs.csv.",
)
@click.option(
    "--chart",
    "chart_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("compare.png"),
    show_default=True,
    metavar="FILE",
    help="The PNG chart: per cell and clock, p50 (bar) and p95 (whisker).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.05),
    metavar="SECONDS",
    help="Poll at this pace instead of the service's Retry-After (total-to-saved is measured "
    "at the poll that sees the job saved).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=900.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up following one job after this long (it counts as an error).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@_connection_options
@click.pass_context
def compare(ctx: click.Context, /, **kwargs: Any) -> int:
    """Compare shapes and routes for real: N jobs per cell of the experiment matrix.

    The matrix is every combination of --route, --quality, --size and --format. Per cell:
    p50 and p95 of first byte, first partial image, final image (the service's clocks) and
    total to saved (this client's), success rate, errors by kind, and cost. Writes the
    summary and the runs as CSV, and a PNG chart. Ctrl-C stops following; the
    jobs started go on, and what ended so far is still written.
    """
    settings = _settings(ctx, kwargs.pop("command_url"), kwargs.pop("command_key"))
    runtime = settings.runtime
    screen = _screen(runtime, as_json=kwargs["as_json"])
    cells = matrix(kwargs["routes"], kwargs["qualities"], kwargs["sizes"], kwargs["formats"])
    with settings.client() as client:
        known = [str(r.get("route")) for r in client.routes().body.get("routes") or []]
    unknown = [route for route in kwargs["routes"] if route not in known]
    if unknown:
        raise click.BadParameter(
            f"no route {', '.join(unknown)} in the service (it has {', '.join(known)})",
            param_hint="--route",
        )
    runs, concurrency = kwargs["runs"], kwargs["concurrency"]
    total = len(cells) * runs
    screen.line(
        f"comparing {len(cells)} cell{'s' if len(cells) != 1 else ''} x {runs} run"
        f"{'s' if runs != 1 else ''} = {total} jobs, {concurrency} at once"
    )
    stop = threading.Event()
    progress = CompareProgress(screen, total)
    interrupted = False
    results: list[RunResult] = []
    try:
        with progress:
            results = run_matrix(
                settings.client,
                cells,
                runs=runs,
                concurrency=concurrency,
                prompt=kwargs["prompt"],
                partial_images=kwargs["partial_images"],
                poll_interval_s=kwargs["poll_interval"],
                timeout_s=kwargs["timeout"],
                on_result=progress.done,
                stop=stop,
            )
    except KeyboardInterrupt:
        stop.set()
        interrupted = True
        results = sorted(progress.results, key=lambda r: (r.cell, r.run))
    summaries = summarize(results)
    if summaries:
        write_csv(kwargs["csv_path"], summaries)
        write_runs_csv(runs_csv_path(kwargs["csv_path"]), results)
        title = f"{len(results)} runs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        write_chart(kwargs["chart_path"], summaries, title=title)
        screen.print(compare_table(summaries))
        for line in compare_errors(summaries):
            screen.line(f"errors {line}", style="yellow")
        screen.line(f"summary: {kwargs['csv_path']}")
        screen.line(f"runs:    {runs_csv_path(kwargs['csv_path'])}")
        screen.line(f"chart:   {kwargs['chart_path']}")
    if kwargs["as_json"]:
        _print_json(runtime, {"cells": [summary_json(s) for s in summaries]})
    if interrupted:
        screen.error(
            f"stopped after {len(results)} of {total} runs; the jobs started go on "
            f"(`{settings.command('list')}` shows them)",
            label="interrupted",
        )
        return ExitCode.INTERRUPTED
    return ExitCode.OK


class CompareProgress:
    """The runs as they end: a rich progress bar on a terminal, a line per run elsewhere."""

    def __init__(self, screen: Screen, total: int) -> None:
        self.screen = screen
        self.total = total
        self.results: list[RunResult] = []
        self._lock = threading.Lock()
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=screen.out,
            transient=True,
        )
        self._task = self._bar.add_task("runs", total=total)

    def __enter__(self) -> CompareProgress:
        if self.screen.out.is_terminal:
            self._bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._bar.stop()

    def done(self, result: RunResult) -> None:
        with self._lock:
            self.results.append(result)
            failed = sum(1 for r in self.results if not r.saved)
            self._bar.update(
                self._task,
                advance=1,
                description=f"runs ({failed} not saved)" if failed else "runs",
            )
            if not self.screen.out.is_terminal:
                self.screen.line(run_line(result, len(self.results), self.total))
            if result.detail and result.error_kind == "client:refused":
                self.screen.warn(f"{result.cell.label}: {result.detail}")


def _screen(runtime: Runtime, *, as_json: bool) -> Screen:
    # With --json, stdout carries the JSON alone: what a person reads goes to stderr.
    return Screen(runtime.err if as_json else runtime.out, runtime.err)


def _print_json(runtime: Runtime, body: object) -> None:
    runtime.out.file.write(json.dumps(body, indent=2) + "\n")
    runtime.out.file.flush()


def _show_started(screen: Screen, settings: Settings, answer: Answer, *, following: bool) -> None:
    body = answer.body
    replayed = answer.headers.get("idempotent-replayed", "").lower() == "true"
    what = "already started for this request, no second job" if replayed else "accepted"
    screen.line(f"job {body.get('id')} {what}: {body.get('state')}")
    for note in body.get("notes") or []:
        screen.line(f"  note: {note}")
    if body.get("statusUrl"):
        screen.link("status:", str(body["statusUrl"]))
    if not following:
        screen.line(f"follow it: {settings.command('wait', str(body.get('id')))}")


def _follow_and_finish(
    screen: Screen,
    settings: Settings,
    client: JobClient,
    job_id: str,
    options: FollowOptions,
    *,
    first_delay_s: float,
    started: float,
) -> int:
    runtime = settings.runtime
    live = LiveLine(runtime.monotonic)
    live.started = started
    last: tuple[object, ...] | None = None
    saved_previews: set[str] = set()

    def on_status(status: dict[str, Any], next_poll_s: float) -> None:
        nonlocal last
        live.update(status, next_poll_s)
        seen = (
            status.get("state"),
            status.get("attempt"),
            len(status.get("previews") or []),
            json.dumps(status.get("retry"), sort_keys=True),
        )
        if seen != last:
            screen.line(change_line(status, runtime.monotonic() - started))
            last = seen
        if options.previews_dir is not None:
            _save_previews(screen, client, job_id, status, options.previews_dir, saved_previews)

    def on_trouble(problem: Problem, next_poll_s: float) -> None:
        live.troubled(problem.message, next_poll_s)
        if not screen.out.is_terminal:
            screen.warn(f"poll failed, trying again in {seconds(next_poll_s)}: {problem.message}")

    try:
        with screen.live(live):
            final = follow(
                client,
                job_id,
                on_status=on_status,
                on_trouble=on_trouble,
                poll_interval_s=options.poll_interval_s,
                first_delay_s=first_delay_s,
                timeout_s=options.timeout_s,
                patience_s=options.patience_s,
                sleep=runtime.sleep,
                monotonic=runtime.monotonic,
            )
    except KeyboardInterrupt:
        screen.error(
            f"stopped following job {job_id}; it goes on. Follow it again: "
            f"{settings.command('wait', job_id)} · stop it: "
            f"{settings.command('cancel', job_id)}",
            label="interrupted",
        )
        return ExitCode.INTERRUPTED
    except Problem as problem:
        if problem.transient or isinstance(problem, WaitTimedOut):
            # The service (or the waiting) gave out, not the job: say how to pick it up again.
            subject = "it" if isinstance(problem, WaitTimedOut) else f"job {job_id}"
            problem.message += (
                f"; {subject} goes on: {settings.command('wait', job_id)} follows it again, "
                f"{settings.command('cancel', job_id)} stops it"
            )
        raise
    return _finish(screen, settings, client, final, options, runtime.monotonic() - started, live)


def _finish(
    screen: Screen,
    settings: Settings,
    client: JobClient,
    status: dict[str, Any],
    options: FollowOptions,
    elapsed_s: float,
    live: LiveLine,
) -> int:
    job_id = str(status.get("id"))
    state = status.get("state")
    images = [i for i in status.get("images") or [] if isinstance(i, dict)]
    if not images and isinstance(status.get("image"), dict):
        images = [status["image"]]
    saved_to: list[str | None] = [None] * len(images)
    problem: SaveFailed | None = None
    if state == "saved" and (options.out or options.out_dir):
        try:
            for index, path in enumerate(image_paths(job_id, images, options.out, options.out_dir)):
                _write(path, client.download(str(images[index]["url"]), what=f"image {index}"))
                saved_to[index] = str(path)
        except SaveFailed as failed:
            problem = failed
    screen.line("")
    summary = f"job {job_id} {state} after {seconds(elapsed_s)} (attempt {status.get('attempt')}"
    summary += f", {live.polls} poll{'s' if live.polls != 1 else ''})"
    if status.get("costUsd") is not None:
        estimated = " estimated" if status.get("costEstimated") else ""
        summary += f"; cost{estimated} ${status['costUsd']:.4f}"
    screen.line(summary, style="bold")
    _show_outcome(screen, status, images, saved_to)
    if options.as_json:
        _print_json(settings.runtime, status)
    if problem is not None:
        raise problem
    if state == "saved":
        return ExitCode.OK
    if state == "cancelled":
        return ExitCode.JOB_CANCELLED
    return ExitCode.JOB_FAILED


def _show_outcome(
    screen: Screen,
    status: dict[str, Any],
    images: list[dict[str, Any]],
    saved_to: Sequence[str | None],
) -> None:
    """The clocks, the images and their links, the metadata link, the error."""
    table = waterfall_table(
        status.get("timings"),
        title=f"clocks of attempt {status.get('attempt')} (ms from the send)",
        width=screen.out.width,
    )
    if table is not None:
        screen.print(table)
    for index, image in enumerate(images):
        saved = saved_to[index] if index < len(saved_to) else None
        screen.link(image_text(index, image, saved), str(image.get("url")))
    if status.get("metadataUrl"):
        screen.link("metadata (every clock, attempt and wait):", str(status["metadataUrl"]))
    if status.get("error"):
        screen.line(f"error: {error_text(status['error'])}", style="red")


def _show_status(
    screen: Screen, settings: Settings, status: dict[str, Any], *, running: bool
) -> None:
    job_id = str(status.get("id"))
    screen.line(Text(f"job {job_id}: ") + change_line(status))
    if status.get("request"):
        screen.line(f"  request: {request_text(status['request'])}")
    if status.get("route"):
        screen.line(f"  route: {status['route']}")
    for label, key in (("created", "createdAt"), ("updated", "updatedAt")):
        if status.get(key):
            screen.line(f"  {label}: {status[key]}")
    if status.get("retry"):
        screen.line(f"  {retry_text(status['retry'])}")
    for preview in status.get("previews") or []:
        screen.link(f"  preview {preview.get('index')}:", str(preview.get("url")))
    images = [i for i in status.get("images") or [] if isinstance(i, dict)]
    _show_outcome(screen, status, images, [None] * len(images))
    if running:
        screen.line(f"follow it: {settings.command('wait', job_id)}")
    elif images:
        screen.line(f"save its images: {settings.command('wait', job_id, '--out-dir', '.')}")


def image_paths(
    job_id: str, images: Sequence[dict[str, Any]], out: Path | None, out_dir: Path | None
) -> list[Path]:
    """Where each image goes: --out FILE is image 0, FILE-1.ext, FILE-2.ext the others;
    --out-dir DIR holds ID.ext, ID-1.ext, ..."""
    paths: list[Path] = []
    for index, image in enumerate(images):
        ext = _extension(image)
        if out is not None:
            suffix = out.suffix or f".{ext}"
            paths.append(out if index == 0 else out.with_name(f"{out.stem}-{index}{suffix}"))
        elif out_dir is not None:
            name = job_id if index == 0 else f"{job_id}-{index}"
            paths.append(out_dir / f"{name}.{ext}")
    return paths


def _extension(image: dict[str, Any]) -> str:
    suffix = PurePosixPath(unquote(urlsplit(str(image.get("url") or "")).path)).suffix
    if suffix and len(suffix) <= 6:
        return suffix[1:]
    return EXTENSIONS.get(str(image.get("contentType")), "png")


def _save_previews(
    screen: Screen,
    client: JobClient,
    job_id: str,
    status: dict[str, Any],
    folder: Path,
    done: set[str],
) -> None:
    for preview in status.get("previews") or []:
        url = str(preview.get("url") or "")
        name = PurePosixPath(unquote(urlsplit(url).path)).name or f"preview-{preview.get('index')}"
        if not url or name in done:
            continue
        done.add(name)  # tried once: a preview that cannot be fetched is a warning, not a loop
        path = folder / f"{job_id}-{name}"
        try:
            _write(path, client.download(url, what=f"preview {preview.get('index')}"))
        except SaveFailed as failed:
            screen.warn(failed.message)
            continue
        screen.line(f"         preview {preview.get('index')} saved to {path}", style="dim")


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise SaveFailed(f"cannot write {path}: {exc.strerror or exc}") from None


def _first_interrupt_only(runtime: Runtime) -> None:
    """The first Ctrl-C raises KeyboardInterrupt and sets SIGINT aside, so the presses after it
    are ignored until ``main`` returns: the first one's clean-up (the live line cleared) and
    message run whole, and no second one ends in a traceback."""

    def on_interrupt(_signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:  # not the main thread: signals are not ours to handle
        return
    if runtime.sigint_handler is None:
        runtime.sigint_handler = previous


def main(
    argv: Sequence[str] | None = None,
    *,
    runtime: Runtime | None = None,
    restore_sigint: bool = True,
) -> int:
    """Run the CLI and return its exit code (``ExitCode``); never raises, never a traceback
    for a failure of the service, the network or the user's input. ``restore_sigint`` False
    (the program itself, which exits next) keeps further Ctrl-C presses ignored to the end, so
    a second press cannot kill the process between the message and the exit code."""
    runtime = runtime or Runtime()
    try:
        return _main(argv, runtime)
    finally:
        if runtime.sigint_handler is not None and restore_sigint:
            signal.signal(signal.SIGINT, runtime.sigint_handler)
            runtime.sigint_handler = None


def _main(argv: Sequence[str] | None, runtime: Runtime) -> int:
    _first_interrupt_only(runtime)
    try:
        result = cli.main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name=PROG,
            standalone_mode=False,
            obj=runtime,
        )
    except Problem as problem:
        Screen(runtime.out, runtime.err).error(problem.message)
        return problem.exit_code
    except click.ClickException as exc:
        exc.show(file=runtime.err.file)
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        Screen(runtime.out, runtime.err).error("stopped", label="interrupted")
        return ExitCode.INTERRUPTED
    if isinstance(result, int):
        return result
    return ExitCode.OK  # --help


if __name__ == "__main__":
    sys.exit(main(restore_sigint=False))
