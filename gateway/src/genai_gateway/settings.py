"""Gateway settings: the only place the gateway reads the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from genai_core.settings import load

PREFIX = "GENAI_GATEWAY_"

# Backend name -> default gRPC target. An empty target means "not deployed": its routes answer 503.
DEFAULT_TARGETS = {
    "tokenizer": "127.0.0.1:50051",
    "inference": "127.0.0.1:50052",
    "embedding": "127.0.0.1:50053",
    "retrieval": "127.0.0.1:50054",
    "agent": "",
    "evaluation": "",
    "finetune": "",
}


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = 8080
    api_keys: tuple[str, ...] = ()  # empty: open, for local use
    request_timeout: float = 30.0  # seconds; the deadline of each gRPC call
    train_timeout: float = 900.0  # seconds; tokenizer training may read large corpora
    max_body_bytes: int = 16 * 1024 * 1024
    tokenizer_target: str = DEFAULT_TARGETS["tokenizer"]
    inference_target: str = DEFAULT_TARGETS["inference"]
    embedding_target: str = DEFAULT_TARGETS["embedding"]
    retrieval_target: str = DEFAULT_TARGETS["retrieval"]
    agent_target: str = ""
    evaluation_target: str = ""
    finetune_target: str = ""
    log_level: str = "INFO"
    otlp_endpoint: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError("port must be between 0 and 65535")
        if self.request_timeout <= 0 or self.train_timeout <= 0:
            raise ValueError("timeouts must be positive")

    def targets(self) -> dict[str, str]:
        """Configured backends only: name -> host:port."""
        return {name: getattr(self, f"{name}_target") for name in DEFAULT_TARGETS if getattr(self, f"{name}_target")}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GatewaySettings:
        return load(
            cls,
            PREFIX,
            environ,
            otlp_endpoint=environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            log_level=environ.get("GENAI_LOG_LEVEL", "INFO"),
        )
