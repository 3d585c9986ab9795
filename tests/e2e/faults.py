"""What every fault case asserts: the terminal state and reason, the attempts, the simulator
ledger's billable generations, no lost image and no orphan blob."""

from __future__ import annotations

from typing import Any

from .conftest import Api


def run_case(
    api: Api, faults: list[dict[str, Any]], **body: Any
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Queue the faults, run one job to its end; (final status, metadata, ledger entries)."""
    mark = api.ledger_mark()
    for fault in faults:
        api.fault(**fault)
    started = api.start(**body)
    assert started.status_code == 202, started.text
    final = api.poll(started.json()["id"], timeout_s=180)[-1]
    metadata = api.metadata(final)
    return final, metadata, api.ledger(mark)


def check_case(
    api: Api,
    final: dict[str, Any],
    metadata: dict[str, Any],
    ledger: list[dict[str, Any]],
    *,
    state: str,
    failure: str | None = None,
    attempts: int,
    billable: int,
) -> None:
    assert final["state"] == state, (final, metadata["attempts"])
    assert final["failure"] == failure
    assert metadata["state"] == state
    assert len(metadata["attempts"]) == attempts, metadata["attempts"]
    assert metadata["retry_count"] == attempts - 1
    assert sum(1 for e in ledger if e["billable"]) == billable, ledger
    # Every attempt that reached the route is one ledger entry, and no entry is unexplained.
    sent = [a for a in metadata["attempts"] if a["sent"]]
    assert len(ledger) == len(sent), (ledger, metadata["attempts"])
    # No lost image: every image the route delivered is the one stored, and only a saved job
    # received one.
    delivered = [e for e in ledger if e["outcome"] == "completed"]
    assert len(delivered) == (1 if state == "saved" else 0), ledger
    if state == "saved":
        assert final["image"] is not None
        assert metadata["images"][0]["bytes"] == final["image"]["bytes"]
    # No orphan blob: everything under the job's folder is accounted for by metadata.json.
    expected = {"metadata.json"}
    expected |= {f"progress-{a['attempt']}.json" for a in metadata["attempts"] if a["sent"]}
    expected |= {image["blob"].split("/", 1)[1] for image in metadata["images"]}
    expected |= {
        preview["blob"].split("/", 1)[1]
        for attempt in metadata["attempts"]
        for preview in attempt["previews"]
    }
    expected |= {
        kept["blob"].split("/", 1)[1]
        for attempt in metadata["attempts"]
        for kept in attempt["kept_images"]
    }
    assert {name.split("/", 1)[1] for name in api.blobs(final["id"])} == expected
    for attempt in metadata["attempts"][:-1]:
        assert attempt["decision"]["retry"] is True
        assert attempt["decision"]["reason"]
