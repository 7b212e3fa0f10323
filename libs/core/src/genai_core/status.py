"""The one mapping from the error taxonomy to gRPC status, with google.rpc details."""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry import trace

from genai_core.errors import ErrorCode, GenAIError

logger = logging.getLogger(__name__)

ERROR_DOMAIN = "genai.platform"

GRPC_CODES: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.ABORTED: grpc.StatusCode.ABORTED,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.CANCELLED: grpc.StatusCode.CANCELLED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
}


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: GenAIError) -> grpc.Status:
    """Build a rich ``grpc.Status``: ErrorInfo always, BadRequest and ResourceInfo when known."""
    code = GRPC_CODES[error.code]
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason or error.code.value, domain=ERROR_DOMAIN
            )
        )
    ]
    if error.field_violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.field_violations
                    ]
                )
            )
        )
    if error.resource_type or error.resource_name:
        details.append(
            _pack(
                error_details_pb2.ResourceInfo(
                    resource_type=error.resource_type,
                    resource_name=error.resource_name,
                    description=error.message,
                )
            )
        )
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=error.message, details=details
    )
    return rpc_status.to_status(status)


def internal_status() -> grpc.Status:
    """A generic INTERNAL status that names the trace id, never the exception."""
    ctx = trace.get_current_span().get_span_context()
    trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else "unknown"
    status = status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error; report trace id {trace_id} to the operator",
    )
    return rpc_status.to_status(status)


@dataclass(frozen=True)
class ReceivedDetails:
    """The google.rpc details of a received error. ``reason`` is empty when no ErrorInfo of this platform came
    with it: then the error was not decided by one of our services but by the transport (a refused
    connection, a deadline), and its text may name internal addresses."""

    field_violations: list[tuple[str, str]]
    reason: str = ""
    resource_type: str = ""
    resource_name: str = ""


def received_details(error: grpc.aio.AioRpcError | grpc.RpcError) -> ReceivedDetails:
    """Read the ErrorInfo, BadRequest and ResourceInfo details of a received error."""
    try:
        status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    except ValueError:  # details whose code contradicts the call's: not ours, so none
        status = None
    violations: list[tuple[str, str]] = []
    reason = resource_type = resource_name = ""
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == ERROR_DOMAIN:
                reason = info.reason
        elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            resource = error_details_pb2.ResourceInfo()
            detail.Unpack(resource)
            resource_type, resource_name = resource.resource_type, resource.resource_name
    return ReceivedDetails(violations, reason, resource_type, resource_name)


def field_violations(error: grpc.aio.AioRpcError | grpc.RpcError) -> list[tuple[str, str]]:
    """Read the BadRequest field violations from a received error, if any."""
    return received_details(error).field_violations


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns domain errors into rich statuses and hides unexpected exceptions behind INTERNAL."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(handler.stream_stream, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, method: str):
    # abort(), not abort_with_status(): the tracing interceptor's context proxy records only abort().
    status = to_status(exc) if isinstance(exc, GenAIError) else None
    if status is not None:
        await context.abort(status.code, status.details, status.trailing_metadata)
    if isinstance(exc, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by this server")
    logger.exception("unhandled error in %s", method)
    trace.get_current_span().record_exception(exc)  # the server span keeps what the client is not told
    status = internal_status()
    await context.abort(status.code, status.details, status.trailing_metadata)


def _wrap_unary(behavior, method: str):
    async def wrapper(request, context):
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - this is the one place that maps them
            await _abort(context, exc, method)

    return wrapper


def _wrap_stream(behavior, method: str):
    async def wrapper(request, context):
        try:
            result = behavior(request, context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            else:  # a handler that writes with context.write() and returns None
                await result
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await _abort(context, exc, method)

    return wrapper
