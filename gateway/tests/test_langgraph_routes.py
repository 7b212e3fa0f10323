"""The LangGraph Agent Server API, native agent routes and the OpenAI hook, driven by the unmodified
langgraph-sdk (async and sync) and openai clients over real HTTP; the agent service runs in-process with a
scripted model (the real model and services run in tests/e2e)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from genai_core.deferred import Deferred
from genai_core.testing import running_server
from genai_gateway.settings import GatewaySettings
from genai_gateway.testing import serve_gateway
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import ConflictError, NotFoundError
from openai import AsyncOpenAI

from services.agent.tests.conftest import Harness, open_harness
from services.agent.tests.fakes import call

pytest_plugins = ["gateway.tests.fake_inference"]  # /v1/models lists the inference service's models too


@pytest.fixture(scope="module")
async def agent(tmp_path_factory) -> AsyncIterator[tuple[Harness, str]]:
    from genai_agent.servicer import service_spec

    harness = await open_harness(tmp_path_factory.mktemp("agent"))
    domain = Deferred("agent")
    domain.set(harness.domain)
    async with running_server([service_spec(domain)]) as (server, _):
        yield harness, f"127.0.0.1:{server.port}"
    await harness.domain.runs.close()
    await harness.store.close()


@pytest.fixture(scope="module")
async def gateway(agent, inference_target) -> AsyncIterator[str]:
    async with serve_gateway(GatewaySettings(targets={"agent": agent[1], "inference": inference_target})) as url:
        yield url


@pytest.fixture
def chat(agent):
    harness = agent[0]
    harness.chat.script.clear()
    harness.chat.delay = 0.0
    harness.chat.requests.clear()
    return harness.chat


async def test_assistants_and_threads(gateway):
    client = get_client(url=f"{gateway}/langgraph")
    found = await client.assistants.search(limit=10)
    assert sorted(a["name"] for a in found) == ["plan_execute", "rag", "react"]
    react = await client.assistants.get("react")  # a graph id resolves to its default assistant
    assert react["graph_id"] == "react" and react["context"]["tools"][0] == "calculator"
    assert react["metadata"]["created_by"] == "system" and react["version"] == 1
    made = await client.assistants.create(graph_id="react", name="calc-lg", context={
        "tools": ["calculator"], "approval_tools": ["calculator"], "system_prompt": "Compute."},
        config={"recursion_limit": 8}, metadata={"team": "a"})
    assert made["config"]["recursion_limit"] == 8 and made["context"]["approval_tools"] == ["calculator"]
    updated = await client.assistants.update(made["assistant_id"], context={"system_prompt": "Compute fast."})
    assert updated["version"] == 2 and updated["context"]["tools"] == ["calculator"]
    assert await client.assistants.count(metadata={"team": "a"}) == 1
    with pytest.raises(NotFoundError):
        await client.assistants.get("nobody")

    thread = await client.threads.create(metadata={"user": "u1"})
    assert thread["status"] == "idle" and thread["metadata"] == {"user": "u1"}
    got = await client.threads.get(thread["thread_id"])
    assert got["thread_id"] == thread["thread_id"] and got["values"] == {"messages": []}
    await client.threads.update(thread["thread_id"], metadata={"tag": "x"})
    searched = await client.threads.search(metadata={"user": "u1"})
    assert [t["thread_id"] for t in searched] == [thread["thread_id"]] and searched[0]["metadata"]["tag"] == "x"
    assert await client.threads.count(metadata={"user": "u1"}) == 1
    state = await client.threads.get_state(thread["thread_id"])
    assert state["values"] == {"messages": []} and state["next"] == []
    await client.threads.delete(thread["thread_id"])
    with pytest.raises(NotFoundError):
        await client.threads.get(thread["thread_id"])


async def test_stream_modes_as_the_sdk_parses_them(gateway, chat):
    client = get_client(url=f"{gateway}/langgraph")
    thread = await client.threads.create()
    chat.script.extend([call("calculator", expression="2+3"), "It is five."])
    parts = [p async for p in client.runs.stream(
        thread["thread_id"], "react", input={"messages": [{"role": "user", "content": "2+3?"}]},
        stream_mode=["values", "updates", "messages-tuple"])]
    events = [p.event for p in parts]
    assert events[0] == "metadata" and events[-1] == "end"
    assert parts[0].data["run_id"] and parts[0].data["attempt"] == 1
    assert {"values", "updates", "messages"} <= set(events)
    assert all(p.id for p in parts[1:])  # every event can be rejoined from
    final = [p.data for p in parts if p.event == "values"][-1]
    assert [m["type"] for m in final["messages"]] == ["human", "ai", "tool", "ai"]
    assert final["messages"][1]["tool_calls"][0] == {"name": "calculator", "args": {"expression": "2+3"},
                                                     "id": final["messages"][1]["tool_calls"][0]["id"],
                                                     "type": "tool_call"}
    assert final["messages"][2]["content"] == "5" and final["messages"][2]["status"] == "success"
    updates = [p.data for p in parts if p.event == "updates"]
    assert [list(u) for u in updates] == [["agent"], ["tools"], ["agent"]]
    tuples = [p.data for p in parts if p.event == "messages"]
    chunks = [m for m, meta in tuples if m["type"] == "AIMessageChunk"]
    assert "".join(m["content"] for m in chunks) == "It is five."
    assert all(meta["langgraph_node"] in ("agent", "tools") and meta["run_id"] == parts[0].data["run_id"]
               for _, meta in tuples)
    assert any(m["type"] == "tool" for m, _ in tuples)  # whole messages a node added

    chat.script.append("Sure.")
    legacy = [p async for p in client.runs.stream(thread["thread_id"], "react", stream_mode="messages",
                                                   input={"messages": [{"role": "user", "content": "thanks"}]},
                                                   config={"configurable": {"first_tool_choice": "auto"}})]
    names = [p.event for p in legacy]
    assert "messages/metadata" in names and "messages/partial" in names and "messages/complete" in names
    assert [p.data for p in legacy if p.event == "messages/complete"][-1][0]["content"] == "Sure."
    history = await client.threads.get_history(thread["thread_id"], limit=3)
    assert len(history) == 3 and history[0]["checkpoint"]["thread_id"] == thread["thread_id"]
    assert history[0]["metadata"]["graph_id"] == "react"


async def test_wait_create_join_list_get(gateway, chat):
    client = get_client(url=f"{gateway}/langgraph")
    chat.script.extend([call("calculator", expression="6*7"), "42."])
    stateless = await client.runs.wait(None, "react", input={"messages": [{"role": "user", "content": "6*7"}]})
    assert stateless["messages"][-1]["content"] == "42."
    thread = await client.threads.create()
    chat.script.extend([call("calculator", expression="1+1"), "two"])
    run = await client.runs.create(thread["thread_id"], "react", input={"messages": [{"role": "user", "content": "1+1"}]},
                                   metadata={"batch": 7})
    assert run["status"] in ("pending", "running") and run["metadata"] == {"batch": 7}
    joined = await client.runs.join(thread["thread_id"], run["run_id"])
    assert joined["messages"][-1]["content"] == "two"
    got = await client.runs.get(thread["thread_id"], run["run_id"])
    assert got["status"] == "success" and got["multitask_strategy"] == "reject"
    listed = await client.runs.list(thread["thread_id"])
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    replayed = [p async for p in client.runs.join_stream(thread["thread_id"], run["run_id"], stream_mode="values")]
    assert replayed[-1].event == "end" and replayed[-2].data["messages"][-1]["content"] == "two"
    assert (await client.runs.list(thread["thread_id"], status="error")) == []


async def test_interrupt_and_resume_with_command(gateway, chat):
    client = get_client(url=f"{gateway}/langgraph")
    await client.assistants.create(graph_id="react", name="careful-lg", context={
        "tools": ["calculator"], "approval_tools": ["calculator"], "first_tool_choice": "required"})
    thread = await client.threads.create()
    chat.script.extend([call("calculator", expression="9*9"), "81!"])
    parts = [p async for p in client.runs.stream(thread["thread_id"], "careful-lg", stream_mode=["values", "updates"],
                                                  input={"messages": [{"role": "user", "content": "9*9"}]})]
    interrupt = [p.data for p in parts if p.event == "values"][-1]["__interrupt__"][0]
    assert interrupt["value"]["type"] == "tool_approval"
    assert interrupt["value"]["tool_calls"][0]["args"] == {"expression": "9*9"}
    assert any(p.event == "updates" and "__interrupt__" in p.data for p in parts)
    got = await client.threads.get(thread["thread_id"])
    assert got["status"] == "interrupted" and list(got["interrupts"].values())[0][0]["id"] == interrupt["id"]
    state = await client.threads.get_state(thread["thread_id"])
    assert state["next"] == ["tools"] and state["interrupts"][0]["id"] == interrupt["id"]
    assert (await client.runs.list(thread["thread_id"]))[0]["status"] == "interrupted"
    with pytest.raises(httpx.HTTPStatusError) as failed:
        await client.runs.wait(thread["thread_id"], "careful-lg", command={"resume": {"type": "maybe"}})
    assert failed.value.response.status_code == 400
    done = await client.runs.wait(thread["thread_id"], "careful-lg", command={"resume": {interrupt["id"]: "approve"}})
    assert done["messages"][-1]["content"] == "81!" and done["messages"][-2]["content"] == "81"


async def test_busy_thread_cancel_and_errors(gateway, chat):
    client = get_client(url=f"{gateway}/langgraph")
    thread = await client.threads.create()
    chat.delay = 0.05
    chat.script.extend([call("calculator", expression="1"), "word " * 200])
    run = await client.runs.create(thread["thread_id"], "react", input={"messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(ConflictError):
        await client.runs.create(thread["thread_id"], "react", input={"messages": [{"role": "user", "content": "y"}]})
    await client.runs.cancel(thread["thread_id"], run["run_id"], wait=True)
    cancelled = await client.runs.get(thread["thread_id"], run["run_id"])
    assert cancelled["status"] == "interrupted" and cancelled["cancel_reason"]
    with pytest.raises(httpx.HTTPStatusError) as missing:  # runs.wait raises httpx's error, not a typed one
        await client.runs.wait(thread["thread_id"], "ghost", input={"messages": []})
    assert missing.value.response.status_code == 404
    with pytest.raises(NotFoundError):
        await client.runs.create("no-such-thread", "react", input={"messages": []})
    chat.delay = 0.0
    chat.script.extend([call("calculator", expression="1") for _ in range(10)])
    failed = await client.runs.wait(None, "react", input={"messages": [{"role": "user", "content": "loop"}]},
                                    config={"recursion_limit": 3, "configurable": {"max_tool_rounds": 0}},
                                    raise_error=False)
    assert failed["__error__"]["error"] == "STEP_LIMIT_REACHED" and "step limit of 3" in failed["__error__"]["message"]
    async with httpx.AsyncClient(base_url=f"{gateway}/langgraph") as http:
        bad = await http.post("/runs/stream", json={"assistant_id": "react", "stream_mode": "events", "input": {}})
        assert bad.status_code == 501 and bad.json()["error"]["param"] == "stream_mode"
        rollback = await http.post(f"/threads/{thread['thread_id']}/runs/{run['run_id']}/cancel?action=rollback")
        assert rollback.status_code == 501


async def test_rejoin_with_last_event_id(gateway, chat):
    chat.script.extend([call("calculator", expression="3+4"), "seven"])
    async with httpx.AsyncClient(base_url=f"{gateway}/langgraph", timeout=30) as http:
        thread = (await http.post("/threads", json={})).json()
        body = {"assistant_id": "react", "stream_mode": ["values"], "on_disconnect": "continue",
                "input": {"messages": [{"role": "user", "content": "3+4"}]}}
        async with http.stream("POST", f"/threads/{thread['thread_id']}/runs/stream", json=body) as reply:
            assert reply.headers["content-type"].startswith("text/event-stream")
            location, content_location = reply.headers["location"], reply.headers["content-location"]
            assert "/langgraph/threads/" in content_location and location.startswith(content_location + "/stream")
            seen = []
            async for line in reply.aiter_lines():
                if line.startswith("id: "):
                    seen.append(int(line[4:]))
                    if len(seen) == 2:
                        break  # the connection drops here
        rejoined = []
        async with http.stream("GET", location, headers={"Last-Event-ID": str(seen[-1])}) as reply:
            async for line in reply.aiter_lines():
                if line.startswith("id: "):
                    rejoined.append(int(line[4:]))
        assert rejoined[0] > seen[-1] and rejoined == sorted(rejoined)  # nothing lost, nothing repeated
        run_id = content_location.rsplit("/", 1)[1]
        done = (await http.get(f"/threads/{thread['thread_id']}/runs/{run_id}")).json()
        assert done["status"] == "success"


async def test_sync_client(gateway, chat):
    chat.script.extend([call("calculator", expression="10/4"), "2.5"])

    def use_sync() -> list:
        client = get_sync_client(url=f"{gateway}/langgraph")
        thread = client.threads.create()
        parts = list(client.runs.stream(thread["thread_id"], "react", stream_mode="updates",
                                        input={"messages": [{"role": "user", "content": "10/4"}]}))
        return parts, client.threads.get_state(thread["thread_id"])

    parts, state = await asyncio.to_thread(use_sync)
    assert [p.event for p in parts][0] == "metadata" and parts[-1].event == "end"
    assert state["values"]["messages"][-1]["content"] == "2.5"


async def test_native_routes_and_tenants(gateway, chat):
    async with httpx.AsyncClient(base_url=gateway) as http:
        tools = (await http.get("/v1/agent/tools")).json()["data"]
        assert {t["name"] for t in tools} >= {"calculator", "search", "http_get"}
        assert next(t for t in tools if t["name"] == "http_get")["requires_approval"] is True
        assert (await http.get("/v1/agent/tools", params={"assistant_id": "rag"})).json()["data"][0]["name"] == "search"
        info = (await http.get("/v1/agent/info")).json()
        assert info["engine"] == "langgraph" and info["checkpointer"] == "sqlite"
        chat.script.extend([call("calculator", expression="2*2"), "4"])
        mine = get_client(url=f"{gateway}/langgraph", headers={"X-Tenant": "acme"})
        thread = await mine.threads.create()
        await mine.runs.wait(thread["thread_id"], "react", input={"messages": [{"role": "user", "content": "2*2"}]})
        points = (await http.get(f"/v1/agent/threads/{thread['thread_id']}/checkpoints",
                                 headers={"X-Tenant": "acme"})).json()["data"]
        assert points and "values" not in points[0] and points[0]["checkpoint"]["checkpoint_id"]
        one = (await http.get(f"/v1/agent/threads/{thread['thread_id']}/checkpoints/"
                              f"{points[-1]['checkpoint']['checkpoint_id']}", headers={"X-Tenant": "acme"})).json()
        assert one["checkpoint"]["checkpoint_id"] == points[-1]["checkpoint"]["checkpoint_id"]
        other = await http.get(f"/v1/agent/threads/{thread['thread_id']}/checkpoints", headers={"X-Tenant": "globex"})
        assert other.status_code == 404
        with pytest.raises(NotFoundError):
            await get_client(url=f"{gateway}/langgraph", headers={"X-Tenant": "globex"}).threads.get(thread["thread_id"])


async def test_openai_hook(gateway, chat):
    client = AsyncOpenAI(base_url=f"{gateway}/v1", api_key="unused")
    models = [m.id async for m in client.models.list()]
    assert {"agent:react", "agent:rag", "agent:plan_execute"} <= set(models)
    chat.script.extend([call("calculator", expression="8*8"), "It is 64."])
    reply = await client.chat.completions.create(model="agent:react", messages=[{"role": "user", "content": "8*8?"}])
    assert reply.choices[0].message.content == "It is 64." and reply.model == "agent:react"
    assert reply.usage.total_tokens == 26
    chat.script.extend([call("calculator", expression="9*9"), "It is 81."])
    stream = await client.chat.completions.create(model="agent:react", stream=True,
                                                  stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": "9*9?"}])
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        else:
            usage = chunk.usage
    assert text == "It is 81." and usage.total_tokens == 26
    card = await client.models.retrieve("agent:rag")
    assert card.owned_by == "agent"
    with pytest.raises(Exception) as failed:
        await client.chat.completions.create(model="agent:nobody", messages=[{"role": "user", "content": "x"}])
    assert getattr(failed.value, "status_code", None) == 404
