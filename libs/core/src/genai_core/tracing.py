"""Spans of gRPC calls, on both sides: named for a reader, ended on every path, never leaking context.

Every server and every channel of the suite gets these interceptors (``genai_core.server``,
``genai_core.channels``), in place of OpenTelemetry's generic gRPC instrumentation, because a trace must
read well in a backend that shows neither resources nor span kinds (Phoenix):

* names say which service and which side: the retrieval service's ``inference.ChatStream`` span sits under
  its caller's ``retrieval → inference.ChatStream``; both carry ``service.name`` as a span attribute, the
  client span also ``peer.service``;
* a client span ends when its call ends, however it ends: read to the end, failed, or cancelled by a caller
  that stopped reading at the stream's ``complete`` message or whose own client went away. (The generic
  instrumentation ends a stream's span only when the stream is read to its end, so those spans were never
  exported and the callee's spans hung loose in the trace.);
* a server span is current while the handler runs, step by step for a stream: the context is attached
  around each step and detached in the same step, so a stream closed from another task (a cancelled
  call) cannot fail with "token was created in a different Context";
* health checks and reflection are not traced (``genai_core.telemetry.traced_rpc``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from genai_core.services import SERVICES
from genai_core.telemetry import provider_of, service_name, traced_rpc, tracer, with_provider

logger = logging.getLogger(__name__)

# OpenTelemetry's gRPC conventions: a server span is an error only for faults of the server.
_SERVER_FAULTS = frozenset({
    grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
})
_SHORT_NAMES = {row.proto_service: row.name for row in SERVICES.values()}


def rpc_parts(method: str | bytes) -> tuple[str, str, str]:
    """``/genai.inference.v1.InferenceService/Chat`` -> (proto service, method, short service name).

    The short name is the services table's (``inference``); a service outside the table keeps the last
    part of its proto name (``Health``).
    """
    text = method.decode() if isinstance(method, bytes) else method
    service, _, rpc = text.lstrip("/").partition("/")
    return service, rpc, _SHORT_NAMES.get(service, service.rsplit(".", 1)[-1])


def server_span_name(method: str | bytes) -> str:
    """The callee's span: ``inference.Chat``."""
    _, rpc, short = rpc_parts(method)
    return f"{short}.{rpc}"


def client_span_name(caller: str, method: str | bytes) -> str:
    """The caller's span: ``gateway → inference.Chat`` (just ``→ inference.Chat`` for an unnamed caller)."""
    return f"{caller} → {server_span_name(method)}".lstrip()


def _rpc_attributes(method: str | bytes) -> dict[str, Any]:
    service, rpc, _ = rpc_parts(method)
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc}


# ------------------------------------------------------------------------------------------------- server


