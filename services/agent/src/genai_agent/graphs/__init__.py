"""The graphs assistants are built on: a registry from graph id to its builder and its requirements.

    >>> sorted(GRAPHS)
    ['plan_execute', 'rag', 'react']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langgraph.graph import StateGraph


@dataclass(frozen=True)
class GraphDef:
    graph_id: str
    description: str
    build: Callable[[], StateGraph]
    required_tools: tuple[str, ...] = ()  # tools the graph calls by name, which the assistant must list
    needs_collection: bool = False


def _react() -> StateGraph:
    from genai_agent.graphs import react

    return react.build()


def _rag() -> StateGraph:
    from genai_agent.graphs import rag

    return rag.build()


def _plan_execute() -> StateGraph:
    from genai_agent.graphs import plan_execute

    return plan_execute.build()


GRAPHS: dict[str, GraphDef] = {
    g.graph_id: g
    for g in (
        GraphDef("react", "The tool-calling loop: model, tools, model, until an answer.", _react),
        GraphDef("rag", "Retrieve, grade, rewrite once when poor, answer with citations.", _rag,
                 required_tools=("search",), needs_collection=True),
        GraphDef("plan_execute", "Plan a few steps, run each with a react sub-agent, answer from the results.",
                 _plan_execute),
    )
}


class CompiledGraphs:
    """Every graph compiled once with the service's checkpointer (a compiled graph is reused by all runs)."""

    def __init__(self, checkpointer: Any) -> None:
        self._compiled = {gid: g.build().compile(checkpointer=checkpointer) for gid, g in GRAPHS.items()}

    def get(self, graph_id: str) -> Any:
        return self._compiled[graph_id]
