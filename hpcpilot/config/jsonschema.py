"""The settings as a JSON Schema (``hpcpilot config schema``), for editors that check site files.

Built from the same field rules the loader applies (`hpcpilot.config.loader.settings_rules`): a
``Literal`` field becomes an ``enum``, ``Bounds`` become ``minimum``/``maximum``, a ``tuple[str, ...]``
field an array of strings (or the comma-separated string the loader also takes), and each key's
description is its entry in the section class's numpy-style ``Attributes`` docstring.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from hpcpilot.config.loader import FieldRule, settings_rules
from hpcpilot.config.schema import Settings

__all__ = ["SCHEMA_ID", "attribute_docs", "settings_json_schema"]

SCHEMA_ID = "https://hpcpilot.readthedocs.io/schemas/settings.schema.json"
"""The ``$id`` of the schema."""

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def attribute_docs(cls: type) -> dict[str, str]:
    """The ``Attributes`` section of a numpy-style class docstring: name -> one-paragraph text.

    Parameters
    ----------
    cls
        A class whose docstring has an ``Attributes`` section (``name`` lines, indented text below).

    Returns
    -------
    dict[str, str]
        Each attribute's text with its lines joined by spaces (empty when the section is absent).
    """
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    docs: dict[str, str] = {}
    try:
        start = lines.index("Attributes") + 2
    except ValueError:
        return docs
    names: list[str] = []
    for line in lines[start:]:
        if line and not line.startswith(" "):
            if set(line) == {"-"}:  # the next section's underline: the name before it was its title
                docs.pop(names.pop(), None)
                break
            names = [name.strip() for name in line.split(",")]
            docs.update({name: "" for name in names})
        elif line.strip() and names:
            for name in names:
                docs[name] = f"{docs[name]} {line.strip()}".strip()
    return docs


def _property(rule: FieldRule, default: object, description: str) -> dict[str, Any]:
    prop: dict[str, Any]
    if rule.kind is tuple:
        prop = {
            "anyOf": [
                {"type": "array", "items": {"type": "string", "minLength": 1, "pattern": "^[^,]*$"}},
                {"type": "string", "description": "comma-separated"},
            ],
            "default": list(default) if isinstance(default, tuple) else default,
        }
    else:
        prop = {"type": _JSON_TYPES[rule.kind], "default": default}
    if rule.choices:
        prop["enum"] = list(rule.choices)
    if rule.kind in (int, float):
        prop["minimum"] = rule.bounds.minimum
        if rule.bounds.maximum is not None:
            prop["maximum"] = rule.bounds.maximum
    if description:
        prop["description"] = description
    return prop


def settings_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a settings file: sections of keys, no unknown names.

    Returns
    -------
    dict[str, Any]
        The schema document, ready for ``json.dumps``.
    """
    defaults = Settings()
    sections: dict[str, Any] = {}
    for section, (cls, rules) in settings_rules().items():
        docs = attribute_docs(cls)
        default = getattr(defaults, section)
        sections[section] = {
            "type": "object",
            "description": inspect.cleandoc(cls.__doc__ or "").split("\n\n", 1)[0],
            "additionalProperties": False,
            "properties": {
                key: _property(rule, getattr(default, key), docs.get(key, "")) for key, rule in rules.items()
            },
        }
    assert [f.name for f in dataclasses.fields(Settings)] == list(sections)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "hpcpilot settings (a site file or the user file)",
        "type": "object",
        "additionalProperties": False,
        "properties": sections,
    }
