"""End to end: agents on the real suite (SmolLM2 on the inference service, retrieval over real embeddings),
driven by the unmodified langgraph-sdk (async and sync) and openai clients through the gateway.

SmolLM2-135M is a weak tool user: it calls the tool a turn forces (its arguments are constrained JSON) and
answers from what the tool said, but it does not chain two different tools in one turn. So the react
test uses one thread with two turns (calculator, then search); multi-tool turns are covered with a
scripted model in services/agent/tests. Assertions check what the agent did (tools called, results,
citations, statuses, traces), not the wording of the model's answers.
"""

from __future__ import annotations

import time

import grpc
import httpx
import pytest
from genai.agent.v1 import agent_service_pb2 as pb
from genai.agent.v1 import agent_service_pb2_grpc as pb_grpc
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import BadRequestError, NotFoundError

pytestmark = pytest.mark.e2e

TENANT = "agent-e2e"
DOCS = [
    {"id": "vienna.md", "text": "Vienna is the capital of Austria. It is famous for its coffee houses.",
     "content_type": "text/markdown"},
    {"id": "runbook.md", "text": "# Runbook\n\nRun make test to execute the whole test suite.",
     "content_type": "text/markdown"},
]
PARENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def kb(suite) -> str:
    headers = {"X-Tenant": TENANT}
    created = httpx.post(f"{suite.base_url}/v1/collections", headers=headers, json={"name": "kb"}, timeout=60)
    assert created.status_code == 201, created.text
    ingested = httpx.post(f"{suite.base_url}/v1/collections/kb/documents", headers=headers,
                          json={"documents": DOCS}, timeout=120)
    assert ingested.status_code == 200, ingested.text
    return "kb"


def client(suite, tenant: str = TENANT, **headers):
    return get_client(url=f"{suite.base_url}/langgraph", headers={"X-Tenant": tenant, **headers}, timeout=300)


def tools_called(values: dict) -> list[tuple[str, str]]:
    calls = {c["id"]: c["name"] for m in values["messages"] if m["type"] == "ai" for c in m["tool_calls"]}
    return [(calls.get(m["tool_call_id"], "?"), m["content"]) for m in values["messages"] if m["type"] == "tool"]


def wait_for_spans(suite, trace_id: str, services: set[str], names: set[str], timeout: float = 30) -> list:
    """The trace's spans once every service and every span name prefix has arrived (spans are exported
    in batches, the run's own span last)."""
    def complete(spans) -> bool:
        return services <= {s.service for s in spans} and all(any(s.name.startswith(n) for s in spans) for n in names)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not complete(suite.sink.spans(trace_id)):
        time.sleep(0.2)
    return suite.sink.spans(trace_id)


async def test_react_calls_the_calculator_then_search_in_one_thread_with_one_trace(suite, kb):
    lg = client(suite)
    thread = await lg.threads.create(metadata={"case": "react"})
    parts = [p async for p in lg.runs.stream(thread["thread_id"], "react", stream_mode=["values", "updates"],
                                             input={"messages": [{"role": "user", "content": "What is 37 * 91?"}]})]
    assert parts[0].event == "metadata" and parts[-1].event == "end"
    first = [p.data for p in parts if p.event == "values"][-1]
    assert tools_called(first) == [("calculator", "3367")]
    assert first["messages"][-1]["type"] == "ai" and first["messages"][-1]["content"].strip()

    trace_id = "6cf92f3577b34da6a3ce929d0e0e4738"
    traced = client(suite, traceparent=f"00-{trace_id}-{PARENT_SPAN}-01")
    # With the calculator turn in its history the model would pick the calculator again: this turn names
    # the tool to force (a run may override any spec field through configurable).
    second = await traced.runs.wait(thread["thread_id"], "react",
                                    config={"configurable": {"collection": kb, "first_tool_choice": "search"}},
                                    input={"messages": [{"role": "user", "content":
                                                         "What is the capital of Austria? Search the knowledge base."}]})
    called = tools_called(second)
    assert called[0] == ("calculator", "3367") and called[-1][0] == "search" and "Vienna" in called[-1][1]
    assert [m["type"] for m in second["messages"]].count("human") == 2
    runs = await lg.runs.list(thread["thread_id"])
    assert [r["status"] for r in runs] == ["success", "success"]

    # one trace: gateway -> agent -> inference (model calls) and retrieval -> embedding (the search tool)
    spans = wait_for_spans(suite, trace_id, {"gateway", "agent", "inference", "retrieval", "embedding"},
                           {"invoke_agent", "execute_tool search", "chat "})
    services = {s.service for s in spans}
    assert {"gateway", "agent", "inference", "retrieval", "embedding"} <= services, services
    names = {s.name for s in spans if s.service == "agent"}
    assert any(n.startswith("invoke_agent") for n in names) and "execute_tool search" in names, names
    assert any(n.startswith("chat ") for n in names), names
    by_id = {s.span_id: s for s in spans}
    search_server = next(s for s in spans if s.service == "retrieval" and s.name == "retrieval.Search")
    chain, seen = search_server, []
    while chain.parent_span_id in by_id:
        chain = by_id[chain.parent_span_id]
        seen.append((chain.service, chain.name))
    assert ("agent", "execute_tool search") in seen and chain.service == "gateway", seen
    assert chain.parent_span_id == PARENT_SPAN


