"""What the OpenAPI schema says beyond the pydantic models: inline request schemas for routes that parse their
own body, and the error responses every route can give."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON Schema with its ``$defs`` substituted in place: a schema placed by hand into an
    operation (``openapi_extra``) cannot point at ``#/$defs/...``, which would resolve against the whole
    OpenAPI document."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def expand(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return expand(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: expand(v) for k, v in node.items()}
        if isinstance(node, list):
            return [expand(v) for v in node]
        return node

    return expand(schema)
