"""The building blocks of the OpenAPI document's schemas (http_api.openapi): closed objects,
nullable fields, typed leaves with their descriptions. The underscore names are this package's
own, shared by its modules."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    """``schema`` or null. A plain typed schema gets null among its types; anything else (a
    reference, an enum) becomes ``anyOf`` with null."""
    if "type" in schema and "enum" not in schema and "const" not in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return {**schema, "type": [*types, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _not_null(schema: Schema) -> Schema:
    """What ``_nullable`` made of ``schema``, back."""
    if "anyOf" in schema:
        return dict(schema["anyOf"][0])
    if isinstance(schema.get("type"), list):
        return {**schema, "type": schema["type"][0]}
    return schema


def _object(
    required: dict[str, Schema],
    optional: dict[str, Schema] | None = None,
    *,
    description: str | None = None,
) -> Schema:
    """A closed object: the answer has every ``required`` field, may have the ``optional``
    ones, and has no other."""
    schema: Schema = {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def _described(schema: Schema, description: str) -> Schema:
    return {**schema, "description": description} if description else schema


def _text(description: str = "", **extra: Any) -> Schema:
    return _described({"type": "string", **extra}, description)


def _integer(description: str = "", **extra: Any) -> Schema:
    return _described({"type": "integer", **extra}, description)


def _number(description: str = "", **extra: Any) -> Schema:
    return _described({"type": "number", **extra}, description)


def _moment(description: str = "") -> Schema:
    return _described({"type": "string", "format": "date-time"}, description)


def _url(description: str = "") -> Schema:
    return _described({"type": "string", "format": "uri"}, description)


def _enum(values: Any, description: str = "") -> Schema:
    return _described({"type": "string", "enum": [str(v) for v in values]}, description)


def _counts_by(keys: Any, description: str) -> Schema:
    return {
        "type": "object",
        "propertyNames": {"enum": [str(k) for k in keys]},
        "additionalProperties": {"type": "integer", "minimum": 0},
        "description": description,
    }


# --- the request ---------------------------------------------------------------------------