async def test_rag_answers_with_citations(suite, kb):
    lg = client(suite)
    result = await lg.runs.wait(None, "rag", config={"configurable": {"collection": kb}},
                                input={"messages": [{"role": "user", "content": "What is the capital of Austria?"}]})
    answer = result["messages"][-1]
    assert answer["type"] == "ai" and answer["content"].strip()
    citations = answer["response_metadata"]["citations"]
    assert citations and citations[0]["document_id"] in {"vienna.md", "runbook.md"} and citations[0]["quote"]
    assert result["citations"] == citations
    assert result["contexts"] and {c["document_id"] for c in result["contexts"]} <= {"vienna.md", "runbook.md"}
    assert ("search", result["messages"][2]["content"]) in tools_called(result)


async def test_approval_then_restart_then_resume_with_a_failing_edit(suite):
    lg = client(suite)
    await lg.assistants.create(graph_id="react", name="careful", context={
        "tools": ["calculator"], "approval_tools": ["calculator"], "first_tool_choice": "calculator",
        "max_tool_rounds": 1})
    thread = await lg.threads.create()
    stopped = await lg.runs.wait(thread["thread_id"], "careful",
                                 input={"messages": [{"role": "user", "content": "What is 12 * 12?"}]})
    (interrupt,) = stopped["__interrupt__"]
    assert interrupt["value"]["type"] == "tool_approval"
    assert interrupt["value"]["tool_calls"][0]["name"] == "calculator"
    assert (await lg.threads.get(thread["thread_id"]))["status"] == "interrupted"

    took = suite.restart("agent")  # the interrupted run's state is in the checkpointer, not in the process
    assert took < 120
    assert (await lg.threads.get(thread["thread_id"]))["status"] == "interrupted"
    resumed = await lg.runs.wait(thread["thread_id"], "careful", command={"resume": {"decisions": [
        {"type": "edit", "args": {"expression": "1 / 0"}}]}})  # the edited call fails: the run goes on
    (name, content), = tools_called(resumed)
    assert name == "calculator" and "division by zero" in content
    tool = next(m for m in resumed["messages"] if m["type"] == "tool")
    assert tool["status"] == "error"
    assert resumed["messages"][-1]["type"] == "ai"
    runs = await lg.runs.list(thread["thread_id"])
    assert [r["status"] for r in runs] == ["success", "interrupted"]


async def test_cancel_mid_run_and_step_limit(suite):
    lg = client(suite)
    thread = await lg.threads.create()
    run = await lg.runs.create(thread["thread_id"], "react", stream_mode=["updates"],
                               input={"messages": [{"role": "user", "content": "What is 2 * 21?"}]})
    async for part in lg.runs.join_stream(thread["thread_id"], run["run_id"], stream_mode="updates"):
        if part.event == "updates":  # the first node finished: the run is mid-way
            await lg.runs.cancel(thread["thread_id"], run["run_id"], wait=True)
            break
    cancelled = await lg.runs.get(thread["thread_id"], run["run_id"])
    assert cancelled["status"] == "interrupted" and cancelled["cancel_reason"]
    assert (await lg.threads.get(thread["thread_id"]))["status"] == "idle"

    failed = await lg.runs.wait(None, "react", config={"recursion_limit": 2}, raise_error=False,
                                input={"messages": [{"role": "user", "content": "What is 3 * 3?"}]})
    assert failed["__error__"]["error"] == "STEP_LIMIT_REACHED"
    assert "step limit of 2" in failed["__error__"]["message"]


