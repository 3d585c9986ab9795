"""The repository's extract of OpenAI's image schemas is intact and is what the extractor writes.

Whether it still matches the full document is checked by hand when the document changes
(``python -m simulator_tests.openapi_extract --check PATH``): a clone has no full document.
"""

from __future__ import annotations

from simulator_tests.openapi_extract import (
    EXTRACT,
    EXTRACT_SHA256,
    ROOTS,
    SOURCE,
    extract,
    load_yaml,
    render,
    sha256_of,
)


def test_the_extract_holds_every_root_and_everything_they_refer_to():
    schemas = load_yaml(EXTRACT)
    assert set(ROOTS) <= set(schemas)
    assert extract(schemas) == schemas  # closed under $ref: nothing refers outside it


def test_the_extract_is_exactly_what_the_extractor_writes_and_names_its_source():
    text = EXTRACT.read_text(encoding="utf-8")
    assert text.startswith(f"# Extracted from {SOURCE}.\n")
    assert render(extract(load_yaml(EXTRACT))) == text, (
        "the extract was edited by hand: rewrite it with python -m simulator_tests.openapi_extract"
    )


def test_the_extract_has_the_recorded_checksum():
    assert sha256_of(EXTRACT) == EXTRACT_SHA256, (
        "the extract changed: if it was rewritten from the full document on purpose, record the "
        "SHA-256 the extractor printed as EXTRACT_SHA256 in simulator_tests/openapi_extract.py"
    )
