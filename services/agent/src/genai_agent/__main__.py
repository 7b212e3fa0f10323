"""Composition root: settings once; open the store, start the MCP servers, build the domain; serve."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from genai_core.deferred import Deferred
from genai_core.downstream import Downstream
from genai_core.server import run_service

from genai_agent.assembly import Domain, build_domain
from genai_agent.clients import InferenceChat, RetrievalClient, TokenizerClient
from genai_agent.mcptools import McpServers, load_config
from genai_agent.persistence import Store, open_store
from genai_agent.servicer import service_spec
from genai_agent.settings import NAME, PREFIX, Settings
from genai_agent.standard_tools import HttpPolicy, ToolDeps, standard_tools
from genai_agent.toolkit import Toolbox


@dataclass
class Opened:
    """What ``ready`` opened, for ``close`` to release (whatever got opened before a failure)."""

    downstream: Downstream | None = None
    mcp: McpServers | None = None
    store: Store | None = None
    domain: Domain | None = None


def main() -> None:
    settings = Settings.from_env(os.environ)
    s = settings.agent
    domain: Deferred[Domain] = Deferred("agent store")
    opened = Opened()

    async def ready() -> None:
        downstream = opened.downstream = Downstream(settings.downstream, caller_prefix=PREFIX)
        retrieval = RetrievalClient(downstream)
        policy = HttpPolicy(s.http_allow, s.http_timeout, s.http_max_bytes)
        tools = standard_tools(ToolDeps(retrieval, TokenizerClient(downstream), policy))
        if s.mcp_servers is not None:
            opened.mcp = McpServers(load_config(s.mcp_servers), s.tool_timeout)
            tools += await opened.mcp.start()
        opened.store = await open_store(s.data_dir, s.postgres_dsn)
        opened.domain = await build_domain(opened.store, Toolbox(tools), InferenceChat(downstream), retrieval, s)
        domain.set(opened.domain)

    async def close() -> None:
        if opened.domain is not None:
            await opened.domain.runs.close()
        if opened.store is not None:
            await opened.store.close()
        if opened.mcp is not None:
            await opened.mcp.close()
        if opened.downstream is not None:
            await opened.downstream.close()

    asyncio.run(run_service(settings.server, NAME, [service_spec(domain)], ready=ready, close=close))


if __name__ == "__main__":
    main()
