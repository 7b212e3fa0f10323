"""``plan_execute``: plan the task as a few steps, run each step with a ``react`` sub-agent (a compiled
subgraph, so its tool calls, approvals and checkpoints work as they do on their own), then answer from
the steps' results.

What LangGraph adds here: the sub-agent is a graph inside a node, the plan and the results so far are
checkpointed after every step (a crash or an approval pause resumes at the step it was at), and the
step limit bounds the whole tree.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.runtime import Runtime

from genai_agent.graphs import react
from genai_agent.graphs.nodes import RunContext, call_model, parse_json

DEFAULT_PLAN_STEPS = 3
PLAN_PROMPT = ("Break the user's task into at most {n} short, concrete steps that together solve it. Each step "
               "is one instruction. Reply with JSON: {{\"steps\": [\"...\"]}}.")
STEP_PROMPT = "Overall task: {task}\n\nDo only this step and reply with its result: {step}"
RESPOND_PROMPT = "Answer the user's task using the results of the steps below. Be brief."


class PlanState(MessagesState):
    task: str
    plan: list[str]
    past_steps: list[dict[str, str]]


def _plan_schema(n: int) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["steps"], "properties": {
        "steps": {"type": "array", "minItems": 1, "maxItems": n, "items": {"type": "string", "maxLength": 200}}}}


async def planner_node(state: PlanState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    n = ctx.spec.max_plan_steps or DEFAULT_PLAN_STEPS
    task = str(next(m.content for m in reversed(state["messages"]) if isinstance(m, HumanMessage)))
    reply = await call_model(ctx, [SystemMessage(PLAN_PROMPT.format(n=n)), HumanMessage(task)],
                             schema=_plan_schema(n), stream=False)
    steps = [s.strip() for s in parse_json(reply).get("steps", []) if isinstance(s, str) and s.strip()][:n]
    return {"task": task, "plan": steps or [task], "past_steps": []}


def make_executor():
    executor = react.build().compile()  # no checkpointer of its own: it checkpoints as a subgraph of the parent

    async def execute_node(state: PlanState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        done = state.get("past_steps") or []
        step = state["plan"][len(done)]
        result = await executor.ainvoke(
            {"messages": [HumanMessage(STEP_PROMPT.format(task=state["task"], step=step))]}, context=runtime.context)
        last = result["messages"][-1]
        text = str(last.content) if isinstance(last, AIMessage) else ""
        return {"past_steps": [*done, {"step": step, "result": text}]}

    return execute_node


def after_execute(state: PlanState) -> str:
    return "execute" if len(state.get("past_steps") or []) < len(state["plan"]) else "respond"


async def respond_node(state: PlanState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    results = "\n".join(f"{i}. {s['step']} -> {s['result']}" for i, s in enumerate(state["past_steps"], 1))
    prompt = f"Task: {state['task']}\n\nResults:\n{results}"
    reply = await call_model(ctx, [SystemMessage(ctx.spec.system_prompt or RESPOND_PROMPT), HumanMessage(prompt)])
    return {"messages": [reply]}


def build() -> StateGraph:
    graph = StateGraph(PlanState, context_schema=RunContext)
    graph.add_node("planner", planner_node)
    graph.add_node("execute", make_executor())
    graph.add_node("respond", respond_node)
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "execute")
    graph.add_conditional_edges("execute", after_execute, ["execute", "respond"])
    graph.add_edge("respond", "__end__")
    return graph
