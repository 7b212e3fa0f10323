"""The PostgreSQL backend (langgraph-checkpoint-postgres and the records tables) against a real PostgreSQL
server that the test starts on a free local port and stops."""

from __future__ import annotations

import pytest
from genai_agent.types import AgentSpec, Command, Page, RunSpec, RunStatus, StateValues, ThreadStatus
from genai_core.testing import postgres_server
from langchain_core.messages import HumanMessage, ToolMessage

from services.agent.tests.conftest import open_harness
from services.agent.tests.fakes import call

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dsn():
    with postgres_server() as url:
        yield url


async def test_threads_runs_and_an_approval_survive_a_restart_on_postgres(dsn, tmp_path):
    h = await open_harness(tmp_path, dsn=dsn)
    assert h.store.kind == "postgres"
    spec = AgentSpec(tools=("calculator",), approval_tools=("calculator",), first_tool_choice="required")
    await h.domain.assistants.create("acme", graph_id="react", spec=spec, name="careful", metadata={"team": "ops"})
    thread = await h.domain.threads.create("acme", metadata={"user": "u1", "n": 3})
    h.chat.script = [call("calculator", expression="7*6")]
    first = await h.domain.runs.create("acme", RunSpec("careful", thread.thread_id,
                                                       StateValues((HumanMessage("7*6?"),))))
    run, values = await h.domain.runs.wait("acme", thread.thread_id, first.run_id)
    assert run.status is RunStatus.INTERRUPTED and values.interrupts[0].approval is not None
    await h.domain.runs.close()
    await h.store.close()

    h2 = await open_harness(tmp_path / "other", dsn=dsn)  # another process: everything comes from PostgreSQL
    try:
        assert (await h2.domain.threads.get("acme", thread.thread_id)).status is ThreadStatus.INTERRUPTED
        found, total = await h2.domain.threads.search("acme", Page(), metadata={"user": "u1", "n": 3})
        assert total == 1 and found[0].thread_id == thread.thread_id
        assert (await h2.domain.threads.search("acme", Page(), metadata={"n": "3"}))[1] == 0  # JSON types matter
        mine, _ = await h2.domain.assistants.search("acme", Page(), metadata={"team": "ops"})
        assert [a.name for a in mine] == ["careful"]
        h2.chat.script = ["42"]
        second = await h2.domain.runs.create("acme", RunSpec("careful", thread.thread_id,
                                                             command=Command("approve", True)))
        run, values = await h2.domain.runs.wait("acme", thread.thread_id, second.run_id)
        assert run.status is RunStatus.SUCCESS
        assert [m.content for m in values.messages if isinstance(m, ToolMessage)] == ["42"]
        history = await h2.domain.threads.history("acme", thread.thread_id, limit=100,
                                                  metadata={"run_id": second.run_id})
        assert history and all(s.metadata["run_id"] == second.run_id for s in history)
        runs = await h2.domain.runs.list("acme", thread.thread_id, Page())
        assert [r.status for r in runs] == [RunStatus.SUCCESS, RunStatus.INTERRUPTED]
        await h2.domain.runs.delete_thread("acme", thread.thread_id)
        assert await h2.domain.threads.find("acme", thread.thread_id) is None
        assert await h2.domain.runs._records.get_run("acme", first.run_id) is None
    finally:
        await h2.domain.runs.close()
        await h2.store.close()
