"""``hpcpilot status --json`` and ``hpcpilot report --json``: the typed views as JSON, and their schemas.

The documents are the views of `hpcpilot.monitor.statusview` field by field (dicts only here, at the
wire), with two keys in front: ``schema`` (``hpcpilot.status/1``, ``hpcpilot.report/1``: the name and
major version of the layout; a key added keeps the version, a key removed or changed in meaning
bumps it) and ``hpcpilot_version``. Their JSON Schemas (draft 2020-12) are generated from the same
dataclasses and their docstrings, so they cannot drift: ``docs/schemas/*.schema.json`` hold them, and
``--json-schema`` prints them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from typing import Any

from hpcpilot import __version__
from hpcpilot.monitor.statusview import REPORT_SCHEMA, STATUS_SCHEMA, Report, Status

#: JSON Schema's dialect of the published schemas.
DIALECT = "https://json-schema.org/draft/2020-12/schema"

_SCALARS: dict[Any, str] = {int: "integer", float: "number", str: "string", bool: "boolean"}


def status_document(status: Status) -> dict[str, Any]:
    """The JSON document of ``hpcpilot status --json``."""
    return {"schema": STATUS_SCHEMA, "hpcpilot_version": __version__, **dataclasses.asdict(status)}


def report_document(report: Report) -> dict[str, Any]:
    """The JSON document of ``hpcpilot report --json``."""
    return {"schema": REPORT_SCHEMA, "hpcpilot_version": __version__, **dataclasses.asdict(report)}


def dumps(document: dict[str, Any]) -> str:
    """A document as JSON text (strict: no NaN or infinities), with a final newline."""
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


# --- schemas ----------------------------------------------------------------------------------


def attribute_docs(cls: type) -> dict[str, str]:
    """The description of each attribute in a numpy-style ``Attributes`` section of ``cls``'s docstring.

    A heading line may name several attributes (``rank, host``): each gets the description.
    """
    doc = cls.__doc__ or ""
    match = re.search(r"Attributes\n\s*-+\n(.*)", doc, re.S)
    if not match:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    text: list[str] = []

    def close() -> None:
        words = " ".join(" ".join(text).split()).replace("``", "`")
        for name in names:
            out[name] = re.sub(r"\bNone\b", "null", words)

    for line in match.group(1).splitlines():
        if not line.strip():
            continue
        if line.startswith("    ") and not line.startswith("        "):  # a heading: the names
            close()
            names, text = [n.strip() for n in line.split(",")], []
        else:
            text.append(line.strip())
    close()
    return out


def _type_schema(hint: Any) -> dict[str, Any]:
    """The schema of one annotated type (scalars, ``X | None``, ``tuple[X, ...]``, dataclasses)."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"unsupported union {hint!r}")
        inner = _type_schema(options[0])
        if "type" in inner and isinstance(inner["type"], str):
            return {**inner, "type": [inner["type"], "null"]}
        return {"anyOf": [inner, {"type": "null"}]}
    if origin is tuple:
        item, rest = typing.get_args(hint)
        if rest is not Ellipsis:
            raise TypeError(f"unsupported tuple {hint!r}")
        return {"type": "array", "items": _type_schema(item)}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return object_schema(hint)
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    raise TypeError(f"no JSON type for {hint!r}")


def object_schema(cls: type) -> dict[str, Any]:
    """The schema of a dataclass: every field required, no others, described from the docstring.

    A field's ``metadata["enum"]`` lists its allowed values.
    """
    hints = typing.get_type_hints(cls)
    docs = attribute_docs(cls)
    properties: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name])
        if "enum" in f.metadata:
            prop["enum"] = list(f.metadata["enum"])
        if f.name in docs:
            prop = {"description": docs[f.name], **prop}
        properties[f.name] = prop
    first = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "`") if cls.__doc__ else ""
    return {
        "description": first,
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def document_schema(cls: type[Status] | type[Report], schema_id: str, title: str) -> dict[str, Any]:
    """The JSON Schema of a whole document: the view's object with ``schema`` and ``hpcpilot_version``."""
    body = object_schema(cls)
    properties = {
        "schema": {"description": "The layout's name and major version.", "const": schema_id},
        "hpcpilot_version": {"description": "The hpcpilot that wrote it.", "type": "string"},
        **body["properties"],
    }
    return {
        "$schema": DIALECT,
        "title": title,
        "description": body["description"],
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def status_schema() -> dict[str, Any]:
    """The JSON Schema of ``hpcpilot status --json`` (``docs/schemas/status.schema.json``)."""
    return document_schema(Status, STATUS_SCHEMA, f"{STATUS_SCHEMA}: hpcpilot status --json")


def report_schema() -> dict[str, Any]:
    """The JSON Schema of ``hpcpilot report --json`` (``docs/schemas/report.schema.json``)."""
    return document_schema(Report, REPORT_SCHEMA, f"{REPORT_SCHEMA}: hpcpilot report --json")