async def test_unknown_assistant_tool_and_thread(suite):
    lg = client(suite)
    with pytest.raises(NotFoundError):
        await lg.assistants.get("no-such-assistant")
    with pytest.raises(NotFoundError):
        await lg.threads.get_state("no-such-thread")
    with pytest.raises(NotFoundError):
        await lg.runs.create("no-such-thread", "react", input={"messages": []})
    with pytest.raises(BadRequestError) as bad:
        await lg.assistants.create(graph_id="react", name="bad", context={"tools": ["teleport"]})
    assert "unknown tool 'teleport'" in bad.value.response.text
    stream = httpx.post(f"{suite.base_url}/langgraph/runs/stream", json={"assistant_id": "react", "stream_mode": "debug"})
    assert stream.status_code == 501


async def test_mcp_tool_over_stdio(suite):
    lg = client(suite)
    tools = httpx.get(f"{suite.base_url}/v1/agent/tools").json()["data"]
    assert {t["name"]: t["provider"] for t in tools}["demo_convert_units"] == "mcp:demo"
    await lg.assistants.create(graph_id="react", name="units", context={
        "tools": ["demo_convert_units"], "first_tool_choice": "demo_convert_units", "max_tool_rounds": 1})
    result = await lg.runs.wait(None, "units", input={"messages": [{"role": "user", "content": "Convert 5 km to mi."}]})
    (name, content), = tools_called(result)
    assert name == "demo_convert_units" and content  # the MCP server answered (a conversion, or its own error)
    call = next(m for m in result["messages"] if m["type"] == "ai" and m["tool_calls"])["tool_calls"][0]
    assert set(call["args"]) == {"value", "from_unit", "to_unit"}  # constrained to the MCP tool's schema


async def test_tenants_are_isolated(suite):
    mine, theirs = client(suite, "tenant-a"), client(suite, "tenant-b")
    thread = await mine.threads.create(thread_id="same-id")
    await mine.assistants.create(graph_id="react", name="private", context={"tools": ["calculator"]})
    with pytest.raises(NotFoundError):
        await theirs.threads.get(thread["thread_id"])
    with pytest.raises(NotFoundError):
        await theirs.assistants.get("private")
    assert "private" not in [a["name"] for a in await theirs.assistants.search(limit=100)]
    other = await theirs.threads.create(thread_id="same-id")  # the same id is another thread
    assert other["thread_id"] == "same-id" and (await theirs.threads.get("same-id"))["metadata"] == {}


def test_sync_sdk_and_grpc(suite):
    lg = get_sync_client(url=f"{suite.base_url}/langgraph", timeout=300)
    result = lg.runs.wait(None, "react", input={"messages": [{"role": "user", "content": "What is 6 * 7?"}]})
    assert tools_called(result) == [("calculator", "42")]
    with grpc.insecure_channel(suite.targets["agent"]) as channel:
        info = pb_grpc.AgentServiceStub(channel).GetInfo(pb.GetInfoRequest(), timeout=10)
    assert info.engine == "langgraph" and info.checkpointer == "sqlite"
    assert list(info.graph_ids) == ["react", "rag", "plan_execute"]


def test_openai_clients_call_agents(suite):
    from openai import OpenAI

    openai = OpenAI(base_url=f"{suite.base_url}/v1", api_key="unused", timeout=300)
    assert {"agent:react", "agent:rag"} <= {m.id for m in openai.models.list().data}
    reply = openai.chat.completions.create(model="agent:react", messages=[{"role": "user", "content": "What is 5 * 5?"}])
    assert reply.choices[0].message.content.strip() and reply.usage.total_tokens > 0
    pieces = [c.choices[0].delta.content or "" for c in openai.chat.completions.create(
        model="agent:react", stream=True, messages=[{"role": "user", "content": "What is 5 * 5?"}]) if c.choices]
    assert "".join(pieces).strip()
