"""LangChain's OpenAI integration (langchain-openai) against the running suite, as a LangChain user points it.

``ChatOpenAI`` on chat completions and on the Responses API (``use_responses_api=True``), streaming, a
forced tool call, and ``OpenAIEmbeddings`` with ``check_embedding_ctx_length=False`` (LangChain otherwise
counts tokens with tiktoken and sends its ids, which are another tokenizer's: the embedding service refuses
ids outside its vocabulary with a 400 that names the setting).
"""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m-instruct"
QUESTION = "What is the capital of France?"


def _chat(suite, max_tokens: int = 12, **kwargs):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=MODEL, base_url=f"{suite.base_url}/v1", api_key="unused", temperature=0,
                      max_tokens=max_tokens, timeout=120, max_retries=0, **kwargs)


def test_chat_completions_invoke_and_stream(suite):
    llm = _chat(suite)
    reply = llm.invoke(QUESTION)
    assert "Paris" in reply.content
    assert reply.usage_metadata["output_tokens"] <= 12 and reply.usage_metadata["input_tokens"] > 0
    streamed = "".join(chunk.content for chunk in llm.stream(QUESTION))
    assert streamed == reply.content  # greedy: the same text, chunk by chunk


def test_responses_api_invoke_and_stream(suite):
    llm = _chat(suite, use_responses_api=True)
    reply = llm.invoke(QUESTION)
    assert "Paris" in reply.text
    streamed = "".join(chunk.text for chunk in llm.stream(QUESTION))
    assert streamed == reply.text


def test_forced_tool_call_is_parsed_by_langchain(suite):
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """The current weather of a city."""
        return "sunny"

    llm = _chat(suite, max_tokens=64).bind_tools([get_weather], tool_choice="get_weather")
    reply = llm.invoke("What is the weather in Paris?")
    assert len(reply.tool_calls) == 1
    call = reply.tool_calls[0]
    assert call["name"] == "get_weather" and isinstance(call["args"].get("city"), str)


def test_embeddings_with_check_embedding_ctx_length_off(suite):
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(model="all-minilm-l6-v2", base_url=f"{suite.base_url}/v1", api_key="unused",
                                  check_embedding_ctx_length=False, timeout=60, max_retries=0)
    paris, cat = embeddings.embed_documents(["Paris is the capital of France.", "The cat sat on the mat."])
    query = embeddings.embed_query("Which city is the capital of France?")
    assert len(paris) == len(query) == 384
    assert math.isclose(sum(x * x for x in query), 1.0, abs_tol=1e-3)

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(query, paris) > cosine(query, cat)

