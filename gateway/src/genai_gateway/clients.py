"""One channel and typed stub per configured backend, plus their readiness; the backends are the rows of
``genai_core.services.SERVICES`` that have a target."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import grpc
from genai.operations.v1 import operations_service_pb2_grpc
from genai_core.channels import create_channel
from genai_core.services import SERVICES, service
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from genai_gateway.errors import GatewayError
from genai_gateway.settings import PREFIX


class BackendCall:
    """A started gRPC call that knows which backend it went to, so its errors can name the service.

    Await it (unary) or ``read()`` it (server streaming); ``errors.call`` reads ``service``.
    """

    def __init__(self, call: Any, service: str) -> None:
        self._call = call
        self.service = service

    def __await__(self):
        return self._call.__await__()

    def read(self) -> Any:
        return self._call.read()

    def cancel(self) -> bool:
        return self._call.cancel()

    def __aiter__(self):
        return self._call.__aiter__()


class _NamedStub:
    """A generated stub whose calls come back as ``BackendCall``s."""

    def __init__(self, stub: Any, service: str) -> None:
        self._stub = stub
        self._service = service

    def __getattr__(self, rpc: str) -> Any:
        method = getattr(self._stub, rpc)
        return lambda *args, **kwargs: BackendCall(method(*args, **kwargs), self._service)


class Backends:
    """Owns the gRPC channels; routes get stubs from it with ``stub(name)``."""

    def __init__(
        self, targets: Mapping[str, str], *, timeout: float, tracer_provider: TracerProvider | None = None
    ) -> None:
        self.targets = dict(targets)
        self._channels = {
            name: create_channel(target, default_timeout=timeout, tracer_provider=tracer_provider)
            for name, target in targets.items()
        }
        self._stubs: dict[str, Any] = {}

    def channel(self, name: str) -> grpc.aio.Channel:
        channel = self._channels.get(name)
        if channel is None:
            raise GatewayError(
                503,
                f"the {name} service is not configured in this gateway; set {service(name).target_env(PREFIX)}",
                "service_unavailable_error",
                "backend_not_configured",
            )
        return channel

    def stub(self, name: str) -> Any:
        """The generated stub of backend ``name`` (e.g. ``InferenceServiceStub`` for "inference")."""
        if name not in self._stubs:
            self._stubs[name] = _NamedStub(SERVICES[name].stub_class()(self.channel(name)), name)
        return self._stubs[name]

    def operations(self, name: str) -> Any:
        """The OperationsService stub of backend ``name``: the long-running operations that service owns."""
        key = f"{name}/operations"
        if key not in self._stubs:
            self._stubs[key] = _NamedStub(operations_service_pb2_grpc.OperationsServiceStub(self.channel(name)), name)
        return self._stubs[key]

    async def _status(self, name: str) -> str:
        stub = health_pb2_grpc.HealthStub(self._channels[name])
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICES[name].proto_service), timeout=2.0)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def readiness(self) -> dict[str, str]:
        """Health status name of each configured backend (SERVING when ready)."""
        names = list(self._channels)
        statuses = await asyncio.gather(*(self._status(n) for n in names))
        return dict(zip(names, statuses, strict=True))

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels.values()))
