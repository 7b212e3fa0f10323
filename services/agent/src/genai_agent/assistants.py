"""Assistants: agents as data. Built-in ones come from YAML files at start (the package's ``assistants/``
plus ``GENAI_AGENT_ASSISTANTS_DIR``) and belong to no tenant; the others are created through the API and
stored per tenant.

An assistant is found by id, by name (the tenant's first, then the built-in ones) or by graph id, which
selects that graph's default assistant (the built-in one named like the graph), as LangGraph's Agent
Server does: ``client.runs.stream(None, "react", ...)`` works.

A YAML file::

    name: react
    graph_id: react
    description: Tool-calling agent
    spec:
      system_prompt: You are a helpful assistant.
      tools: [calculator, search]
      first_tool_choice: required
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from genai_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

from genai_agent.codec import spec_from_json, spec_to_json
from genai_agent.graphs import GRAPHS
from genai_agent.records import Records
from genai_agent.toolkit import Toolbox
from genai_agent.types import AgentSpec, Assistant, IfExists, ModelProvider, Page

_NAMESPACE = uuid.UUID("6c1e2c49-60a5-4d0e-9a57-5a3f0b1a7d11")
_CHOICES = {"auto", "required", "none"}


def builtin_id(name: str) -> str:
    """A built-in assistant's id: the same on every deployment, like LangGraph's default assistants."""
    return str(uuid.uuid5(_NAMESPACE, name))


def load_yaml(paths: Iterable[Path]) -> list[Assistant]:
    """Assistants from YAML files; a bad file stops the start with a message naming file and key."""
    out: list[Assistant] = []
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text()) or {}
            name, graph = str(data["name"]), str(data.get("graph_id") or data["name"])
            out.append(Assistant(
                assistant_id=str(data.get("assistant_id") or builtin_id(name)), graph_id=graph, name=name,
                spec=spec_from_json(data.get("spec") or {}), description=str(data.get("description", "")),
                metadata={**(data.get("metadata") or {}), "created_by": "system"},
            ))
        except (KeyError, ValueError, TypeError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
    return out


def builtin_files(extra_dir: Path | None) -> list[Path]:
    packaged = resources.files("genai_agent") / "assistants"
    files = sorted(Path(str(p)) for p in packaged.iterdir() if p.name.endswith(".yaml"))
    if extra_dir is not None:
        files += sorted(extra_dir.glob("*.yaml"))
    return files


class Assistants:
    def __init__(self, records: Records, builtins: list[Assistant], toolbox: Toolbox, max_steps_limit: int) -> None:
        self._records = records
        self._toolbox = toolbox
        self._max_steps = max_steps_limit
        now = datetime.now(UTC)
        self._builtins = {a.assistant_id: replace(a, created_at=now, updated_at=now) for a in builtins}
        names = [a.name for a in builtins]
        if len(set(names)) != len(names):
            raise ValueError(f"two built-in assistants share a name: {sorted(n for n in names if names.count(n) > 1)}")
        for a in builtins:
            self.check(a.graph_id, a.spec, f"assistant {a.name!r}: spec")

    # -- the rules of a valid assistant (their one owner) -------------------------------------------------

    def check(self, graph_id: str, spec: AgentSpec, path: str = "spec") -> None:
        graph = GRAPHS.get(graph_id)
        if graph is None:
            raise InvalidArgument.for_field("graph_id", f"unknown graph {graph_id!r}; graphs: {', '.join(GRAPHS)}")
        self._toolbox.check(spec, path)
        for tool in graph.required_tools:
            if tool not in spec.tools:
                raise InvalidArgument.for_field(f"{path}.tools", f"the {graph_id} graph needs the {tool!r} tool")
        choice = spec.first_tool_choice
        if choice not in _CHOICES and choice not in spec.tools:
            raise InvalidArgument.for_field(f"{path}.first_tool_choice",
                                            "use auto, required, none or the name of one of the assistant's tools")
        if spec.max_steps > self._max_steps:
            raise InvalidArgument.for_field(f"{path}.max_steps", f"at most {self._max_steps}")
        if spec.model.provider is ModelProvider.OPENAI and not (spec.model.name and spec.model.base_url):
            raise InvalidArgument.for_field(f"{path}.model", "an openai model needs its name and base_url")
        if spec.model.provider is ModelProvider.INFERENCE and spec.model.base_url:
            raise InvalidArgument.for_field(f"{path}.model.base_url", "only openai models take a base_url")
        if not 0 <= spec.top_k <= 20 or not 0 <= spec.max_plan_steps <= 10:
            raise InvalidArgument.for_field(path, "top_k must be 0 to 20 and max_plan_steps 0 to 10")

    def effective_spec(self, assistant: Assistant, overrides: dict[str, Any]) -> AgentSpec:
        """The assistant's spec with a run's ``configurable`` values for spec keys applied (others are
        left to the graph), checked like an assistant's."""
        known = set(spec_to_json(assistant.spec))
        chosen = {k: v for k, v in overrides.items() if k in known}
        if not chosen:
            return assistant.spec
        try:
            spec = spec_from_json({**spec_to_json(assistant.spec), **chosen}, "configurable")
        except ValueError as exc:
            field_path, _, message = str(exc).partition(": ")
            raise InvalidArgument.for_field(field_path, message) from None
        self.check(assistant.graph_id, spec, "configurable")
        return spec

    # -- lookups ------------------------------------------------------------------------------------------

    async def resolve(self, tenant: str, ref: str) -> Assistant:
        """By id, then name (the tenant's, then built-in), then graph id (its default assistant)."""
        if not ref:
            raise InvalidArgument.for_field("assistant_id", "name an assistant (its id or name) or a graph")
        if ref in self._builtins:
            return self._builtins[ref]
        found = await self._records.get_assistant(tenant, ref)
        if found is not None:
            return found
        named = await self._records.find_assistants(tenant, name=ref)
        if named:
            return named[0]
        for a in self._builtins.values():
            if a.name == ref:
                return a
        for a in self._builtins.values():
            if a.graph_id == ref:
                return a
        raise NotFound(f"no assistant {ref!r}; list them with ListAssistants (assistants.search over HTTP)",
                       resource_type="assistant", resource_name=ref)

    async def search(self, tenant: str, page: Page, *, graph_id: str = "", name: str = "",
                     metadata: dict[str, Any] | None = None) -> tuple[list[Assistant], int]:
        def matches(a: Assistant) -> bool:
            return ((not graph_id or a.graph_id == graph_id) and (not name or a.name == name)
                    and all(a.metadata.get(k) == v for k, v in (metadata or {}).items()))

        builtins = [a for a in self._builtins.values() if matches(a)]
        own = await self._records.find_assistants(tenant, name=name, graph_id=graph_id, metadata=metadata)
        found = builtins + own
        return found[page.offset: page.offset + page.limit], len(found)

    # -- changes ------------------------------------------------------------------------------------------

    async def create(self, tenant: str, *, graph_id: str, spec: AgentSpec, assistant_id: str = "", name: str = "",
                     description: str = "", metadata: dict[str, Any] | None = None,
                     if_exists: IfExists = IfExists.RAISE) -> Assistant:
        self.check(graph_id, spec)
        assistant_id = assistant_id or str(uuid.uuid4())
        name = name or graph_id
        existing = self._builtins.get(assistant_id) or await self._records.get_assistant(tenant, assistant_id)
        if existing is not None:
            if if_exists is IfExists.DO_NOTHING:
                return existing
            raise AlreadyExists(f"assistant {assistant_id!r} exists", resource_type="assistant",
                                resource_name=assistant_id)
        if any(a.name == name for a in self._builtins.values()) or await self._records.find_assistants(tenant,
                                                                                                       name=name):
            raise AlreadyExists(f"an assistant named {name!r} exists; choose another name",
                                resource_type="assistant", resource_name=name)
        now = datetime.now(UTC)
        assistant = Assistant(assistant_id, graph_id, name, spec, tenant, description, dict(metadata or {}), 1, now, now)
        await self._records.put_assistant(assistant)
        return assistant

    async def _owned(self, tenant: str, assistant_id: str) -> Assistant:
        if assistant_id in self._builtins:
            raise FailedPrecondition(f"assistant {assistant_id!r} is built in (from a YAML file) and cannot be "
                                     "changed through the API; create your own", resource_type="assistant",
                                     resource_name=assistant_id)
        found = await self._records.get_assistant(tenant, assistant_id)
        if found is None:
            raise NotFound(f"no assistant {assistant_id!r}", resource_type="assistant", resource_name=assistant_id)
        return found

    async def update(self, tenant: str, assistant_id: str, *, graph_id: str | None = None, name: str | None = None,
                     description: str | None = None, spec: AgentSpec | None = None,
                     metadata: dict[str, Any] | None = None) -> Assistant:
        current = await self._owned(tenant, assistant_id)
        updated = replace(
            current, graph_id=graph_id or current.graph_id, name=name or current.name,
            description=current.description if description is None else description, spec=spec or current.spec,
            metadata={**current.metadata, **(metadata or {})}, version=current.version + 1,
            updated_at=datetime.now(UTC),
        )
        self.check(updated.graph_id, updated.spec)
        await self._records.put_assistant(updated)
        return updated

    async def delete(self, tenant: str, assistant_id: str) -> None:
        await self._owned(tenant, assistant_id)
        await self._records.delete_assistant(tenant, assistant_id)
