"""JSON Schema checks of tool parameters (Draft 2020-12, the `jsonschema` library).

A tool's `parameters` is checked as a schema once, when the tool box is loaded; each
call's arguments are checked against it before anything runs, so a command never sees
arguments its schema refuses. `jsonschema` is imported here only, when a tool box is
built, so `run --help` and loading the settings do not pay for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pivoicectl.realtime.tools.outcome import one_line

EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
"""The parameters of a tool that takes none."""


def schema_problem(schema: Mapping[str, Any]) -> str:
    """Why `schema` is not a valid Draft 2020-12 schema ("" when it is)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        return one_line(f"{exc.message}" + (f" (at {where})" if where else ""), 200)
    return ""


class ArgumentCheck:
    """The arguments a tool accepts, compiled once from its (already checked) schema."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        from jsonschema import Draft202012Validator

        self._validator = Draft202012Validator(schema)

    def problem(self, arguments: Mapping[str, Any]) -> str:
        """Why `arguments` do not fit the schema ("" when they do): the most relevant
        error, with where it is."""
        from jsonschema.exceptions import best_match
        from referencing.exceptions import Unresolvable

        try:
            error = best_match(self._validator.iter_errors(arguments))
        except Unresolvable as exc:  # a $ref the schema check cannot see is broken
            return f"the tool's parameters schema has a $ref that cannot be resolved: {exc}"
        if error is None:
            return ""
        where = "/".join(str(p) for p in error.absolute_path)
        return one_line(f"{where + ': ' if where else ''}{error.message}", 300)
