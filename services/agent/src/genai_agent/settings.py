"""The agent service's settings: the only place it reads the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from genai_core.services import service
from genai_core.settings import DownstreamSettings, ServerSettings, load

NAME = "agent"
PREFIX = service(NAME).env_prefix  # GENAI_AGENT_
DOWNSTREAM = ("inference", "retrieval", "tokenizer")


@dataclass(frozen=True)
class AgentSettings:
    """Domain settings, read from ``GENAI_AGENT_*``."""

    data_dir: Path = Path("var/agent")  # the SQLite database of threads, runs and checkpoints
    postgres_dsn: str = ""  # set: threads, runs and checkpoints live in PostgreSQL instead
    assistants_dir: Path | None = None  # more assistant YAML files, loaded next to the built-in ones
    default_model: str = "smollm2-135m-instruct"  # the inference model of assistants that name none
    max_concurrent_runs: int = 4
    run_timeout: float = 600.0  # seconds; a longer run ends with status timeout
    default_max_steps: int = 25  # LangGraph's recursion limit when neither the run nor the assistant sets one
    max_steps_limit: int = 200
    event_retention: float = 600.0  # seconds a finished run's events stay joinable
    max_events_per_run: int = 50_000
    http_allow: tuple[str, ...] = ()  # URL prefixes the http_get tool may fetch; empty denies every URL
    http_timeout: float = 10.0
    http_max_bytes: int = 1_000_000
    mcp_servers: Path | None = None  # a YAML file of MCP servers (stdio) whose tools agents may use
    tool_timeout: float = 60.0  # seconds one tool call may take
    openai_api_key: str = ""  # the key of assistants whose model provider is "openai"

    def __post_init__(self) -> None:
        if self.max_concurrent_runs < 1:
            raise ValueError("max_concurrent_runs must be at least 1")
        if not 1 <= self.default_max_steps <= self.max_steps_limit:
            raise ValueError("default_max_steps must be between 1 and max_steps_limit")
        if min(self.run_timeout, self.event_retention, self.http_timeout, self.tool_timeout) <= 0:
            raise ValueError("timeouts and the event retention must be positive")
        if self.max_events_per_run < 100 or self.http_max_bytes < 1:
            raise ValueError("max_events_per_run must be at least 100 and http_max_bytes positive")
        bad = [p for p in self.http_allow if not p.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"http_allow entries must be http:// or https:// URL prefixes, not {bad}")
        if self.postgres_dsn and not self.postgres_dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError("postgres_dsn must be a postgresql:// URL")


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    agent: AgentSettings
    downstream: DownstreamSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            server=ServerSettings.for_service(NAME, environ),
            agent=load(AgentSettings, PREFIX, environ),
            downstream=DownstreamSettings.from_env(PREFIX, DOWNSTREAM, environ, timeout=120.0),
        )
