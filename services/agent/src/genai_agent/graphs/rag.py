"""``rag``: retrieve from a collection, grade the contexts, rewrite the question once when none is
relevant, then answer with citations.

* ``query``: the model calls the ``search`` tool, forced (``tool_choice`` names it), so even a small model
  produces a well-formed call; its query is constrained JSON.
* ``retrieve``: runs that call against the retrieval service (tenant-scoped ``Search``).
* ``grade``: each context is graded relevant or not, by the model (a constrained yes/no, not streamed) or
  by its search score (``grader: score``).
* ``rewrite``: once, when nothing is relevant, the model rewrites the question and ``query`` runs again.
* ``answer``: the retrieval service's own ``AnswerStream`` (its prompt, context packing and citation
  mapping: reused, not copied) answers the question as rewritten; its tokens stream like a model's and
  its citations land in the answer's ``response_metadata`` and in the state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from genai_core.errors import InvalidArgument
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import agenerate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.runtime import Runtime
from pydantic import ConfigDict

from genai_agent.graphs.nodes import RunContext, call_model, last_ai, parse_json, run_tool_call
from genai_agent.types import AnswerDone, ModelProvider, SearchHit, ToolCall

DEFAULT_TOP_K = 4
QUERY_PROMPT = ("You search a knowledge base to answer the user's question. Call the search tool with a short "
                "search query for the question.")
GRADE_PROMPT = ("Does the passage contain information that helps answer the question? "
                'Reply with {"relevant": "yes"} or {"relevant": "no"}.')
GRADE_SCHEMA = {"type": "object", "properties": {"relevant": {"type": "string", "enum": ["yes", "no"]}},
                "required": ["relevant"], "additionalProperties": False}
REWRITE_PROMPT = ("The search found nothing relevant for this question. Rewrite it as a clearer, more specific "
                  "question for a search engine. Reply with the rewritten question only.")


class RagState(MessagesState):
    question: str
    query: str
    contexts: list[dict[str, Any]]
    relevant: list[dict[str, Any]]
    rewritten: bool
    citations: list[dict[str, Any]]


class AnswerModel(BaseChatModel):
    """The retrieval service's cited answer as a chat model, so LangGraph streams its tokens."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retrieval: Any  # ports.Retrieval
    tenant: str
    collection: str
    top_k: int
    model: str = ""
    max_tokens: int = 256

    @property
    def _llm_type(self) -> str:
        return "genai-retrieval-answer"

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("AnswerModel is async only")

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                         **kwargs: Any) -> ChatResult:
        return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))

    async def _astream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                       **_: Any) -> AsyncIterator[ChatGenerationChunk]:
        question = str(messages[-1].content)
        async for part in self.retrieval.answer_stream(self.tenant, self.collection, question, self.top_k,
                                                       self.model, self.max_tokens):
            if isinstance(part, AnswerDone):
                usage = {"input_tokens": part.usage.prompt_tokens, "output_tokens": part.usage.completion_tokens,
                         "total_tokens": part.usage.prompt_tokens + part.usage.completion_tokens}
                yield ChatGenerationChunk(message=AIMessageChunk(
                    content="", usage_metadata=usage, chunk_position="last",
                    response_metadata={"citations": [asdict(c) for c in part.citations], "model_name": part.model},
                ))
            elif part:
                yield ChatGenerationChunk(message=AIMessageChunk(content=part))


def _collection(ctx: RunContext) -> str:
    if not ctx.spec.collection:
        raise InvalidArgument.for_field("spec.collection", "the rag graph needs a collection to search; set it on "
                                        "the assistant or pass configurable.collection with the run")
    return ctx.spec.collection


def _question(state: RagState) -> tuple[str, bool]:
    """The question to search for, and whether it starts a new turn (a new human message) rather than
    coming back from ``rewrite``."""
    messages = state["messages"]
    if messages and isinstance(messages[-1], HumanMessage):
        return str(messages[-1].content), True
    if state.get("question"):
        return state["question"], False
    raise InvalidArgument.for_field("input.messages", "the rag graph needs a question: send a human message")


