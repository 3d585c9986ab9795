"""docs/monitoring.md's queries and the workbook against the job event the code emits.

Every ``customDimensions`` field a query names must be one the app sends: a field of the
``image_job_finished`` event as activities/finish.py builds it (``imagejob_<field>`` for each key
of ``log_fields``, and ``imagejob_event``), or an attribute telemetry.py puts on a route call.
The workbook (infra/workbook.json, deployed by infra/app/api.bicep) holds exactly the doc's
queries, under the same titles, so the two cannot drift.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from activities.finish import EVENT, build_metadata, log_fields
from rules.job_records import FinishInput, JobState, Outcome
from rules.request import ImageJobRequest
from rules.settings import AppSettings
from telemetry import DEPENDENCY_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "monitoring.md"
WORKBOOK = ROOT / "infra" / "workbook.json"
TOPICS = (
    "Slow clock by route and shape",
    "Timeout layer counts",
    "429s per route",
    "Duplicate generations",
    "Cost per day",
    "Failure reasons",
)
# The Application Insights tables the queries may read: the app's event and its route calls.
TABLES = {"traces", "dependencies"}
DIMENSION = re.compile(r"customDimensions(?:\.(\w+)|\[\s*[\"']([^\"']+)[\"']\s*\])")


def event_fields() -> set[str]:
    """The custom dimensions of the event the code emits for a finished job."""
    env = {
        "IMAGE_ROUTES": "azure",
        "IMAGE_ROUTE_AZURE_BASE_URL": "https://res.openai.azure.com",
        "IMAGE_ROUTE_AZURE_DEPLOYMENT": "gpt-image-2",
        "IMAGES_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net",
        "IMAGE_JOB_ID_SECRET": "test-only-secret-0123456789",
    }
    request = ImageJobRequest(
        prompt="a red apple",
        size="1024x1024",
        quality="low",
        output_format="png",
        background="auto",
        moderation="auto",
        n=1,
        partial_images=1,
        route="azure",
    )
    outcome = Outcome(state=JobState.SAVED, attempt=1, metadata_blob="job/metadata.json")
    metadata = build_metadata(
        FinishInput("job", request, outcome, ()), AppSettings.from_env(env), datetime.now(UTC)
    )
    return {"imagejob_event"} | {f"imagejob_{name}" for name in log_fields(metadata)}


def doc_queries() -> dict[str, str]:
    section = DOC.read_text("utf-8").split("## The queries", 1)[1]
    found = re.findall(r"^### (.+?)\n.*?```kusto\n(.*?)```", section, flags=re.S | re.M)
    return {title: query.rstrip("\n") for title, query in found}


def workbook_queries() -> dict[str, str]:
    workbook = json.loads(WORKBOOK.read_text("utf-8"))
    return {
        item["content"]["title"]: item["content"]["query"]
        for item in workbook["items"]
        if item["type"] == 3
    }


def test_the_doc_answers_every_question():
    assert set(TOPICS) <= set(doc_queries())


def test_the_workbook_holds_exactly_the_doc_queries():
    assert workbook_queries() == doc_queries()
    workbook = json.loads(WORKBOOK.read_text("utf-8"))
    assert workbook["version"] == "Notebook/1.0"
    api = (ROOT / "infra" / "app" / "api.bicep").read_text("utf-8")
    assert "loadTextContent('../workbook.json')" in api


@pytest.mark.parametrize("title", sorted(doc_queries()))
def test_a_query_names_only_fields_the_app_sends(title: str):
    query = doc_queries()[title]
    allowed = event_fields() | set(DEPENDENCY_ATTRIBUTES)
    named = {a or b for a, b in DIMENSION.findall(query)}
    assert named, "a query here reads the job event or a route call"
    assert sorted(named - allowed) == []
    tables = set(re.findall(r"^\s*(\w+)\s*$", query, flags=re.M)) | set(
        re.findall(r"^\s*\(?\s*(\w+)\s*$", query, flags=re.M)
    )
    assert tables <= TABLES | {""}, tables
    if query.lstrip().startswith("traces"):
        assert f'customDimensions.imagejob_event == "{EVENT}"' in query


def test_the_field_check_catches_a_field_the_event_does_not_have():
    allowed = event_fields()
    assert {"imagejob_route", "imagejob_final_image_ms"} <= allowed
    assert "imagejob_prompt" not in allowed
    query = 'traces | extend p = tostring(customDimensions["imagejob_prompt"])'
    assert {a or b for a, b in DIMENSION.findall(query)} - allowed == {"imagejob_prompt"}
