"""Checking documents against the published JSON Schemas, with jsonschema (a dev dependency)."""

from __future__ import annotations

from typing import Any

import jsonschema


def problems(value: Any, schema: dict[str, Any]) -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty: it conforms), each with the path it is at.

    The schema itself is checked first (draft 2020-12): a broken schema fails, it does not pass all.
    """
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    return [f"${error.json_path[1:]}: {error.message}" for error in validator.iter_errors(value)]