async def query_node(state: RagState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    question, new_turn = _question(state)
    search = ctx.tools["search"]
    reply = await call_model(ctx, [SystemMessage(QUERY_PROMPT), HumanMessage(question)], tools=[search],
                             tool_choice="search")
    if not reply.tool_calls:  # a provider that ignored the forced choice: search for the question itself
        reply = reply.model_copy(update={"tool_calls": [
            {"id": f"call_{ctx.run_id[:8]}", "name": "search", "args": {"query": question}, "type": "tool_call"}]})
    turn = {"rewritten": False, "relevant": [], "citations": []} if new_turn else {}
    return {"question": question, "messages": [reply], **turn}


async def retrieve_node(state: RagState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    ai, _ = last_ai(state["messages"])
    raw = ai.tool_calls[0] if ai is not None and ai.tool_calls else {"id": "", "args": {}}
    query = str(raw["args"].get("query") or state["question"])
    call = ToolCall(raw["id"] or f"call_{ctx.run_id[:8]}", "search", {"query": query})
    hits: list[SearchHit] = []

    async def search() -> str:
        hits.extend(await ctx.retrieval.search(ctx.tenant, _collection(ctx), query, ctx.spec.top_k or DEFAULT_TOP_K))
        if not hits:
            return f"No results for {query!r}."
        return "\n\n".join(f"[{i}] {h.document_id}: {h.text}" for i, h in enumerate(hits, 1))

    message = await run_tool_call(ctx, runtime, call, search, ctx.tools["search"].description, node="retrieve")
    return {"query": query, "contexts": [asdict(h) for h in hits], "messages": [message]}


async def grade_node(state: RagState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    contexts = state.get("contexts") or []
    if ctx.spec.grader.value == "score":
        return {"relevant": [c for c in contexts if c["score"] >= ctx.spec.min_score]}

    async def grade(context: dict[str, Any]) -> bool:
        prompt = f"Question: {state['question']}\n\nPassage: {context['text'][:2000]}"
        reply = await call_model(ctx, [SystemMessage(GRADE_PROMPT), HumanMessage(prompt)], schema=GRADE_SCHEMA,
                                 stream=False)
        return parse_json(reply).get("relevant") == "yes"

    verdicts = await asyncio.gather(*(grade(c) for c in contexts))
    return {"relevant": [c for c, ok in zip(contexts, verdicts, strict=True) if ok]}


def after_grade(state: RagState) -> str:
    return "answer" if state.get("relevant") or state.get("rewritten") else "rewrite"


async def rewrite_node(state: RagState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    reply = await call_model(ctx, [SystemMessage(REWRITE_PROMPT), HumanMessage(state["question"])], stream=False)
    text = str(reply.content).strip().splitlines()
    rewritten = text[0].strip()[:300] if text and text[0].strip() else state["question"]
    return {"question": rewritten, "rewritten": True}


async def answer_node(state: RagState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    spec = ctx.spec
    answerer = AnswerModel(
        retrieval=ctx.retrieval, tenant=ctx.tenant, collection=_collection(ctx), top_k=spec.top_k or DEFAULT_TOP_K,
        model=spec.model.name if spec.model.provider is ModelProvider.INFERENCE else "",
        max_tokens=spec.model.max_tokens or 256,
    )
    reply = await call_model(ctx, [HumanMessage(state["question"])], model=answerer)
    return {"messages": [reply], "citations": list(reply.response_metadata.get("citations", []))}


def build() -> StateGraph:
    graph = StateGraph(RagState, context_schema=RunContext)
    graph.add_node("query", query_node)
    graph.add_node("retrieve", retrieve_node)
    graph.add_node("grade", grade_node)
    graph.add_node("rewrite", rewrite_node)
    graph.add_node("answer", answer_node)
    graph.add_edge(START, "query")
    graph.add_edge("query", "retrieve")
    graph.add_edge("retrieve", "grade")
    graph.add_conditional_edges("grade", after_grade, ["answer", "rewrite"])
    graph.add_edge("rewrite", "query")
    graph.add_edge("answer", "__end__")
    return graph
