"""Following a job: poll its status at the pace the service asks until the job ends.

    final = follow(client, job_id, on_status=show, on_trouble=warn)

The pace is the answer's ``Retry-After`` (capped at ``MAX_POLL_S``), or ``poll_interval_s`` when
the caller chose one. A poll that fails in a way that may pass (no connection, no answer, a 5xx)
is not the job failing: it is tried again at the same pace for up to ``patience_s`` in a row,
then reported. Following never starts a job, so a slow job never becomes two.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from clients.api import JobClient, Problem, Unreachable, WaitTimedOut

# The longest wait between two polls, whatever Retry-After says (a person is watching).
MAX_POLL_S = 30.0
# The shortest: a Retry-After of 0 (or a tiny --poll-interval) must not become a busy loop.
MIN_POLL_S = 0.05
# The pace when the service says nothing.
DEFAULT_POLL_S = 2.0


def poll_delay(retry_after_s: float | None, poll_interval_s: float | None = None) -> float:
    """Seconds to the next poll: the caller's interval, else Retry-After capped, else 2 s."""
    if poll_interval_s is not None:
        return max(MIN_POLL_S, poll_interval_s)
    if retry_after_s is None:
        return DEFAULT_POLL_S
    return min(MAX_POLL_S, max(MIN_POLL_S, retry_after_s))


def follow(
    client: JobClient,
    job_id: str,
    *,
    on_status: Callable[[dict[str, Any], float], None],
    on_trouble: Callable[[Problem, float], None] = lambda _problem, _delay: None,
    poll_interval_s: float | None = None,
    first_delay_s: float = 0.0,
    timeout_s: float = 3600.0,
    patience_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll until the job ends and return its last status answer.

    ``on_status(status, next_poll_s)`` gets every answer (``next_poll_s`` is 0 for the last);
    ``on_trouble(problem, next_poll_s)`` every failed poll that will be tried again. Raises
    the last ``Problem`` when polls keep failing for ``patience_s`` (or one cannot pass, as a
    refused key), ``WaitTimedOut`` when the job is still running at ``timeout_s``.
    """
    deadline = monotonic() + timeout_s
    failing_since: float | None = None
    # Until the service has answered once, a stack that is not there is said at once: patience
    # is for a service that answered and then went away for a while.
    answered = False
    delay = first_delay_s
    state = "queued"
    while True:
        if delay > 0:
            sleep(min(delay, max(0.0, deadline - monotonic())))
        try:
            answer = client.status(job_id)
        except Problem as problem:
            now = monotonic()
            if failing_since is None:
                failing_since = now
            if not problem.transient or now - failing_since >= patience_s or now >= deadline:
                raise
            if not answered and isinstance(problem, Unreachable):
                raise
            delay = poll_delay(problem.retry_after_s, poll_interval_s)
            on_trouble(problem, delay)
            continue
        failing_since = None
        answered = True
        status = answer.body
        state = str(status.get("state") or state)
        if answer.status_code == 200:
            on_status(status, 0.0)
            return status
        if monotonic() >= deadline:
            on_status(status, 0.0)
            raise WaitTimedOut(f"job {job_id} is still {state} after {timeout_s:g}s of waiting")
        delay = poll_delay(answer.retry_after_s, poll_interval_s)
        on_status(status, delay)
