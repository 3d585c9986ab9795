"""What the commands share: the runtime, the group's settings, the shared options, the screen
and writing a file."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
from rich.console import Console

from clients.api import DEFAULT_URL, JobClient, SaveFailed, python_command
from clients.render import Screen

PROG = f"{python_command()} -m clients.cli"


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


def _screen(runtime: Runtime, *, as_json: bool) -> Screen:
    # With --json, stdout carries the JSON alone: what a person reads goes to stderr.
    return Screen(runtime.err if as_json else runtime.out, runtime.err)


def _print_json(runtime: Runtime, body: object) -> None:
    runtime.out.file.write(json.dumps(body, indent=2) + "\n")
    runtime.out.file.flush()


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise SaveFailed(f"cannot write {path}: {exc.strerror or exc}") from None
