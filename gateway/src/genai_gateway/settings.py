"""Gateway settings: the only place the gateway reads the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from genai_core.services import GATEWAY_PORT, SERVICES, load_targets
from genai_core.settings import load, telemetry_env

PREFIX = "GENAI_GATEWAY_"


def default_targets() -> dict[str, str]:
    """Every service of the table on its default local port."""
    return load_targets(PREFIX, SERVICES, {})


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = GATEWAY_PORT
    api_keys: tuple[str, ...] = ()  # empty: open, for local use
    request_timeout: float = 30.0  # seconds; the base deadline of each gRPC call (genai_gateway.deadlines)
    generation_timeout: float = 0.0  # seconds; 0: generation has no deadline and ends when its client leaves
    seconds_per_input: float = 0.25  # added to the base deadline per embedding input, passage, chunk, candidate
    train_timeout: float = 900.0  # seconds; tokenizer training may read large corpora
    ingest_async_bytes: int = 256 * 1024  # larger document uploads run as an operation (202 + GET /v1/operations)
    responses_kept: int = 1000  # stored /v1/responses kept in memory (the oldest is forgotten first)
    max_body_bytes: int = 16 * 1024 * 1024
    # Backend name -> host:port, from GENAI_GATEWAY_<NAME>_TARGET (an empty value: not deployed, its routes
    # answer 503); the names and default ports are genai_core.services.SERVICES.
    targets: Mapping[str, str] = field(default_factory=default_targets)
    log_level: str = "INFO"
    otlp_endpoint: str = ""  # OTEL_EXPORTER_OTLP_ENDPOINT; empty disables export
    capture_content: bool = False  # OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: texts in spans

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError("port must be between 0 and 65535")
        if self.request_timeout <= 0 or self.train_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.generation_timeout < 0 or self.seconds_per_input < 0 or self.responses_kept < 0:
            raise ValueError("generation_timeout, seconds_per_input and responses_kept must not be negative")
        unknown = sorted(set(self.targets) - set(SERVICES))
        if unknown:
            raise ValueError(f"unknown backends {unknown}; known: {', '.join(SERVICES)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GatewaySettings:
        return load(
            cls,
            PREFIX,
            environ,
            targets=load_targets(PREFIX, SERVICES, environ),
            **telemetry_env(environ),
        )
