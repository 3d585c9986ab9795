"""The status language: honest states a person can act on, and how they are derived.

States come from field report A's "honest status language" (docs/reference/field-reports.md):
queued, generating, partial preview available, finalizing, saved, failed with returned error, failed
at local timeout; plus ``waiting_to_retry`` while a durable timer runs, ``cancelling`` while a
cancelled job's running attempt stops, and ``cancelled``. The status endpoint derives the
state from three sources and never stores it twice: the durable runtime status, the orchestrator's
custom status (which phase it is in), and the activity's progress record in Blob (previews landed,
final image received).
"""

from __future__ import annotations

from collections.abc import Mapping

from rules.job_records import CustomStatus, JobState, Outcome, Phase, ProgressRecord

STATE_TEXT: Mapping[JobState, str] = {
    JobState.QUEUED: "Queued: the job is accepted and waits for its turn at the route.",
    JobState.GENERATING: "Generating: the model is working on the image.",
    JobState.PREVIEW_AVAILABLE: "Partial preview available: the model is still working.",
    JobState.FINALIZING: "Finalizing: the image has arrived and is being checked and stored.",
    JobState.WAITING_TO_RETRY: "Waiting to retry: the last attempt failed; a retry is scheduled.",
    JobState.CANCELLING: "Cancelling: the running attempt is being stopped.",
    JobState.SAVED: "Saved: the image is stored.",
    JobState.FAILED: "Failed.",
    JobState.CANCELLED: "Cancelled: no further work will be done.",
}

FAILED_TEXT = {
    "returned_error": "Failed with a returned error: the route answered with an error.",
    "local_timeout": "Failed at a local timeout: a limit of ours fired; the route may have "
    "finished on its own.",
    "internal_error": "Failed inside this service (storing, checking or running the attempt); "
    "the error names the layer.",
}

# Durable runtime statuses (the host's names) of an instance that has not ended.
RUNNING_STATUSES = frozenset({"Pending", "Running", "ContinuedAsNew", "Suspended"})


def derive_state(
    runtime_status: str,
    custom_status: CustomStatus | None,
    progress: ProgressRecord | None,
    output: Outcome | None,
) -> JobState:
    """The job's state from what durable and Blob say; pure, so it is tested without a host.

    ``custom_status`` is what the orchestrator last set (None before it set any),
    ``progress`` the activity's progress record for the current attempt, ``output`` the
    orchestration's output once it completed.
    """
    if runtime_status == "Completed" and output is not None:
        return output.state
    if runtime_status == "Terminated":
        return JobState.CANCELLED
    if runtime_status == "Failed":
        return JobState.FAILED
    if runtime_status not in RUNNING_STATUSES:
        return JobState.FAILED
    if custom_status is None:
        return JobState.QUEUED
    phase = custom_status.phase
    if phase is Phase.QUEUED:
        return JobState.QUEUED
    if phase is Phase.FINISHING:
        # The outcome is decided; its record (metadata.json) is being written. Not terminal yet,
        # so that a poller that stops at the end finds the record's link.
        return JobState.FINALIZING
    if phase is Phase.WAITING_TO_RETRY:
        return JobState.WAITING_TO_RETRY
    if phase is Phase.CANCELLING:
        return JobState.CANCELLING
    # The orchestrator has scheduled the attempt; until its request is about to leave (the
    # attempt's record says so, written just before the send) it waits for a worker: queued.
    if progress is None or progress.attempt != custom_status.attempt or not progress.sent:
        return JobState.QUEUED
    if progress.final_received:
        return JobState.FINALIZING
    if progress.previews:
        return JobState.PREVIEW_AVAILABLE
    return JobState.GENERATING


ENDING_TEXT = {
    JobState.FAILED: "Finalizing: the job failed; its record is being written.",
    JobState.CANCELLED: "Finalizing: the job is cancelled; its record is being written.",
}


def state_text(state: JobState, failure: str | None = None, ending: JobState | None = None) -> str:
    """The sentence for ``state``; ``ending`` is the decided outcome while FINALIZING."""
    if state is JobState.FAILED and failure in FAILED_TEXT:
        return FAILED_TEXT[failure]
    if state is JobState.FINALIZING and ending in ENDING_TEXT:
        return ENDING_TEXT[ending]
    return STATE_TEXT[state]
