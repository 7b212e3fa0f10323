"""Typed, frozen settings read from the environment in one place.

Each service declares a frozen dataclass and loads it once in its composition root:

    >>> @dataclass(frozen=True)
    ... class Example:
    ...     port: int = 50051
    >>> load(Example, "GENAI_EXAMPLE_", {"GENAI_EXAMPLE_PORT": "6000"}).port
    6000

Every problem is collected and reported at once, so a bad deployment fails fast with
one message naming each variable to fix.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from genai_core.services import load_targets, service
from genai_core.telemetry import CAPTURE_CONTENT_ENV

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """Raised when environment variables are missing or cannot be parsed."""


def _parse(raw: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return None if raw == "" else _parse(raw, inner[0])
    if origin is tuple:
        (item,) = typing.get_args(kind)[:1]
        return tuple(_parse(p.strip(), item) for p in raw.split(",") if p.strip())
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        value = raw.strip()
        try:
            return kind(value) if value in {m.value for m in kind} else kind(value.lower())
        except ValueError:
            raise ValueError(f"expected one of {[m.value for m in kind]}") from None
    if kind is Path:
        return Path(raw).expanduser()
    if kind in (int, float, str):
        return kind(raw.strip()) if kind is not str else raw
    raise TypeError(f"unsupported settings type {kind!r}")


def load(cls: type[T], prefix: str, environ: Mapping[str, str], **defaults: Any) -> T:
    """Build ``cls`` from ``environ``: field ``foo`` is read from ``{prefix}FOO``.

    ``defaults`` override the dataclass defaults (for example a per-service port) and
    are themselves overridden by the environment.
    """
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    errors: list[str] = []
    for field in dataclasses.fields(cls):
        name = f"{prefix}{field.name.upper()}"
        if name in environ:
            try:
                values[field.name] = _parse(environ[name], hints[field.name])
            except (ValueError, TypeError) as exc:
                errors.append(f"{name}={environ[name]!r}: {exc}")
        elif field.name in defaults:
            values[field.name] = defaults[field.name]
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            errors.append(f"{name} is required")
    if errors:
        raise SettingsError("invalid settings: " + "; ".join(errors))
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:  # __post_init__ validation
        raise SettingsError(f"invalid settings for {prefix}*: {exc}") from exc


def telemetry_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The standard OpenTelemetry variables and the log level, which every process reads the same way:
    ``otlp_endpoint``, ``capture_content`` and ``log_level`` for a settings class that has those fields."""
    try:
        capture = _parse(environ.get(CAPTURE_CONTENT_ENV, "false"), bool)
    except ValueError as exc:
        raise SettingsError(f"invalid settings: {CAPTURE_CONTENT_ENV}: {exc}") from None
    return {
        "otlp_endpoint": environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        "capture_content": capture,
        "log_level": environ.get("GENAI_LOG_LEVEL", "INFO"),
    }


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """What every gRPC service's bootstrap needs; read with the service's prefix."""

    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int = 0  # 0 disables the Prometheus endpoint
    max_message_bytes: int = 16 * 1024 * 1024
    grace_seconds: float = 10.0
    max_concurrent_rpcs: int = 0  # 0 means unlimited
    log_level: str = "INFO"
    otlp_endpoint: str = ""  # OTEL_EXPORTER_OTLP_ENDPOINT; empty disables export
    capture_content: bool = False  # OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: texts in spans

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536 or not 0 <= self.metrics_port < 65536:
            raise ValueError("ports must be between 0 and 65535")
        if self.max_message_bytes < 1024:
            raise ValueError("max_message_bytes must be at least 1024")
        if self.grace_seconds < 0:
            raise ValueError("grace_seconds must not be negative")

    @classmethod
    def from_env(cls, prefix: str, environ: Mapping[str, str], **defaults: Any) -> ServerSettings:
        """Load with ``prefix`` plus the standard OpenTelemetry and log-level variables."""
        return load(cls, prefix, environ, **{**defaults, **telemetry_env(environ)})

    @classmethod
    def for_service(cls, name: str, environ: Mapping[str, str]) -> ServerSettings:
        """A table service's server settings: its prefix and default ports from ``genai_core.services``."""
        row = service(name)
        return cls.from_env(row.env_prefix, environ, port=row.port, metrics_port=row.metrics_port)


@dataclasses.dataclass(frozen=True)
class DownstreamSettings:
    """Where the services a service calls are, and how long a call may take by default."""

    targets: Mapping[str, str]  # service name -> host:port; a missing name is not deployed
    timeout: float = 30.0  # seconds; the default deadline of each call

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("the downstream timeout must be positive")

    @classmethod
    def from_env(
        cls, prefix: str, names: tuple[str, ...], environ: Mapping[str, str], timeout: float = 30.0
    ) -> DownstreamSettings:
        """``{prefix}<NAME>_TARGET`` per service (default: the table's port on localhost) and
        ``{prefix}DOWNSTREAM_TIMEOUT``."""
        raw = environ.get(f"{prefix}DOWNSTREAM_TIMEOUT")
        try:
            seconds = float(raw) if raw else timeout
            return cls(load_targets(prefix, names, environ), seconds)
        except ValueError as exc:
            raise SettingsError(f"invalid settings: {prefix}DOWNSTREAM_TIMEOUT={raw!r}: {exc}") from exc
