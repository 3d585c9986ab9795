"""The image job CLI: ``python -m clients.cli generate --prompt "a red apple" --wait``.

Commands: ``generate`` (start a job; with ``--wait`` follow it to the end), ``status ID``,
``wait ID`` (follow a job already started), ``cancel ID``, ``list`` (the caller's jobs),
``evidence ID`` (the job's escalation packet, JSON or Markdown), ``compare`` (the experiment
matrix, run for real: percentiles, success rate, errors, cost; a CSV and a PNG chart) and
``verify-webhook`` (check a webhook delivery's signature, offline). The function key comes from
``--key`` or ``IMAGEJOBS_KEY`` and is never printed; the service from ``--url`` or
``IMAGEJOBS_URL``. Every failure is one line on stderr saying what to do, with an exit code of
its class (``clients.api.ExitCode``); none is a traceback. ``main(argv) -> int`` is the entry
point (``make demo`` calls it). The commands are in clients.commands, a module per group.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType

import click

from clients.api import DEFAULT_URL, ExitCode, Problem, python_command
from clients.commands import compare, evidence, jobs, listing, webhooks
from clients.commands.common import PROG, Runtime, Settings
from clients.commands.jobs import image_paths
from clients.render import Screen

# Runtime and image_paths are the commands' own, named here too for the CLI's callers.
__all__ = ["EXIT_CODES_HELP", "Runtime", "cli", "image_paths", "main"]

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


# Each command is defined in its module (clients.commands); the help lists them by name.
for _command in (
    jobs.generate,
    jobs.wait,
    jobs.status,
    jobs.cancel,
    webhooks.verify_webhook,
    listing.list_jobs,
    evidence.evidence,
    compare.compare,
):
    cli.add_command(_command)


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