class ServerTracing(grpc.aio.ServerInterceptor):
    """One SERVER span per traced RPC, child of the caller's span when the metadata carries one."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self._provider = tracer_provider

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not traced_rpc(method):
            return handler
        for attr, build in _HANDLER_KINDS:
            behavior = getattr(handler, attr)
            if behavior:
                wrap = self._stream if attr.endswith("_stream") else self._unary
                return build(wrap(behavior, method), request_deserializer=handler.request_deserializer,
                             response_serializer=handler.response_serializer)
        return handler

    def _start(self, method: str, context: grpc.aio.ServicerContext) -> tuple[Span, otel_context.Context]:
        carrier = {m.key: m.value for m in context.invocation_metadata() or ()}
        parent = propagate.extract(carrier)
        me = service_name(self._provider)
        attributes = _rpc_attributes(method)
        if me:
            attributes["service.name"] = me
        span = tracer(self._provider).start_span(
            server_span_name(method), context=parent, kind=SpanKind.SERVER, attributes=attributes)
        return span, with_provider(trace.set_span_in_context(span, parent), self._provider)

    def _unary(self, behavior: Callable, method: str) -> Callable:
        async def traced(request, context):
            span, ctx = self._start(method, context)
            failed: BaseException | None = None
            token = otel_context.attach(ctx)
            try:
                return await behavior(request, context)
            except BaseException as exc:
                failed = exc
                raise
            finally:
                otel_context.detach(token)
                _end_server(span, context, failed)

        return traced

    def _stream(self, behavior: Callable, method: str) -> Callable:
        async def traced(request, context):
            span, ctx = self._start(method, context)
            failed: BaseException | None = None
            token = otel_context.attach(ctx)
            try:
                result = behavior(request, context)
            finally:
                otel_context.detach(token)
            try:
                if not inspect.isasyncgen(result):  # a handler that writes with context.write()
                    token = otel_context.attach(ctx)
                    try:
                        await result
                    finally:
                        otel_context.detach(token)
                    return
                while True:
                    # Attached and detached within one step: between steps the stream may be closed from
                    # another task (cancellation), where a token of this one could not be detached.
                    token = otel_context.attach(ctx)
                    try:
                        item = await result.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        otel_context.detach(token)
                    yield item
            except BaseException as exc:
                failed = exc
                raise
            finally:
                if inspect.isasyncgen(result):
                    token = otel_context.attach(ctx)
                    try:
                        await result.aclose()
                    finally:
                        otel_context.detach(token)
                _end_server(span, context, failed)

        return traced


_HANDLER_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


def _end_server(span: Span, context: grpc.aio.ServicerContext, failed: BaseException | None) -> None:
    code = context.code()
    if not isinstance(code, grpc.StatusCode):
        if failed is None:
            code = grpc.StatusCode.OK
        elif isinstance(failed, (asyncio.CancelledError, GeneratorExit)):  # the stream was closed under us
            code = grpc.StatusCode.CANCELLED
        else:
            code = grpc.StatusCode.UNKNOWN
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in _SERVER_FAULTS:
        span.set_status(Status(StatusCode.ERROR, context.details() or code.name))
    if code is grpc.StatusCode.CANCELLED:
        span.add_event("cancelled", {"reason": "the caller cancelled the call or went away"})
    span.end()


# ------------------------------------------------------------------------------------------------- client


class _MetadataSetter:
    def set(self, carrier: grpc.aio.Metadata, key: str, value: str) -> None:
        carrier[key] = value


class ClientTracing(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """One CLIENT span per traced call, ended by the call's done callback (any ending, any task)."""

    def __init__(self, target: str = "", tracer_provider: Any = None) -> None:
        self._provider = tracer_provider
        host, _, port = target.rpartition(":")
        self._server = {"server.address": host or target}
        if port.isdigit():
            self._server["server.port"] = int(port)

    async def _intercept(self, continuation, details: grpc.aio.ClientCallDetails, request: Any):
        if not traced_rpc(details.method.decode() if isinstance(details.method, bytes) else details.method):
            return await continuation(details, request)
        provider = provider_of(self._provider)
        me = service_name(provider)
        _, _, callee = rpc_parts(details.method)
        attributes = {**_rpc_attributes(details.method), **self._server, "peer.service": callee}
        if me:
            attributes["service.name"] = me
        span = tracer(provider).start_span(
            client_span_name(me, details.method), kind=SpanKind.CLIENT, attributes=attributes)
        metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
        propagate.inject(metadata, context=trace.set_span_in_context(span), setter=_MetadataSetter())
        details = grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                             details.wait_for_ready)
        try:
            call = await continuation(details, request)
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.end()
            raise
        call.add_done_callback(lambda done: _end_client_soon(span, done))
        return call

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await self._intercept(continuation, client_call_details, request)

    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await self._intercept(continuation, client_call_details, request)

    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await self._intercept(continuation, client_call_details, request_iterator)

    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await self._intercept(continuation, client_call_details, request_iterator)


def _end_client_soon(span: Span, call: grpc.aio.Call) -> None:
    # The status is read with coroutines, and a done callback is plain: end the span from a task, at the
    # time the call ended.
    ended = time.time_ns()
    local_cancel = call.cancelled()
    try:
        asyncio.get_running_loop().create_task(_end_client(span, call, ended, local_cancel))
    except RuntimeError:  # no loop left (interpreter shutdown): end without the status
        span.end(ended)


async def _end_client(span: Span, call: grpc.aio.Call, ended: int, local_cancel: bool) -> None:
    try:
        code, details = await call.code(), await call.details()
    except Exception:  # noqa: BLE001 - a span must end even if the status cannot be read
        code, details = grpc.StatusCode.UNKNOWN, "status not readable"
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if local_cancel and code is grpc.StatusCode.CANCELLED:
        # The caller stopped: it read what it needed (a stream's `complete`) or its own client left.
        span.add_event("cancelled", {"reason": "the caller stopped the call"})
    elif code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, details or code.name))
    span.end(ended)
