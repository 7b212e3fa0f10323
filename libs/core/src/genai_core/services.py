"""The one table of the platform's services: name, proto service, default ports, module, env prefix.

Settings (default ports and downstream targets), the gateway (clients, readiness, targets) and
``make run`` (the Procfile) read it, so a service's port is written once, here.

    >>> SERVICES["retrieval"].default_target
    '127.0.0.1:50054'
    >>> SERVICES["retrieval"].target_env("GENAI_GATEWAY_")
    'GENAI_GATEWAY_RETRIEVAL_TARGET'

Adding a service is one row here (plus its package, proto and deploy entries).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class Service:
    """One gRPC service of the suite."""

    name: str  # short name: env prefixes, metrics, logs, gateway backend names
    proto_service: str  # the full proto service name (health checks report on it)
    port: int  # default gRPC port
    metrics_port: int  # default Prometheus port
    module: str  # the importable package whose ``__main__`` runs it
    stub: str  # "module:Class" of the generated client stub, imported lazily

    @property
    def env_prefix(self) -> str:
        """The prefix of this service's own settings: ``GENAI_<NAME>_``."""
        return f"GENAI_{self.name.upper()}_"

    @property
    def default_target(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def target_env(self, caller_prefix: str) -> str:
        """The variable a caller (prefix ``caller_prefix``) reads this service's address from."""
        return f"{caller_prefix}{self.name.upper()}_TARGET"

    def stub_class(self) -> type:
        module, _, cls = self.stub.partition(":")
        return getattr(importlib.import_module(module), cls)


def _service(name: str, index: int) -> Service:
    title = {"finetune": "Finetune"}.get(name, name.capitalize())
    return Service(
        name=name,
        proto_service=f"genai.{name}.v1.{title}Service",
        port=50050 + index,
        metrics_port=9100 + index,
        module=f"genai_{name}",
        stub=f"genai.{name}.v1.{name}_service_pb2_grpc:{title}ServiceStub",
    )


# In start order: a service comes after the ones it calls.
SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        _service("tokenizer", 1),
        _service("inference", 2),
        _service("embedding", 3),
        _service("retrieval", 4),
        _service("agent", 5),
        _service("evaluation", 6),
        _service("finetune", 7),
    )
}

GATEWAY_PORT = 8080


def service(name: str) -> Service:
    """The table row of ``name``; a KeyError names the known services."""
    try:
        return SERVICES[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICES)}") from None


def load_targets(
    caller_prefix: str, names: Iterable[str], environ: Mapping[str, str]
) -> dict[str, str]:
    """Each named service's address as the caller sees it: ``{caller_prefix}{NAME}_TARGET`` or the default.

    An empty variable means "not deployed": the name is left out, and calls to it fail as unavailable.
    """
    targets = {}
    for name in names:
        row = service(name)
        target = environ.get(row.target_env(caller_prefix), row.default_target).strip()
        if target:
            targets[name] = target
    return targets


def procfile(python: str = "python") -> str:
    """The Procfile ``make run`` starts: every service, then the gateway, then the ready announcer."""
    lines = [f"{s.name}: exec {python} -m {s.module}" for s in SERVICES.values()]
    lines += [f"gateway: exec {python} -m genai_gateway", f"ready: exec {python} scripts/announce.py"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """``python -m genai_core.services procfile``: print the Procfile."""
    if argv[1:] == ["procfile"]:
        sys.stdout.write(procfile())
        return 0
    sys.stderr.write("usage: python -m genai_core.services procfile\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
