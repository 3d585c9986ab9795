import pytest

from rules.status import JobState, derive_state, state_text


@pytest.mark.parametrize(
    ("runtime", "custom", "progress", "output", "state"),
    [
        ("Pending", None, None, None, JobState.QUEUED),
        ("Running", {"phase": "queued"}, None, None, JobState.QUEUED),
        ("Running", {"phase": "generating", "attempt": 1}, None, None, JobState.GENERATING),
        (
            "Running",
            {"phase": "generating", "attempt": 1},
            {"attempt": 1, "previews": [{"index": 0}]},
            None,
            JobState.PREVIEW_AVAILABLE,
        ),
        (
            "Running",
            {"phase": "generating", "attempt": 2},
            {"attempt": 1, "previews": [{"index": 0}]},
            None,
            JobState.GENERATING,
        ),
        (
            "Running",
            {"phase": "generating", "attempt": 1},
            {"attempt": 1, "previews": [], "final_received": True},
            None,
            JobState.FINALIZING,
        ),
        ("Running", {"phase": "waiting_to_retry"}, None, None, JobState.WAITING_TO_RETRY),
        ("Completed", None, None, {"state": "saved"}, JobState.SAVED),
        ("Completed", None, None, {"state": "failed"}, JobState.FAILED),
        ("Terminated", None, None, None, JobState.CANCELLED),
        ("Failed", None, None, None, JobState.FAILED),
    ],
)
def test_state_is_derived_from_durable_and_blob(runtime, custom, progress, output, state):
    assert derive_state(runtime, custom, progress, output) is state


def test_failed_text_names_the_failure():
    assert "returned error" in state_text(JobState.FAILED, "returned_error")
    assert "local timeout" in state_text(JobState.FAILED, "local_timeout")


def test_a_decided_outcome_is_finalizing_until_its_record_is_written():
    custom = {"phase": "finishing", "attempt": 1, "state": "failed", "failure": "returned_error"}
    assert derive_state("Running", custom, None, None) is JobState.FINALIZING
    assert "failed" in state_text(JobState.FINALIZING, None, "failed")
    assert "image" in state_text(JobState.FINALIZING, None, "saved")
