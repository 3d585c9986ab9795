"""``generate``, ``wait``, ``status`` and ``cancel``: one job, started, followed, shown, cancelled;
its images saved."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import click
from rich.text import Text

from clients.api import Answer, ExitCode, JobClient, Problem, SaveFailed, WaitTimedOut
from clients.commands.common import (
    FollowOptions,
    Settings,
    _connection_options,
    _follow_options,
    _follow_options_from,
    _print_json,
    _screen,
    _settings,
    _write,
)
from clients.follow import follow, poll_delay
from clients.render import (
    LiveLine,
    Screen,
    change_line,
    error_text,
    image_text,
    request_text,
    retry_text,
    seconds,
    waterfall_table,
)

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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
