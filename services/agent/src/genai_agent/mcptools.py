"""Tools from MCP servers (the ``mcp`` SDK, stdio transport), registered as ``<server>_<tool>``.

The servers are listed in a YAML file (``GENAI_AGENT_MCP_SERVERS``)::

    servers:
      demo:
        command: "{python}"            # {python} is this service's interpreter
        args: ["-m", "genai_agent.mcp_demo"]
        env: {}                        # extra environment of the server process
        requires_approval: [convert_units]   # or true: every tool of the server

Each server runs as a child process for the service's lifetime. Its connection lives in a task of its
own, because the SDK's connection (anyio task groups) must be opened and closed in the same task.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genai_agent.toolkit import Tool, ToolContext

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class McpToolError(RuntimeError):
    """The MCP server reported the tool call as failed; the message is what it said."""


@dataclass(frozen=True)
class McpServerConfig:
    name: str
    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    approval: frozenset[str] | bool = frozenset()  # tool names, or True for all

    def needs_approval(self, tool: str) -> bool:
        return self.approval is True or (isinstance(self.approval, frozenset) and tool in self.approval)


def load_config(path: Path) -> list[McpServerConfig]:
    """Parse the servers file; a bad entry fails the start with a message that names it."""
    data = yaml.safe_load(path.read_text()) or {}
    servers = data.get("servers")
    if not isinstance(servers, dict) or not servers:
        raise ValueError(f"{path}: expected a non-empty 'servers' mapping")
    out = []
    for name, entry in servers.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{path}: server name {name!r} must be letters, digits, '_' or '-'")
        if not isinstance(entry, dict) or not isinstance(entry.get("command"), str):
            raise ValueError(f"{path}: servers.{name} needs a 'command' string")
        approval = entry.get("requires_approval", [])
        out.append(McpServerConfig(
            name=name,
            command=entry["command"].replace("{python}", sys.executable),
            args=tuple(str(a) for a in entry.get("args", [])),
            env={str(k): str(v) for k, v in (entry.get("env") or {}).items()},
            approval=True if approval is True else frozenset(approval or []),
        ))
    return out


def _text(result: Any) -> str:
    parts = [getattr(block, "text", None) for block in result.content]
    text = "\n".join(p for p in parts if p)
    if not text and result.structured_content is not None:
        text = str(result.structured_content)
    return text


class McpConnection:
    """One running MCP server and the tools it offers."""

    def __init__(self, config: McpServerConfig, call_timeout: float) -> None:
        self.config = config
        self._timeout = call_timeout
        self._client: Any = None
        self._ready: asyncio.Future[list[Any]] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> list[Tool]:
        self._ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._serve(), name=f"mcp-{self.config.name}")
        listed = await self._ready
        return [self._tool(t) for t in listed]

    async def _serve(self) -> None:
        from mcp import Client, StdioServerParameters  # imported lazily: only deployments with MCP servers need it

        assert self._ready is not None
        params = StdioServerParameters(command=self.config.command, args=list(self.config.args),
                                       env={**_default_env(), **self.config.env})
        try:
            async with Client(params, read_timeout_seconds=self._timeout) as client:
                self._client = client
                listed = await client.list_tools()
                self._ready.set_result(list(listed.tools))
                await self._stop.wait()
        except BaseException as exc:  # noqa: BLE001 - report to start(), or log if it was already up
            if not self._ready.done():
                self._ready.set_exception(RuntimeError(f"MCP server {self.config.name!r} failed to start: {exc}"))
            elif not isinstance(exc, asyncio.CancelledError):
                logger.error("MCP server %s stopped: %s", self.config.name, exc)
        finally:
            self._client = None

    def _tool(self, listed: Any) -> Tool:
        remote = listed.name
        name = f"{self.config.name}_{remote}"

        async def run(args: dict[str, Any], _: ToolContext) -> str:
            if self._client is None:
                raise McpToolError(f"the MCP server {self.config.name!r} is not running")
            result = await self._client.call_tool(remote, args)
            text = _text(result)
            if result.is_error:
                raise McpToolError(text or f"{remote} failed")
            return text

        schema = dict(getattr(listed, "input_schema", None) or {"type": "object", "properties": {}})
        schema.pop("title", None)
        return Tool(name, listed.description or remote, schema, run, provider=f"mcp:{self.config.name}",
                    requires_approval=self.config.needs_approval(remote))

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)


def _default_env() -> dict[str, str]:
    from mcp.client.stdio import get_default_environment

    return get_default_environment()


class McpServers:
    """Every configured MCP server: ``start`` launches them and returns their tools; ``close`` stops them."""

    def __init__(self, configs: list[McpServerConfig], call_timeout: float) -> None:
        self._connections = [McpConnection(c, call_timeout) for c in configs]

    async def start(self) -> list[Tool]:
        tools: list[Tool] = []
        for connection in self._connections:
            started = await connection.start()
            tools.extend(started)
            logger.info("MCP server %s: %d tools", connection.config.name, len(started))
        return tools

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._connections))
