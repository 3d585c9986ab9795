"""The repository's extract of OpenAI's image schemas is still what the full document says."""

from __future__ import annotations

from loopserver.testing import missing_service
from simulator_tests.openapi_extract import (
    EXTRACT,
    ROOTS,
    extract,
    full_document_path,
    load_yaml,
    render,
)


def test_the_extract_holds_every_root_and_everything_they_refer_to():
    schemas = load_yaml(EXTRACT)
    assert set(ROOTS) <= set(schemas)
    assert extract(schemas) == schemas  # closed under $ref: nothing refers outside it


def test_the_extract_is_identical_to_the_full_document():
    full = full_document_path()
    if not full.is_file():
        missing_service(
            f"the OpenAI OpenAPI document at {full}",
            "set SIM_OPENAPI_PATH to openai/openai-openapi's openapi.yaml (commit f85dbe2)",
        )
    expected = render(extract(load_yaml(full)["components"]["schemas"]))
    assert EXTRACT.read_text(encoding="utf-8") == expected, (
        "the extract differs from the document: run python -m simulator_tests.openapi_extract"
    )
