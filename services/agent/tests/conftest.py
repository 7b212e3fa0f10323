"""Fixtures: the agent domain on a temporary SQLite store with scripted fakes of the other services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from genai_agent.assembly import Domain, build_domain
from genai_agent.persistence import Store, open_store
from genai_agent.settings import AgentSettings
from genai_agent.standard_tools import HttpPolicy, ToolDeps, standard_tools
from genai_agent.toolkit import Toolbox

from services.agent.tests.fakes import FakeRetrieval, FakeTokens, ScriptedChat


@dataclass
class Harness:
    domain: Domain
    chat: ScriptedChat
    retrieval: FakeRetrieval
    store: Store


def toolbox(retrieval: FakeRetrieval, extra=(), allow: tuple[str, ...] = ()) -> Toolbox:
    deps = ToolDeps(retrieval, FakeTokens(), HttpPolicy(allow=allow, timeout=5))
    return Toolbox([*standard_tools(deps), *extra])


async def open_harness(data_dir: Path, *, extra_tools=(), dsn: str = "", **settings) -> Harness:
    chat, retrieval = ScriptedChat(), FakeRetrieval()
    store = await open_store(data_dir, dsn)
    config = AgentSettings(data_dir=data_dir, postgres_dsn=dsn, **settings)
    domain = await build_domain(store, toolbox(retrieval, extra_tools, config.http_allow), chat, retrieval, config)
    return Harness(domain, chat, retrieval, store)


@pytest.fixture
async def harness(tmp_path) -> AsyncIterator[Harness]:
    h = await open_harness(tmp_path)
    try:
        yield h
    finally:
        await h.domain.runs.close()
        await h.store.close()
