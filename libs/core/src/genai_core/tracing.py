"""Spans of gRPC calls, on both sides: named for a reader, ended on every path, never leaking context.

Every server and every channel of the suite gets these interceptors (``genai_core.server``,
``genai_core.channels``), in place of OpenTelemetry's generic gRPC instrumentation, because a trace must
read well in a backend that shows neither resources nor span kinds (Phoenix):

* names say which service and which side: the retrieval service's ``inference.ChatStream`` span sits under
  its caller's ``retrieval → inference.ChatStream``; both carry ``service.name`` as a span attribute, the
  client span also ``peer.service``; both are OpenInference CHAINs until the handler says more
  (``genai_core.spans``);
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
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from genai_core.handlers import final_code, rewrap
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
    # CHAIN until a handler says what the call is (genai_core.spans): a hop is a link between steps, and
    # Phoenix shows a span without a kind as "unknown".
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc, "openinference.span.kind": "CHAIN"}


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
        return rewrap(handler, lambda b: self._unary(b, method), lambda b: self._stream(b, method))

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
            result = None
            try:
                token = otel_context.attach(ctx)
                try:
                    result = behavior(request, context)
                finally:
                    otel_context.detach(token)
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


def _end_server(span: Span, context: grpc.aio.ServicerContext, failed: BaseException | None) -> None:
    code = final_code(context, failed)
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


class _ClientTracing:
    """One CLIENT span per traced call, ended by the call's done callback (any ending, any task)."""

    def __init__(self, target: str = "", tracer_provider: Any = None) -> None:
        self._provider = tracer_provider
        host, _, port = target.rpartition(":")
        self._server: dict[str, Any] = {"server.address": host or target}
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
        return TracedCall(call, span)


# grpc.aio files a channel's interceptor under the first of these interfaces it implements, so each kind of
# call needs an object of its own.
class _UnaryUnary(_ClientTracing, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await self._intercept(continuation, client_call_details, request)


class _UnaryStream(_ClientTracing, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await self._intercept(continuation, client_call_details, request)


class _StreamUnary(_ClientTracing, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await self._intercept(continuation, client_call_details, request_iterator)


class _StreamStream(_ClientTracing, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await self._intercept(continuation, client_call_details, request_iterator)


def client_interceptors(target: str = "", tracer_provider: Any = None) -> list[grpc.aio.ClientInterceptor]:
    """The span interceptors of a channel to ``target`` (host:port), one per kind of call."""
    return [kind(target, tracer_provider) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]


class TracedCall:
    """The call a caller gets back: the real one, whose span ends with it, however it ends.

    At its end (a stream read to EOF, a unary call awaited, a failure), when the caller cancels it (the
    gateway and ``genai_core.downstream`` do once a stream's ``complete`` arrived, or when their own client
    left), or when the caller lets go of it unfinished. It holds the call; the call never holds it, so a
    call abandoned without ``cancel()`` is still freed, and cancelled by grpc, at once. (A done callback
    would make the pending call keep itself alive.)
    """

    def __init__(self, call: Any, span: Span) -> None:
        self._call = call
        self._span: Span | None = span

    def __getattr__(self, name: str) -> Any:  # metadata, code(), details(), write(), ...: the real call's
        return getattr(self._call, name)

    def _end(self, code: grpc.StatusCode, details: str = "", by_caller: bool = False) -> None:
        span, self._span = self._span, None
        if span is None:
            return
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if by_caller:
            # Not an error: the caller read what it needed (a stream's `complete`) or its own client left.
            span.add_event("cancelled", {"reason": "the caller stopped the call"})
        elif code is not grpc.StatusCode.OK:
            span.set_status(Status(StatusCode.ERROR, details or code.name))
        span.end()

    async def _end_with_status(self) -> None:
        if self._span is not None:
            self._end(await self._call.code(), await self._call.details())

    def _abandoned(self) -> None:
        span, self._span = self._span, None
        if span is not None:
            span.add_event("abandoned", {"reason": "the caller let go of the call before reading its status"})
            span.end()

    def cancel(self) -> bool:
        cancelled = self._call.cancel()
        if cancelled:
            self._end(grpc.StatusCode.CANCELLED, by_caller=True)
        elif self._span is not None:  # it had ended already: keep its own status
            try:
                asyncio.get_running_loop().create_task(self._end_with_status())
            except RuntimeError:  # no loop: cancelled while being freed after the loop stopped
                self._abandoned()
        return cancelled

    def _interrupted(self) -> None:
        # The task reading the call was cancelled, and grpc cancels the call with it.
        if self._call.done():
            self._end(grpc.StatusCode.CANCELLED, by_caller=True)

    async def read(self) -> Any:
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            self._end(exc.code(), exc.details() or "")
            raise
        except asyncio.CancelledError:
            self._interrupted()
            raise
        if message is grpc.aio.EOF:
            await self._end_with_status()
        return message

    def __aiter__(self):
        return self._messages()

    async def _messages(self):
        try:
            async for message in self._call:
                yield message
        except grpc.aio.AioRpcError as exc:
            self._end(exc.code(), exc.details() or "")
            raise
        except asyncio.CancelledError:
            self._interrupted()
            raise
        await self._end_with_status()

    def __await__(self):
        try:
            response = yield from self._call.__await__()
        except grpc.aio.AioRpcError as exc:
            self._end(exc.code(), exc.details() or "")
            raise
        except asyncio.CancelledError:
            self._end(grpc.StatusCode.CANCELLED, by_caller=True)
            raise
        self._end(grpc.StatusCode.OK)
        return response

    def __del__(self) -> None:
        if getattr(self, "_span", None) is not None:  # let go of unfinished: grpc cancels the call itself
            self._abandoned()


# grpc.aio accepts what an interceptor returns as the call only if it is one of these.
for _base in (grpc.aio.UnaryUnaryCall, grpc.aio.UnaryStreamCall, grpc.aio.StreamUnaryCall, grpc.aio.StreamStreamCall):
    _base.register(TracedCall)
