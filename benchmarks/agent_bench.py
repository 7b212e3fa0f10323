"""Agent benchmark (make bench-agent): the task set of benchmarks/agent_tasks.yaml run (a) through the agent
service (langgraph-sdk -> gateway /langgraph -> agent service, built-in ``react`` assistant) and (b) by a
plain in-process LangGraph agent (langchain-openai ``ChatOpenAI`` pointed at the gateway's /v1), on the same
tasks, model and tools in the same run, task by task in turn.

Both agents follow the same tool policy, the one the built-in react assistant uses for SmolLM2: the first
model call must call a tool (constrained JSON), after one round of tools the model answers from what the
tools said. Both use the same tool code (``genai_agent.standard_tools``; the reference reaches retrieval and
the tokenizer through the gateway's HTTP routes).

Reported: success rate (the answer contains an expected string), steps, p50/p95 run time, and the agent
service's own overhead = run time - model time - tool time, as the service measures it (``RunTimings``) and
as the client sees it (client wall time - the service's model and tool time). Results go to stdout and
benchmarks/results/agent.md.

    python benchmarks/agent_bench.py [--limit N] [--engine torch|onnxruntime] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_services import REPO, Service, free_port, serving  # noqa: E402
from genai_core.services import SERVICES  # noqa: E402

TENANT = "bench"
COLLECTION = "facts"
MODEL = "smollm2-135m-instruct"


@dataclass
class Outcome:
    task: str
    kind: str
    ok: bool
    seconds: float
    steps: int
    model_s: float
    tool_s: float
    service_s: float = 0.0  # the agent service's own total (RunTimings.total_duration); service side only
    answer: str = ""
    tools: list[str] = field(default_factory=list)


def succeeded(answer: str, expect: Sequence[str]) -> bool:
    text = re.sub(r"(?<=\d),(?=\d{3})", "", answer).lower()
    return any(e.lower() in text for e in expect)


def seconds(duration: str | None) -> float:
    return float(duration.rstrip("s")) if duration else 0.0


# -- the suite ------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def suite(engine: str, work: Path) -> AsyncIterator[str]:
    """Every service and the gateway as their own processes on free ports; yields the gateway URL."""
    cache = str(REPO / "var" / "cache")
    async with contextlib.AsyncExitStack() as stack:
        tok = await stack.enter_async_context(serving("genai_tokenizer", "TOKENIZER", cache_dir=cache,
                                                      data_dir=str(work / "tokenizer")))
        inf = await stack.enter_async_context(serving("genai_inference", "INFERENCE", cache_dir=cache, engine=engine,
                                                      data_dir=str(work / "inference")))
        emb = await stack.enter_async_context(serving("genai_embedding", "EMBEDDING", cache_dir=cache))
        ret = await stack.enter_async_context(serving(
            "genai_retrieval", "RETRIEVAL", data_dir=str(work / "retrieval"), embedding_target=emb.target,
            inference_target=inf.target, tokenizer_target=tok.target))
        agent = await stack.enter_async_context(serving(
            "genai_agent", "AGENT", data_dir=str(work / "agent"), inference_target=inf.target,
            retrieval_target=ret.target, tokenizer_target=tok.target))
        port = free_port()
        env = {**os.environ, "GENAI_GATEWAY_PORT": str(port), "GENAI_LOG_LEVEL": "WARNING",
               "GENAI_GATEWAY_REQUEST_TIMEOUT": "600",
               **{f"GENAI_GATEWAY_{n.upper()}_TARGET": "" for n in SERVICES},  # only those started below
               **{f"GENAI_GATEWAY_{n.upper()}_TARGET": s.target for n, s in
                  {"tokenizer": tok, "inference": inf, "embedding": emb, "retrieval": ret, "agent": agent}.items()}}
        gateway = Service(subprocess.Popen([sys.executable, "-m", "genai_gateway"], env=env, cwd=REPO),
                          f"127.0.0.1:{port}")
        stack.callback(lambda: (gateway.proc.terminate(), gateway.proc.wait(30)))
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as http:
            for _ in range(240):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.5)
            else:
                raise TimeoutError("the gateway did not become ready")
        yield url


async def seed(url: str, docs: list[dict[str, str]]) -> None:
    headers = {"X-Tenant": TENANT}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        (await http.post("/v1/collections", json={"name": COLLECTION})).raise_for_status()
        documents = [{"id": d["id"], "text": d["text"], "content_type": "text/markdown"} for d in docs]
        (await http.post(f"/v1/collections/{COLLECTION}/documents", json={"documents": documents})).raise_for_status()


# -- (a) the agent service ------------------------------------------------------------------------------------


async def run_service(url: str, client: Any, task: dict[str, Any]) -> Outcome:
    thread = await client.threads.create()
    started = time.perf_counter()
    values = await client.runs.wait(thread["thread_id"], "react", config={"configurable": {"collection": COLLECTION}},
                                    input={"messages": [{"role": "user", "content": task["question"]}]},
                                    raise_error=False)
    elapsed = time.perf_counter() - started
    (run,) = await client.runs.list(thread["thread_id"])
    async with httpx.AsyncClient(base_url=url, headers={"X-Tenant": TENANT}) as http:
        native = (await http.get(f"/v1/agent/threads/{thread['thread_id']}/runs/{run['run_id']}")).json()
    timings = native.get("timings", {})
    messages = values.get("messages", [])
    answer = messages[-1]["content"] if messages and messages[-1]["type"] == "ai" else ""
    tools = [c["name"] for m in messages if m["type"] == "ai" for c in m.get("tool_calls", [])]
    return Outcome(task["id"], task["kind"], succeeded(answer, task["expect"]), elapsed, int(native.get("steps", 0)),
                   seconds(timings.get("model_duration")), seconds(timings.get("tool_duration")),
                   seconds(timings.get("total_duration")), answer, tools)


# -- (b) the plain in-process LangGraph agent ------------------------------------------------------------------


class HttpRetrieval:
    """The search tool's port over the gateway's retrieval route."""

    def __init__(self, url: str) -> None:
        self._http = httpx.AsyncClient(base_url=url, headers={"X-Tenant": TENANT}, timeout=120)

    async def search(self, tenant: str, collection: str, query: str, top_k: int) -> list[Any]:
        from genai_agent.types import SearchHit

        reply = await self._http.post(f"/v1/collections/{collection}/search", json={"query": query, "top_k": top_k})
        reply.raise_for_status()
        return [SearchHit(r["chunk"]["document_id"], r["chunk"]["chunk_id"], r["chunk"]["text"], r["score"])
                for r in reply.json()["data"]]

    async def answer_stream(self, *args: Any) -> Any:
        raise NotImplementedError


class HttpTokens:
    def __init__(self, url: str) -> None:
        self._http = httpx.AsyncClient(base_url=url, timeout=60)

    async def count(self, texts: Sequence[str], tokenizer: str = "") -> list[int]:
        reply = await self._http.post("/v1/tokens/count", json={"input": list(texts)})
        reply.raise_for_status()
        return reply.json()["counts"]


def reference_agent(url: str, system_prompt: str, tool_names: Sequence[str]) -> tuple[Any, dict[str, float]]:
    """A plain LangGraph tool-calling agent: ChatOpenAI against the gateway, the same tools in-process."""
    from genai_agent.graphs.react import facts_prompt
    from genai_agent.standard_tools import HttpPolicy, ToolDeps, standard_tools
    from genai_agent.toolkit import ToolContext
    from genai_agent.types import AgentSpec
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
    from langchain_openai import ChatOpenAI
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import tools_condition

    tools = {t.name: t for t in standard_tools(ToolDeps(HttpRetrieval(url), HttpTokens(url), HttpPolicy()))
             if t.name in tool_names}
    schemas = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                 "parameters": t.parameters}} for t in tools.values()]
    model = ChatOpenAI(model=MODEL, base_url=f"{url}/v1", api_key="unused", temperature=0, max_tokens=256)
    meter = {"model_s": 0.0, "tool_s": 0.0}
    context = ToolContext(TENANT, AgentSpec(collection=COLLECTION))

    async def agent(state: MessagesState) -> dict[str, Any]:
        messages = state["messages"]
        called = any(isinstance(m, AIMessage) and m.tool_calls for m in messages)
        started = time.perf_counter()
        if called:  # one round of tools, then answer from what they said
            reply = await model.ainvoke([facts_prompt(messages)])
        else:
            bound = model.bind_tools(schemas, tool_choice="required")  # the service constrains the arguments anyway
            reply = await bound.ainvoke([SystemMessage(system_prompt), *messages])
        meter["model_s"] += time.perf_counter() - started
        return {"messages": [reply]}

    async def run_tools(state: MessagesState) -> dict[str, Any]:
        started = time.perf_counter()
        out = []
        for call in state["messages"][-1].tool_calls:
            try:
                content = await tools[call["name"]].run(call["args"], context)
            except Exception as exc:  # noqa: BLE001 - the error is the tool's result, as in the service
                content = f"Error: {exc}"
            out.append(ToolMessage(content=content, tool_call_id=call["id"], name=call["name"]))
        meter["tool_s"] += time.perf_counter() - started
        return {"messages": out}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", run_tools)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, ["tools", "__end__"])
    graph.add_edge("tools", "agent")
    compiled = graph.compile()

    async def run(question: str) -> tuple[dict[str, Any], int]:
        steps, final = 0, {}
        async for part in compiled.astream({"messages": [HumanMessage(question)]}, {"recursion_limit": 12},
                                           stream_mode=["updates", "values"]):
            kind, data = part
            if kind == "updates":
                steps += 1
            else:
                final = data
        return final, steps

    return run, meter


async def run_reference(run: Any, meter: dict[str, float], task: dict[str, Any]) -> Outcome:
    meter["model_s"] = meter["tool_s"] = 0.0
    started = time.perf_counter()
    try:
        final, steps = await run(task["question"])
    except Exception as exc:  # noqa: BLE001 - a failed run is a failed task
        final, steps = {"messages": []}, 0
        print(f"  reference {task['id']} failed: {exc}", flush=True)
    elapsed = time.perf_counter() - started
    messages = final.get("messages", [])
    answer = str(messages[-1].content) if messages and messages[-1].type == "ai" else ""
    tools = [c["name"] for m in messages if m.type == "ai" for c in m.tool_calls]
    return Outcome(task["id"], task["kind"], succeeded(answer, task["expect"]), elapsed, steps,
                   meter["model_s"], meter["tool_s"], answer=answer, tools=tools)


# -- report ---------------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(outcomes: list[Outcome]) -> dict[str, float]:
    times = [o.seconds for o in outcomes]
    return {"success": sum(o.ok for o in outcomes) / len(outcomes), "steps": statistics.mean(o.steps for o in outcomes),
            "p50": pct(times, 0.5), "p95": pct(times, 0.95), "mean": statistics.mean(times),
            "model": statistics.mean(o.model_s for o in outcomes), "tool": statistics.mean(o.tool_s for o in outcomes)}


def overhead(outcomes: list[Outcome], *, client_side: bool) -> tuple[float, float]:
    """Mean share of run time and mean ms per step that is neither model nor tool time."""
    shares, per_step = [], []
    for o in outcomes:
        total = o.seconds if client_side else o.service_s
        rest = max(0.0, total - o.model_s - o.tool_s)
        shares.append(rest / total if total else 0.0)
        per_step.append(1000 * rest / max(o.steps, 1))
    return statistics.mean(shares), statistics.mean(per_step)


def report(service: list[Outcome], reference: list[Outcome], engine: str) -> str:
    a, b = summary(service), summary(reference)
    in_share, in_step = overhead(service, client_side=False)
    e2e_share, e2e_step = overhead(service, client_side=True)
    ref_share, ref_step = overhead(reference, client_side=True)
    lines = [
        "# Agent benchmark (make bench-agent)\n",
        f"{len(service)} tasks from benchmarks/agent_tasks.yaml, model {MODEL} on the inference service "
        f"(engine {engine}), built-in react policy on both sides; measured on this machine in one run.\n",
        "| | success | mean steps | p50 s | p95 s | mean s | model s (mean) | tool s (mean) |",
        "|---|---|---|---|---|---|---|---|",
        f"| (a) agent service via langgraph-sdk | {a['success']:.0%} | {a['steps']:.1f} | {a['p50']:.2f} | {a['p95']:.2f} "
        f"| {a['mean']:.2f} | {a['model']:.2f} | {a['tool']:.3f} |",
        f"| (b) in-process LangGraph + ChatOpenAI | {b['success']:.0%} | {b['steps']:.1f} | {b['p50']:.2f} | "
        f"{b['p95']:.2f} | {b['mean']:.2f} | {b['model']:.2f} | {b['tool']:.3f} |",
        "",
        f"Same final answer on both sides: {sum(x.answer.strip() == y.answer.strip() for x, y in zip(service, reference, strict=True))}"
        f"/{len(service)} tasks.",
        "",
        "By kind (success a / b):",
        "",
    ]
    for kind in sorted({o.kind for o in service}):
        sa = [o for o in service if o.kind == kind]
        sb = [o for o in reference if o.kind == kind]
        lines.append(f"- {kind}: {sum(o.ok for o in sa)}/{len(sa)} vs {sum(o.ok for o in sb)}/{len(sb)}")
    lines += [
        "",
        "Overhead (run time - model time - tool time):",
        "",
        f"- agent service, measured inside it (LangGraph + the run manager + event recording): {in_share:.1%} of run "
        f"time, {in_step:.1f} ms per step",
        f"- agent service as the client sees it (plus gateway, HTTP, SSE, thread/run records): {e2e_share:.1%} of run "
        f"time, {e2e_step:.1f} ms per step",
        f"- in-process reference (LangGraph + ChatOpenAI's HTTP client): {ref_share:.1%} of run time, "
        f"{ref_step:.1f} ms per step",
        "",
        "Targets: success >= the in-process reference; overhead < 5 % of run time and < 20 ms per step.",
    ]
    return "\n".join(lines) + "\n"


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N tasks")
    parser.add_argument("--engine", default="torch", help="the inference service's engine")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "agent.md"))
    args = parser.parse_args(argv)
    from langgraph_sdk import get_client

    spec = yaml.safe_load((REPO / "benchmarks" / "agent_tasks.yaml").read_text())
    tasks = spec["tasks"][: args.limit or None]
    import tempfile

    with tempfile.TemporaryDirectory(prefix="agent-bench-") as work:
        async with suite(args.engine, Path(work)) as url:
            await seed(url, spec["collection"])
            client = get_client(url=f"{url}/langgraph", headers={"X-Tenant": TENANT}, timeout=600)
            react = await client.assistants.get("react")
            run, meter = reference_agent(url, react["context"]["system_prompt"], react["context"]["tools"])
            await run_service(url, client, tasks[0])  # warm-up, not counted
            await run_reference(run, meter, tasks[0])
            service, reference = [], []
            for task in tasks:
                service.append(await run_service(url, client, task))
                reference.append(await run_reference(run, meter, task))
                a, b = service[-1], reference[-1]
                print(f"{task['id']:9} service {'ok ' if a.ok else 'no '} {a.seconds:5.2f}s {a.tools} | "
                      f"reference {'ok ' if b.ok else 'no '} {b.seconds:5.2f}s {b.tools}", flush=True)
    text = report(service, reference, args.engine)
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
