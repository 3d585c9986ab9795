"""Check simulator bodies against OpenAI's published OpenAPI schemas, not a copy of our own.

The schemas come from the extract of openai/openai-openapi kept in the repository
(``simulator_tests/data/openai-images-schemas.yaml``, see ``openapi_extract``), so the checks run
in any clone. ``violations(instance, "ImagesResponse")`` walks the schema's ``$ref``, ``anyOf``,
``type``, ``nullable``, ``required``, ``properties``, ``items`` and ``enum`` and returns what does
not fit (an empty list when everything does). That subset is all the image schemas use.

``ignore_enum_at``: paths whose ``enum`` is not checked, because the document's enums lag the model:
``size`` lists only 1024x1024, 1024x1536 and 1536x1024, while the same document's request
description says gpt-image-2 accepts arbitrary sizes such as 1536x864.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

from simulator_tests.openapi_extract import EXTRACT, load_yaml


@functools.cache
def schemas() -> dict[str, Any]:
    """The extracted ``components.schemas``, parsed once per test session."""
    found: dict[str, Any] = load_yaml(EXTRACT)
    return found


def _resolve(schema: dict[str, Any], all_schemas: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = all_schemas[name]
    return schema


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def _type_ok(instance: object, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(instance, bool):
        return False
    return isinstance(instance, _TYPES[kind])


def _walk(
    instance: object,
    schema: dict[str, Any],
    all_schemas: dict[str, Any],
    path: str,
    ignore_enum_at: Collection[str],
) -> list[str]:
    schema = _resolve(schema, all_schemas)
    if instance is None and schema.get("nullable"):
        return []
    if "anyOf" in schema:
        branches = [
            _walk(instance, option, all_schemas, path, ignore_enum_at) for option in schema["anyOf"]
        ]
        if any(not problems for problems in branches):
            return []
        return [f"{path}: fits none of anyOf ({'; '.join(p[0] for p in branches if p)})"]
    problems: list[str] = []
    kind = schema.get("type")
    if isinstance(kind, str) and not _type_ok(instance, kind):
        return [f"{path}: expected {kind}, got {type(instance).__name__}"]
    if "enum" in schema and path not in ignore_enum_at and instance not in schema["enum"]:
        problems.append(f"{path}: {instance!r} is not one of {schema['enum']}")
    if isinstance(instance, dict):
        for name in schema.get("required", []):
            if name not in instance:
                problems.append(f"{path}: required field {name!r} is missing")
        for name, sub in schema.get("properties", {}).items():
            if name in instance:
                problems += _walk(
                    instance[name], sub, all_schemas, f"{path}.{name}", ignore_enum_at
                )
    if isinstance(instance, list) and "items" in schema:
        for index, item in enumerate(instance):
            problems += _walk(
                item, schema["items"], all_schemas, f"{path}[{index}]", ignore_enum_at
            )
    return problems


def violations(
    instance: object, schema_name: str, *, ignore_enum_at: Collection[str] = ()
) -> list[str]:
    """What in ``instance`` does not fit ``components.schemas[schema_name]`` ([] if all fits)."""
    all_schemas = schemas()
    return _walk(instance, all_schemas[schema_name], all_schemas, "$", ignore_enum_at)
