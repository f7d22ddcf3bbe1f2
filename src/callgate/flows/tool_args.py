"""Tool arguments against their JSON Schema: the schema checked when an agent is saved, the model's
arguments checked before a tool runs (a mismatch is a tool error the model can correct)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

__all__ = ["argument_error", "schema_error"]


def schema_error(parameters: dict[str, Any]) -> str | None:
    """Why ``parameters`` is not a usable JSON Schema for tool arguments, or None."""
    try:
        Draft202012Validator.check_schema(parameters)
    except SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message}"
    if parameters and parameters.get("type", "object") != "object":
        return 'tool arguments are an object: the schema\'s "type" must be "object"'
    return None


def argument_error(parameters: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    """Why ``arguments`` do not match ``parameters``, in one sentence, or None."""
    if not parameters:
        return None
    error = best_match(Draft202012Validator(parameters).iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"the arguments do not match the tool's schema{f' at {where}' if where else ''}: {error.message}"
