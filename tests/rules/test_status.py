import pytest

from rules.job_records import CustomStatus, JobState, Outcome, ProgressRecord
from rules.status import derive_state, state_text

PREVIEW = {"index": 0, "partial_image_index": 0, "blob": "j/preview-1-0.png", "bytes": 9}


def progress(**fields: object) -> ProgressRecord:
    return ProgressRecord.from_json({"started_at": None, "job_created_at": None, **fields})


@pytest.mark.parametrize(
    ("runtime", "custom", "progress_record", "output", "state"),
    [
        ("Pending", None, None, None, JobState.QUEUED),
        ("Running", None, None, None, JobState.QUEUED),
        # Scheduled, but its request not about to leave yet: waiting for a worker.
        ("Running", {"phase": "generating", "attempt": 1}, None, None, JobState.QUEUED),
        (
            "Running",
            {"phase": "generating", "attempt": 1},
            {"attempt": 1, "sent": False},
            None,
            JobState.QUEUED,
        ),
        (
            "Running",
            {"phase": "generating", "attempt": 1},
            {"attempt": 1, "sent": True},
            None,
            JobState.GENERATING,
        ),
        (
            "Running",
            {"phase": "generating", "attempt": 1},
            {"attempt": 1, "previews": [PREVIEW]},
            None,
            JobState.PREVIEW_AVAILABLE,
        ),
        (
            "Running",
            {"phase": "generating", "attempt": 2},
            {"attempt": 1, "previews": [PREVIEW]},
            None,
            JobState.QUEUED,
        ),
        (
            "Running",
            {"phase": "generating", "attempt": 1},
            {"attempt": 1, "previews": [], "final_received": True},
            None,
            JobState.FINALIZING,
        ),
        (
            "Running",
            {"phase": "waiting_to_retry", "attempt": 1},
            None,
            None,
            JobState.WAITING_TO_RETRY,
        ),
        ("Running", {"phase": "cancelling", "attempt": 1}, None, None, JobState.CANCELLING),
        ("Completed", None, None, {"state": "saved", "attempt": 1}, JobState.SAVED),
        ("Completed", None, None, {"state": "failed", "attempt": 2}, JobState.FAILED),
        ("Terminated", None, None, None, JobState.CANCELLED),
        ("Failed", None, None, None, JobState.FAILED),
    ],
)
def test_state_is_derived_from_durable_and_blob(runtime, custom, progress_record, output, state):
    assert (
        derive_state(
            runtime,
            CustomStatus.from_json(custom),
            progress(**progress_record) if progress_record else None,
            Outcome.from_json(output) if output else None,
        )
        is state
    )


def test_failed_text_names_the_failure():
    assert "returned error" in state_text(JobState.FAILED, "returned_error")
    assert "local timeout" in state_text(JobState.FAILED, "local_timeout")


def test_a_decided_outcome_is_finalizing_until_its_record_is_written():
    custom = CustomStatus.from_json(
        {"phase": "finishing", "attempt": 1, "state": "failed", "failure": "returned_error"}
    )
    assert derive_state("Running", custom, None, None) is JobState.FINALIZING
    assert "failed" in state_text(JobState.FINALIZING, None, JobState.FAILED)
    assert "image" in state_text(JobState.FINALIZING, None, JobState.SAVED)


def test_the_readme_and_the_contract_list_every_failure_category():
    from pathlib import Path

    from rules.status import FAILED_TEXT

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    contract = (root / "docs" / "job-contract.md").read_text()
    for category in FAILED_TEXT:
        assert f"`{category}`" in readme, category
        assert f"`{category}`" in contract, category
