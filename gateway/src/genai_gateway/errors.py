"""The one table from gRPC status to HTTP status, and the OpenAI-shaped error envelope.

    {"error": {"message": "...", "type": "invalid_request_error", "code": "invalid_argument",
               "param": "input[0]", "trace_id": "..."}}
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Mapping
from typing import TypeVar

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from genai_core.status import received_details
from genai_core.telemetry import current_trace_id
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

T = TypeVar("T")

# gRPC code -> (HTTP status, OpenAI error type). Follows google.rpc's HTTP mapping (AIP-193).
HTTP_FOR_GRPC: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "conflict_error"),
    grpc.StatusCode.ABORTED: (409, "conflict_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.CANCELLED: (499, "cancelled_error"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "not_implemented_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error"),
}
SERVER_ERROR = (500, "server_error")

# Headers HTTP asks for with some statuses: how to authenticate (RFC 9110 11.6.1, RFC 6750) and when to retry.
RETRY_AFTER_SECONDS = 1
_STATUS_HEADERS: dict[int, dict[str, str]] = {
    401: {"WWW-Authenticate": 'Bearer realm="genai"'},
    429: {"Retry-After": str(RETRY_AFTER_SECONDS)},
    503: {"Retry-After": str(RETRY_AFTER_SECONDS)},
}
# Codes of transport failures whose text comes from the gRPC library, not from one of our services: it may name
# internal addresses ("ipv4:127.0.0.1:50052: Failed to connect"), so the client gets a message naming the service.
_TRANSPORT_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "the {service} service is unavailable; retry shortly",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the {service} service did not answer within the deadline",
    grpc.StatusCode.UNKNOWN: "the call to the {service} service failed",
    grpc.StatusCode.INTERNAL: "the call to the {service} service failed",
}

_UNION_MEMBER = re.compile(r"^(str|int|float|bool|dict|list|constrained-[a-z]+|[a-z_-]+\[.*\])$")


class GatewayError(Exception):
    """An error the gateway itself decides (auth, missing backend, body too large)."""

    def __init__(self, status: int, message: str, type_: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    @property
    def headers(self) -> dict[str, str]:
        return status_headers(self.status)


def invalid_argument(param: str, message: str) -> GatewayError:
    """A 400 naming the request field ``param`` (OpenAI's ``invalid_request_error``)."""
    return GatewayError(400, f"{param}: {message}", "invalid_request_error", "invalid_argument", param)


def status_headers(status: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers a response of this status must carry (WWW-Authenticate, Retry-After), plus ``extra``."""
    return {**_STATUS_HEADERS.get(status, {}), **(extra or {})}


def envelope(
    status: int,
    message: str,
    type_: str,
    code: str | None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "code": code, "param": param, "trace_id": current_trace_id()}}
    return JSONResponse(body, status_code=status, headers=status_headers(status, headers))


def _rename(path: str, renames: Mapping[str, str]) -> str:
    """Map a proto field path ("texts[2]") to the HTTP field the client sent ("input[2]").

    ``renames`` maps regular expressions to replacements, tried in order; the first match wins.
    """
    for pattern, replacement in renames.items():
        renamed, count = re.subn(pattern, replacement, path, count=1)
        if count:
            return renamed
    return path


def translate(exc: grpc.aio.AioRpcError, renames: Mapping[str, str] | None = None, service: str | None = None
              ) -> GatewayError:
    """A failed gRPC call as the GatewayError the one table gives, with the HTTP field names.

    An error one of our services decided (it carries our ErrorInfo) keeps its message; a transport failure
    (nothing answered, a deadline) gets a message naming the backend ``service``, and its text goes to the log.
    """
    status, type_ = HTTP_FOR_GRPC.get(exc.code(), SERVER_ERROR)
    details = received_details(exc)
    violations = details.field_violations
    param = _rename(violations[0][0], renames or {}) if violations else None
    message = exc.details() or exc.code().name.lower()
    if renames and violations:
        message = message.replace(violations[0][0], param, 1)
    code = exc.code().name.lower()
    if not details.reason and exc.code() in _TRANSPORT_MESSAGES:
        message = _TRANSPORT_MESSAGES[exc.code()].format(service=service or "backend")
    if exc.code() == grpc.StatusCode.NOT_FOUND and details.resource_type == "model":
        code = "model_not_found"  # OpenAI's code: clients (LangChain) tell a missing model from a missing route by it
    if status >= 500:
        logger.warning("call to the %s service failed: %s %s", service or "backend", exc.code().name, exc.details())
    return GatewayError(status, message, type_, code, param)


async def call(awaitable: Awaitable[T], renames: Mapping[str, str] | None = None, service: str | None = None) -> T:
    """Await a gRPC call; turn its error into a GatewayError with the HTTP field names (see ``translate``).

    ``service`` names the backend for transport failures; calls made through ``Backends.stub`` know it.
    """
    try:
        return await awaitable
    except grpc.aio.AioRpcError as exc:
        raise translate(exc, renames, service or getattr(awaitable, "service", None)) from exc


def _client_loc(error: Mapping) -> list[str]:
    where = error.get("loc", ())
    # The first element says where the field is (body, query, path, header): the client knows.
    where = where[1:] if where[:1] in (("body",), ("query",), ("path",), ("header",), ("cookie",)) else where
    loc = [str(p) for p in where if not _UNION_MEMBER.match(str(p))]
    # A bad object key ({"logit_bias": {"abc": 1}}) is located at (..., "abc", "[key]"): the field is the object.
    return loc[:-2] if loc[-1:] == ["[key]"] else loc


def _most_specific(errors: list) -> Mapping:
    """The error to report. A value that fits no member of a union gets errors from every member; the member it
    came closest to matching broke a bound (``input[1]`` too short) rather than a type (``input`` is not a
    string), so a broken bound wins over a type mismatch, and a deeper location over a shallower one."""
    if not errors:
        return {"loc": (), "msg": "invalid request"}

    def mismatch(error: Mapping) -> bool:
        return str(error.get("type", "")).endswith(("_type", "_parsing"))

    return max(errors, key=lambda e: (not mismatch(e), len(_client_loc(e))))  # max keeps the first of equals


def _allowed(request: Request) -> list[str]:
    """Every method some route serves at this path: Starlette's Allow names only the first route that matched
    the path, and GET and POST of one path (/v1/tokenizers) are two routes here."""
    # Only the most specific templates count: /documents/delete (POST) is its own path, though
    # /documents/{document_id} (GET) matches it too.
    matching = [r for r in iter_route_contexts(request.app.routes)
                if getattr(r, "path_regex", None) is not None and r.path_regex.match(request.url.path)]
    fewest = min((r.path.count("{") for r in matching), default=0)
    return sorted({m for r in matching if r.path.count("{") == fewest for m in r.methods or ()})


# pydantic error types whose message says less than this (a field typed None is one the server does not support).
_MESSAGES = {
    "none_required": "not supported by this server; leave it out or send null",
    "json_invalid": "the body is not valid JSON",
}


def validation_error(exc: RequestValidationError) -> GatewayError:
    """A request that failed validation as a 400 naming the most specific field the client sent."""
    first = _most_specific(exc.errors())
    # Drop the location kind and pydantic's union-member names ("str", "list[int]") from the location.
    loc = [] if first.get("type") == "json_invalid" else _client_loc(first)
    msg = _MESSAGES.get(str(first.get("type")), str(first["msg"]))
    if not loc and first.get("type") == "model_attributes_type":
        msg = "send a JSON object body with 'Content-Type: application/json'"
    param = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc).lstrip(".") or None
    if first.get("loc", ())[-1:] == ("[key]",):
        msg = f"key {first['loc'][-2]!r}: {msg}"
    message = f"{param}: {msg}" if param else msg
    return GatewayError(400, message, "invalid_request_error", "invalid_argument", param)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the same envelope."""

    @app.exception_handler(GatewayError)
    async def _gateway(_: Request, exc: GatewayError) -> JSONResponse:
        return envelope(exc.status, exc.message, exc.type, exc.code, exc.param, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = validation_error(exc)
        return envelope(error.status, error.message, error.type, error.code, error.param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # 405 carries Starlette's Allow header. An unknown route has its own code, never an unknown model's.
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; the routes are listed at /docs"
        code = {404: "unknown_url", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = {**(exc.headers or {})}
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed(request))
        return envelope(exc.status_code, message, "invalid_request_error", code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled gateway error")
        trace_id = current_trace_id()
        return envelope(500, f"internal error; report trace id {trace_id} to the operator", "server_error", "internal")
