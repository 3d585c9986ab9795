"""The image, file and batch schemas of OpenAI's OpenAPI document, extracted into the repository.

The wire-shape tests check the simulator's bodies against OpenAI's own schemas, and must run in
any clone, where the full document (openai/openai-openapi, several MB) is not present. So the
schemas they use, and every schema those ``$ref``, are kept in
``simulator_tests/data/openai-images-schemas.yaml`` (MIT, licence beside it), with its SHA-256
recorded below. ``test_openapi_extract`` needs nothing outside the clone: it checks the extract is
closed under ``$ref``, is exactly what this module writes, and has the recorded checksum.

Comparing the extract with the full document is maintenance, not a test: it is only meaningful
when someone re-extracts from a newer document, and a plain clone (or CI) has no document to
compare with. In tools/simulator, give the document as an argument or in ``SIM_OPENAPI_PATH``:

    python -m simulator_tests.openapi_extract --check path/to/openapi.yaml   # still identical?
    python -m simulator_tests.openapi_extract path/to/openapi.yaml           # rewrite the extract

After a rewrite, record the SHA-256 it prints as ``EXTRACT_SHA256``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

DATA = Path(__file__).resolve().parent / "data"
EXTRACT = DATA / "openai-images-schemas.yaml"
SOURCE = "openai/openai-openapi, commit f85dbe2 (2026-08-21), openapi.yaml components.schemas"
HEADER = f"""\
# Extracted from {SOURCE}.
# Copyright (c) OpenAI, MIT licence: see LICENSE-openai-openapi beside this file.
# Written by `python -m simulator_tests.openapi_extract`; do not edit by hand.
"""
# The schemas the wire-shape tests name; what they ``$ref`` comes along.
ROOTS = (
    "CreateImageRequest",
    "CreateImageEditRequest",
    "ImagesResponse",
    "ImageGenStreamEvent",
    "ImageGenPartialImageEvent",
    "ImageGenCompletedEvent",
    "ImageEditStreamEvent",
    "ImageEditPartialImageEvent",
    "ImageEditCompletedEvent",
    "Error",
    "ErrorResponse",
    "OpenAIFile",
    "DeleteFileResponse",
    "ListFilesResponse",
    "Batch",
    "ListBatchesResponse",
)
_PREFIX = "#/components/schemas/"
# SHA-256 of the committed extract, as the last rewrite printed it.
EXTRACT_SHA256 = "085f575c01ac8a0b562941884f07d15a9b8e4dffc5a1322d66492012dfef5655"
USAGE = "usage: python -m simulator_tests.openapi_extract [--check] [path/to/openapi.yaml]"


def full_document_path() -> Path | None:
    """The full document named by ``SIM_OPENAPI_PATH``; None when it is not set."""
    value = os.environ.get("SIM_OPENAPI_PATH", "")
    return Path(value) if value else None


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def extract(all_schemas: dict[str, Any]) -> dict[str, Any]:
    """``ROOTS`` and every schema they reach through ``$ref``, sorted by name."""
    found: set[str] = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for ref in _refs(all_schemas[name]):
            if not ref.startswith(_PREFIX):
                raise ValueError(f"schema {name} refers outside components.schemas: {ref}")
            todo.append(ref.removeprefix(_PREFIX))
    return {name: all_schemas[name] for name in sorted(found)}


def load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=yaml.CSafeLoader)


def render(schemas: dict[str, Any]) -> str:
    """The extract file's text: the header, then the schemas as YAML."""
    body: str = yaml.safe_dump(schemas, sort_keys=False, allow_unicode=True, width=100)
    return HEADER + body


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [arg for arg in argv if arg != "--check"]
    full = Path(paths[0]) if len(paths) == 1 else full_document_path()
    if len(paths) > 1 or full is None:
        print(USAGE, file=sys.stderr)
        return 2
    schemas = extract(load_yaml(full)["components"]["schemas"])
    text = render(schemas)
    if check:
        if EXTRACT.read_text(encoding="utf-8") != text:
            print(f"{EXTRACT} differs from {full}: rewrite it without --check", file=sys.stderr)
            return 1
        print(f"{EXTRACT} is identical to what {full} gives ({len(schemas)} schemas)")
        return 0
    EXTRACT.write_text(text, encoding="utf-8")
    print(f"wrote {len(schemas)} schemas to {EXTRACT}; SHA-256 {sha256_of(EXTRACT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
