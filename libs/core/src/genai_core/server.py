"""The async gRPC server bootstrap shared by every service.

    >>> # in a service's __main__.py
    >>> # asyncio.run(run_service(settings.server, "tokenizer", [spec], ready=registry.load))

Health follows the real state: NOT_SERVING while ``ready`` loads and warms the model,
SERVING after, NOT_SERVING again on SIGTERM while in-flight calls drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from genai_core.logs import setup_logging
from genai_core.metrics import GrpcMetrics
from genai_core.settings import ServerSettings
from genai_core.status import ErrorInterceptor
from genai_core.telemetry import setup_telemetry
from genai_core.tracing import ServerTracing

logger = logging.getLogger(__name__)

OVERALL = ""  # the health service name that stands for the whole server
# Server reflection v1, which current grpcurl and `buf curl` ask for first. grpcio-reflection ships only
# v1alpha; v1 is the same protocol (identical messages) under a new package name, so one servicer serves both.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


@dataclass(frozen=True)
class ServiceSpec:
    """One proto service to mount: its full name and the generated ``add_*_to_server``."""

    name: str
    add_to_server: Callable[[grpc.aio.Server], None]


def _options(settings: ServerSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.so_reuseport", 0),
    ]


def _register_reflection_v1() -> None:
    """Put a descriptor of reflection v1 in the default pool (v1alpha's, renamed), so that clients can describe
    the v1 service they list, as `buf curl --list-methods` does."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName("grpc/reflection/v1/reflection.proto")
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = "grpc/reflection/v1/reflection.proto", "grpc.reflection.v1"
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    for message in proto.message_type:
        for f in message.field:
            if f.type_name:
                f.type_name = f.type_name.replace(old, new)
    for method in proto.service[0].method:
        method.input_type, method.output_type = method.input_type.replace(old, new), method.output_type.replace(old, new)
    pool.Add(proto)


def _enable_reflection(names: list[str], server: grpc.aio.Server) -> None:
    _register_reflection_v1()
    servicer = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)  # v1alpha
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": v1}),))


class GrpcServer:
    """An aio server with health, reflection, tracing, metrics and error mapping mounted."""

    def __init__(
        self,
        settings: ServerSettings,
        services: Sequence[ServiceSpec],
        tracer_provider: TracerProvider | None = None,
        metrics: GrpcMetrics | None = None,
    ) -> None:
        self.settings = settings
        self._names = [s.name for s in services]
        self.metrics = metrics or GrpcMetrics(",".join(self._names))
        interceptors = [
            ServerTracing(tracer_provider),
            self.metrics.interceptor(),
            ErrorInterceptor(),
        ]
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=_options(settings),
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        for spec in services:
            spec.add_to_server(self._server)
        _enable_reflection([*self._names, health.SERVICE_NAME, REFLECTION_V1, reflection.SERVICE_NAME], self._server)
        self.port = 0

    async def start(self) -> int:
        """Bind and start serving with every service NOT_SERVING; return the bound port."""
        address = f"{self.settings.host}:{self.settings.port}"
        self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"could not bind {address}")
        await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()
        return self.port

    async def set_serving(self) -> None:
        await self._set(health_pb2.HealthCheckResponse.SERVING)

    async def _set(self, status: int) -> None:
        for name in [OVERALL, *self._names]:
            await self.health.set(name, status)

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first (so balancers stop sending), then drain for ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self.settings.grace_seconds if grace is None else grace)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


async def run_service(
    settings: ServerSettings,
    service_name: str,
    services: Sequence[ServiceSpec],
    ready: Callable[[], Awaitable[None]],
    metrics: GrpcMetrics | None = None,
    close: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run a service process until SIGTERM/SIGINT: the body of every ``__main__``.

    ``ready`` loads and warms whatever the service needs; health turns SERVING only after it.
    ``metrics`` lets the service register its own collectors on the served registry.
    ``close`` releases what ``ready`` opened (stores, channels, engines); it runs once the in-flight
    calls have drained, and also when loading failed or was interrupted.
    """
    setup_logging(service_name, settings.log_level)
    metrics = metrics or GrpcMetrics(",".join(s.name for s in services))
    provider = setup_telemetry(service_name, settings.otlp_endpoint, (metrics.stage_processor(),),
                               capture_content=settings.capture_content)
    server = GrpcServer(settings, services, tracer_provider=provider, metrics=metrics)
    if settings.metrics_port:
        server.metrics.serve(settings.host, settings.metrics_port)
    port = await server.start()
    logger.info("%s listening on %s:%d (NOT_SERVING while loading)", service_name, settings.host, port)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    try:
        loader = asyncio.create_task(ready())
        waiter = asyncio.create_task(stopping.wait())
        done, _ = await asyncio.wait({loader, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if loader in done:
            waiter.cancel()
            loader.result()  # a failed load ends the process with its traceback
            await server.set_serving()
            logger.info("%s is SERVING on %s:%d", service_name, settings.host, port)
            await stopping.wait()
        else:
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
        logger.info("%s draining for up to %.1fs", service_name, settings.grace_seconds)
        await server.stop()
    finally:
        if close is not None:
            try:
                await close()
            except Exception:  # noqa: BLE001 - a failed close must not hide the shutdown
                logger.exception("closing %s failed", service_name)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        provider.shutdown()
    logger.info("%s stopped", service_name)
