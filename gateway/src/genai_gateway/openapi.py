"""What the OpenAPI schema says beyond the pydantic models: inline request schemas for routes that parse their
own body, and the error responses every route can give."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


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


class ErrorBody(BaseModel):
    message: str = Field(description="What went wrong and what to fix.")
    type: str = Field(description="The OpenAI error type: invalid_request_error, not_found_error, ...")
    code: str | None = Field(description="A stable code for machines: invalid_argument, model_not_found, ...")
    param: str | None = Field(description="The request field at fault, when one is.")
    trace_id: str = Field(description="The trace of this request: give it to the operator.")


class ErrorEnvelope(BaseModel):
    """Every error of the gateway's own and OpenAI-shaped routes."""

    error: ErrorBody


class TgiError(BaseModel):
    """Errors of the TGI-compatible routes, in TGI's shape."""

    error: str
    error_type: str = Field(description="validation, overloaded, generation, ...")


# Every status an API route may answer besides its success, and why. 499 (the client left) is never seen.
API_ERRORS = {
    400: "The request is invalid: the message and `param` say what to fix.",
    401: "An API key is configured and the request did not send it (`Authorization: Bearer <key>`).",
    404: "A named resource (model, tokenizer, collection, document, operation) does not exist.",
    409: "The resource exists already, or changed meanwhile.",
    413: "The request body is larger than the gateway accepts.",
    429: "The service's queue is full: retry after `Retry-After` seconds.",
    500: "An internal error: report the trace id.",
    501: "This deployment does not offer the operation.",
    503: "A backend service is not deployed, still loading or down: retry after `Retry-After` seconds.",
    504: "The backend did not answer within the deadline.",
}
SSE = {"text/event-stream": {"schema": {"description": "server-sent events, each `data:` a JSON object"}}}


def stream_response(description: str) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=` for a 200 that is JSON, or server-sent events when the request asks to stream."""
    return {200: {"description": description, "content": SSE}}


def _refs(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Give every operation the error responses it can answer, with their bodies, in place of FastAPI's 422
    (the gateway answers validation errors with 400, the TGI routes with 422 in TGI's shape)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorBody, ErrorEnvelope, TgiError):
        components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for path, operations in schema.get("paths", {}).items():
        if path in ("/healthz", "/readyz"):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            tgi = "tgi" in operation.get("tags", ())
            responses.pop("422", None)
            for response in responses.values():  # an SSE body is events, not a JSON string
                if "text/event-stream" in response.get("content", {}):
                    response["content"]["text/event-stream"] = dict(SSE["text/event-stream"])
            for status, why in API_ERRORS.items():
                if tgi and status == 400:
                    status, why = 422, "The request is invalid (TGI answers validation errors with 422)."
                body = _refs("TgiError" if tgi and status != 413 else "ErrorEnvelope")
                responses.setdefault(str(status), {"description": why, "content": {"application/json": {"schema": body}}})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema
