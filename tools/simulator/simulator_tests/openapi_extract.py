"""The image schemas of OpenAI's OpenAPI document, extracted into the repository.

The wire-shape tests check the simulator's bodies against OpenAI's own schemas, and must run in
any clone, where the full document (openai/openai-openapi, several MB) is not present. So the
schemas they use, and every schema those ``$ref``, are kept in
``simulator_tests/data/openai-images-schemas.yaml`` (MIT, licence beside it). When the full
document is available (``SIM_OPENAPI_PATH``, or shared/reference beside the clone as in CI),
``test_openapi_extract`` checks the extract is still exactly what this module would write.

    python -m simulator_tests.openapi_extract [path/to/openapi.yaml]   # in tools/simulator: rewrite
"""

from __future__ import annotations

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
)
_PREFIX = "#/components/schemas/"
_DEFAULT_FULL = Path(__file__).resolve().parents[4] / "shared/reference/openai-openapi/openapi.yaml"


def full_document_path() -> Path:
    """Where the full document is looked for: ``SIM_OPENAPI_PATH``, else beside the clone."""
    return Path(os.environ.get("SIM_OPENAPI_PATH", str(_DEFAULT_FULL)))


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
    full = Path(argv[0]) if argv else full_document_path()
    schemas = extract(load_yaml(full)["components"]["schemas"])
    EXTRACT.write_text(render(schemas), encoding="utf-8")
    print(f"wrote {len(schemas)} schemas to {EXTRACT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
