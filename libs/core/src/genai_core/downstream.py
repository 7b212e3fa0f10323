"""Calls from one service to another: traced channels with deadlines and retries, and errors in our taxonomy.

A service that orchestrates others (retrieval, agent, evaluation, fine-tune) builds one ``Downstream`` in
its composition root and wraps the clients it needs in its own ports; its domain never sees grpc:

    >>> from genai_core.settings import DownstreamSettings
    >>> downstream = Downstream(DownstreamSettings({"tokenizer": "127.0.0.1:50051"}), caller_prefix="GENAI_X_")
    >>> client = downstream.client("tokenizer")     # the generated stub's RPCs ...
    >>> # reply = await client.CountTokens(request)  # ... raising NotFound, Unavailable, ... never AioRpcError

* every channel comes from ``genai_core.channels``: OpenTelemetry client interceptors (the W3C trace
  context travels in metadata), a default deadline, transparent retries of UNAVAILABLE, keepalive;
* a failed call becomes the domain error that ``ERRORS`` maps its status code to, naming the service,
  so the caller's own servicer reports it with the right code (and the gateway with the right HTTP status);
* a server stream that the caller stops reading is cancelled, so the callee stops working and the
  client span ends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
from opentelemetry.sdk.trace import TracerProvider

from genai_core.channels import create_channel
from genai_core.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    GenAIError,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from genai_core.services import service
from genai_core.settings import DownstreamSettings
from genai_core.status import field_violations

logger = logging.getLogger(__name__)

Translate = Callable[[str, str, list[FieldViolation]], GenAIError]


def _unavailable(name: str, details: str, _: list[FieldViolation]) -> GenAIError:
    # The details name internal addresses ("ipv4:127.0.0.1:50052: Failed to connect"): log them, don't return them.
    logger.warning("the %s service is unavailable: %s", name, details)
    return Unavailable(f"the {name} service is unavailable; retry shortly", reason="DOWNSTREAM_UNAVAILABLE",
                       resource_type="service", resource_name=name)


def _invalid(name: str, details: str, violations: list[FieldViolation]) -> GenAIError:
    return InvalidArgument(f"the {name} service failed: {details}",
                           [FieldViolation(f"{name}.{v.field}", v.description) for v in violations])


def _named(cls: type[GenAIError]) -> Translate:
    def translate(name: str, details: str, _: list[FieldViolation]) -> GenAIError:
        return cls(f"the {name} service failed: {details}", resource_type="service", resource_name=name)

    return translate


def _deadline(name: str, _: str, __: list[FieldViolation]) -> GenAIError:
    return DeadlineExceeded(f"the {name} service did not answer in time", resource_type="service",
                            resource_name=name)


def _failed(name: str, details: str, _: list[FieldViolation]) -> GenAIError:
    return FailedPrecondition(f"the {name} service failed: {details}", reason="DOWNSTREAM_ERROR",
                              resource_type="service", resource_name=name)


# A downstream status code -> the error this service raises. Codes not listed (INTERNAL, UNKNOWN,
# DATA_LOSS, auth) are the callee's failure, reported as a failed precondition that names it.
ERRORS: Mapping[grpc.StatusCode, Translate] = {
    grpc.StatusCode.UNAVAILABLE: _unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: _deadline,
    grpc.StatusCode.INVALID_ARGUMENT: _invalid,
    grpc.StatusCode.NOT_FOUND: _named(NotFound),
    grpc.StatusCode.ALREADY_EXISTS: _named(AlreadyExists),
    grpc.StatusCode.ABORTED: _named(Aborted),
    grpc.StatusCode.OUT_OF_RANGE: _named(OutOfRange),
    grpc.StatusCode.RESOURCE_EXHAUSTED: _named(ResourceExhausted),
    grpc.StatusCode.FAILED_PRECONDITION: _named(FailedPrecondition),
    grpc.StatusCode.CANCELLED: _named(Cancelled),
    grpc.StatusCode.UNIMPLEMENTED: _named(Unimplemented),
}


def translate(name: str, exc: grpc.aio.AioRpcError) -> GenAIError:
    """A failed call to service ``name`` as a domain error (see ``ERRORS``)."""
    violations = [FieldViolation(f, d) for f, d in field_violations(exc)]
    return ERRORS.get(exc.code(), _failed)(name, exc.details() or exc.code().name, violations)


class Call:
    """A started RPC: await it (unary) or iterate it (server streaming); failures raise domain errors."""

    def __init__(self, call: Any, name: str) -> None:
        self._call = call
        self._name = name

    def __await__(self):
        return self._result().__await__()

    async def _result(self) -> Any:
        try:
            return await self._call
        except grpc.aio.AioRpcError as exc:
            raise translate(self._name, exc) from None

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            async for message in self._call:
                yield message
        except grpc.aio.AioRpcError as exc:
            raise translate(self._name, exc) from None
        finally:
            # The caller stopped early (or the stream ended): cancel, so the callee stops and the span ends.
            self._call.cancel()

    def cancel(self) -> None:
        self._call.cancel()


class Client:
    """A service's generated stub whose RPCs return ``Call``s."""

    def __init__(self, stub: Any, name: str) -> None:
        self._stub = stub
        self._name = name

    def __getattr__(self, rpc: str) -> Callable[..., Call]:
        method = getattr(self._stub, rpc)
        return lambda *args, **kwargs: Call(method(*args, **kwargs), self._name)


class Downstream:
    """One channel per configured downstream service; a service that is not configured is unavailable.

    ``channels`` (tests) are used instead of opening new ones and stay the caller's to close.
    """

    def __init__(
        self,
        settings: DownstreamSettings,
        *,
        caller_prefix: str = "",
        tracer_provider: TracerProvider | None = None,
        channels: Mapping[str, grpc.aio.Channel] | None = None,
    ) -> None:
        given = dict(channels or {})
        self.targets = dict(settings.targets)
        self._prefix = caller_prefix
        self._owned = {
            name: create_channel(target, default_timeout=settings.timeout, tracer_provider=tracer_provider)
            for name, target in self.targets.items() if name not in given
        }
        self._channels = {**self._owned, **given}
        self._clients: dict[str, Client] = {}

    def client(self, name: str) -> Client:
        """The client of service ``name`` (a row of ``genai_core.services``)."""
        if name not in self._clients:
            row = service(name)
            if name not in self._channels:
                raise Unavailable(
                    f"the {name} service is not configured; set {row.target_env(self._prefix)}",
                    reason="DOWNSTREAM_UNAVAILABLE", resource_type="service", resource_name=name)
            self._clients[name] = Client(row.stub_class()(self._channels[name]), name)
        return self._clients[name]

    async def close(self) -> None:
        for channel in self._owned.values():
            await channel.close()
