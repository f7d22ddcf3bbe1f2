"""The JSON Schema subset analysis plans use, and a checker for values against it.

Supported keywords: ``type`` (object, array, string, number, integer, boolean, null, or a list of
them), ``properties``, ``required``, ``items``, ``enum``, ``description``, ``title``. This is the
subset OpenAI-compatible servers accept for tool parameters; anything else is refused when the plan
is saved, so a plan never promises a check it does not make.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_schema", "check_value"]

TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
    "null": type(None),
}
KEYWORDS = {"type", "properties", "required", "items", "enum", "description", "title"}
MAX_DEPTH = 8


def check_schema(schema: Any, *, path: str = "schema", depth: int = 0) -> list[str]:
    """Problems with ``schema`` (empty when it is a usable plan schema)."""
    if depth > MAX_DEPTH:
        return [f"{path}: nested too deeply"]
    if not isinstance(schema, dict):
        return [f"{path}: must be a JSON object"]
    problems = [f"{path}: unsupported keyword {k!r}" for k in sorted(set(schema) - KEYWORDS)]
    types = schema.get("type")
    names = types if isinstance(types, list) else [types]
    if types is None or not all(isinstance(t, str) and t in TYPES for t in names):
        problems.append(f"{path}.type: must be one of {sorted(TYPES)} (or a list of them)")
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        problems.append(f"{path}.properties: must be an object")
    else:
        for name, sub in props.items():
            problems += check_schema(sub, path=f"{path}.properties.{name}", depth=depth + 1)
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        problems.append(f"{path}.required: must be a list of property names")
    if "items" in schema:
        problems += check_schema(schema["items"], path=f"{path}.items", depth=depth + 1)
    if "enum" in schema and not isinstance(schema["enum"], list):
        problems.append(f"{path}.enum: must be a list")
    return problems


def _is(value: Any, type_name: str) -> bool:
    if isinstance(value, bool) and type_name in ("number", "integer"):
        return False
    return isinstance(value, TYPES[type_name])


def check_value(value: Any, schema: dict[str, Any], *, path: str = "data") -> list[str]:
    """Where ``value`` does not fit ``schema`` (a schema :func:`check_schema` accepted)."""
    types = schema.get("type")
    names = types if isinstance(types, list) else [types] if types else []
    if names and not any(_is(value, t) for t in names):
        return [f"{path}: expected {' or '.join(names)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    problems: list[str] = []
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{path}.{name}: missing")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += check_value(value[name], sub, path=f"{path}.{name}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += check_value(item, schema["items"], path=f"{path}[{i}]")
    return problems
