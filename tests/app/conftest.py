"""Every answer an HTTP handler gives in these tests is held against the OpenAPI document
(tests/app/openapi_answers.py): a test whose answer the document does not list fails at its
teardown, naming the answer and what is not listed.

With OPENAPI_ANSWERS_FILE set, the session writes every answer it saw there (JSON): the test
that every documented field is answered (test_openapi.py) runs these tests so and reads it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .openapi_answers import Answer, Recorder, document, problems

ANSWERS_FILE = "OPENAPI_ANSWERS_FILE"
_SESSION: list[Answer] = []


@pytest.fixture(autouse=True)
def answers_held_against_the_document(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    recorder = Recorder()
    recorder.install(monkeypatch)
    yield recorder
    _SESSION.extend(recorder.answers)
    doc = document()
    found = [problem for answer in recorder.answers for problem in problems(doc, answer)]
    if found:
        pytest.fail("answers the OpenAPI document does not list:\n" + "\n".join(found[:20]))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get(ANSWERS_FILE)
    if target:
        Path(target).write_text(json.dumps([answer.to_json() for answer in _SESSION]))
