"""A small JSON Schema checker for the tests: the subset the published schemas use.

jsonschema is no dependency of hpcpilot; the schemas of ``docs/schemas/`` use only ``type`` (one or a
list), ``const``, ``enum``, ``properties``, ``required``, ``additionalProperties: false``, ``items``
and ``anyOf``. Anything else in a schema is an error here, so a schema cannot outgrow the check.
"""

from __future__ import annotations

from typing import Any

_KNOWN = {
    "$schema",
    "title",
    "description",
    "type",
    "const",
    "enum",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
}

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def problems(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty: it conforms)."""
    unknown = set(schema) - _KNOWN
    if unknown:
        return [f"{where}: the schema uses {sorted(unknown)}, which this checker does not know"]
    out: list[str] = []
    if "anyOf" in schema:
        if all(problems(value, option, where) for option in schema["anyOf"]):
            out.append(f"{where}: {value!r} matches none of anyOf")
        return out
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, k) for k in kinds):
            return [f"{where}: {value!r} is not of type {kinds}"]
    if "const" in schema and value != schema["const"]:
        out.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        out += [f"{where}: {name!r} is missing" for name in schema.get("required", ()) if name not in value]
        if schema.get("additionalProperties") is False:
            out += [f"{where}: {name!r} is not in the schema" for name in value if name not in props]
        for name, sub in props.items():
            if name in value:
                out += problems(value[name], sub, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += problems(item, schema["items"], f"{where}[{i}]")
    return out
