"""The tool registry: every tool an assistant may name, whatever provides it (built in, another service, MCP).

A tool is data plus one coroutine ``run(args, context) -> str``; what it returns is what the model reads.
A tool that raises does not fail the run: the graph's tools node gives the model the error as the
tool's result (see ``nodes.run_tools``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from genai_core.errors import InvalidArgument, NotFound

from genai_agent.types import AgentSpec, ToolInfo, ToolSchema


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the run that calls it."""

    tenant: str
    spec: AgentSpec
    run_id: str = ""


Runner = Callable[[dict[str, Any], ToolContext], Awaitable[str]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # a JSON Schema object
    run: Runner
    provider: str = "builtin"
    requires_approval: bool = False

    @property
    def schema(self) -> ToolSchema:
        return ToolSchema(self.name, self.description, self.parameters)

    @property
    def info(self) -> ToolInfo:
        return ToolInfo(self.name, self.description, self.parameters, self.requires_approval, self.provider)


class Toolbox:
    """Tools by name. ``add`` refuses a second tool of the same name, so an MCP server cannot shadow one."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"two tools are named {tool.name!r} ({self._tools[tool.name].provider}, {tool.provider})")
        self._tools[tool.name] = tool

    def names(self) -> list[str]:
        return sorted(self._tools)

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise NotFound(f"unknown tool {name!r}; known tools: {', '.join(self.names()) or 'none'}",
                           resource_type="tool", resource_name=name) from None

    def infos(self, names: Iterable[str] | None = None) -> list[ToolInfo]:
        chosen = sorted(set(names)) if names is not None else self.names()
        return [self.get(n).info for n in chosen]

    def check(self, spec: AgentSpec, field_path: str = "spec") -> None:
        """Every tool the spec names exists (the rule's one owner; assistants and runs call it)."""
        for i, name in enumerate(spec.tools):
            if name not in self._tools:
                raise InvalidArgument.for_field(
                    f"{field_path}.tools[{i}]", f"unknown tool {name!r}; known tools: {', '.join(self.names())}")
        for i, name in enumerate(spec.approval_tools):
            if name not in spec.tools:
                raise InvalidArgument.for_field(
                    f"{field_path}.approval_tools[{i}]", f"{name!r} is not among the assistant's tools")

    def select(self, spec: AgentSpec) -> Mapping[str, Tool]:
        """The spec's tools by name, with the spec's approval list applied."""
        approval = set(spec.approval_tools)
        chosen = {}
        for name in spec.tools:
            tool = self.get(name)
            if name in approval and not tool.requires_approval:
                tool = Tool(tool.name, tool.description, tool.parameters, tool.run, tool.provider, True)
            chosen[name] = tool
        return chosen
