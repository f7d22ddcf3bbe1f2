"""The vendors' own OpenAPI documents (copied from the seeds) as validators for our answers."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import httpx
import yaml
from jsonschema import Draft202012Validator

HERE = Path(__file__).parent / "openapi"


@cache
def document(vendor: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((HERE / f"{vendor}.yaml").read_text())
    return doc


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node and set(node) == {"$ref"}:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def assert_schema(vendor: str, schema: dict[str, Any], instance: Any) -> None:
    """``instance`` is valid against ``schema``, whose ``$ref``s point into the vendor's document."""
    root = {**document(vendor), **schema}
    Draft202012Validator(root).validate(instance)


def assert_component(vendor: str, name: str, instance: Any) -> None:
    assert_schema(vendor, {"$ref": f"#/components/schemas/{name}"}, instance)


def assert_seed_response(vendor: str, path: str, method: str, response: httpx.Response) -> Any:
    """The status is one the vendor documents for ``method path``, the JSON body matches that response's
    schema, and the documented headers are present. Returns the body."""
    doc = document(vendor)
    responses = doc["paths"][path][method.lower()]["responses"]
    code = str(response.status_code)
    assert code in responses, f"{vendor} does not document {response.status_code} for {path}: {response.text}"
    spec = _resolve(doc, responses[code])
    body = response.json()
    schema = spec["content"]["application/json"]["schema"]
    assert_schema(vendor, schema, body)
    for header in spec.get("headers", {}):
        assert header in response.headers, f"{header} missing on {response.status_code}"
    return body
