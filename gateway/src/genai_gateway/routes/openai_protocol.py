"""JSON shapes of the OpenAI-compatible routes (pydantic), as OpenAI's API reference defines them.

Requests reject unknown fields (OpenAI answers "Unrecognized request argument" too), so a
misspelt parameter is an error instead of silently doing nothing. vLLM's sampling extras
(top_k, min_p, repetition_penalty, min_tokens, ignore_eos, stop_token_ids, chat_template_kwargs)
are accepted as well. OpenAI fields that change nothing on this server are accepted and ignored
(``IGNORED``, each says why in its description), fields it cannot honour are rejected by their
schema (``modalities`` other than text), and the legacy ``functions``/``function_call`` are honoured
as tools (routes/openai_legacy.py).

Responses have no defaults on purpose: routes set every field they send and the routes serialize
with ``exclude_unset``, so a field OpenAI always sends as ``null`` (``usage`` on stream chunks with
include_usage, ``logprobs``) is sent as ``null``, and one OpenAI leaves out is left out.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from genai_core.limits import INFERENCE
from pydantic import BaseModel, ConfigDict, Field

from genai_gateway.routes._bounds import UINT32_MAX, NonEmpty, Seed, TokenId

MaxTokens = Annotated[int, Field(ge=1, le=INFERENCE.max_new_tokens)]
# Token ids as JSON object keys ("50256": -100): digits only; the route checks that the id fits a uint32.
TokenKey = Annotated[str, Field(pattern=r"^[0-9]{1,10}$")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- shared pieces ------------------------------------------------------------------------------


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Request):
    """Parameters both /v1/chat/completions and /v1/completions take."""

    model: str = Field(
        "", description="A model id from GET /v1/models, an adapter, or `base:adapter`; empty = default."
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=INFERENCE.max_samples, description="Completions per prompt.")
    stop: NonEmpty | Annotated[list[NonEmpty], Field(max_length=INFERENCE.max_stop_sequences)] | None = None
    seed: Seed | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[TokenKey, Annotated[float, Field(ge=-100, le=100)]] | None = Field(
        None, description="Token id (as a string) -> bias between -100 and 100."
    )
    user: str | None = Field(None, description="Accepted and ignored.")
    # vLLM extras
    top_k: int | None = Field(None, ge=-1, le=UINT32_MAX, description="vLLM extra; -1 or 0 disables.")
    min_p: float | None = Field(None, ge=0, le=1, description="vLLM extra.")
    repetition_penalty: float | None = Field(None, gt=0, description="vLLM extra; 1 disables.")
    min_tokens: int | None = Field(None, ge=0, le=INFERENCE.max_new_tokens, description="vLLM extra.")
    ignore_eos: bool = Field(False, description="vLLM extra.")
    stop_token_ids: list[TokenId] = Field([], description="vLLM extra.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int] | None = None


# -- chat ---------------------------------------------------------------------------------------


class TextPart(_Request):
    type: Literal["text"]
    text: str


class MessageFunctionCall(_Request):
    name: str = Field(..., min_length=1)
    arguments: str = Field(..., description="The arguments as a JSON text, as the model wrote them.")


class MessageToolCall(_Request):
    id: str
    type: Literal["function"] = "function"
    function: MessageFunctionCall


class Message(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"] = Field(
        ..., description='"function" is the legacy role of a function result (with `name`): a tool message.'
    )
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None
    function_call: MessageFunctionCall | None = Field(None, description="Legacy: an assistant's one tool call.")
    refusal: str | None = None  # assistant messages echoed back from a response carry it


class ToolFunction(_Request):
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str = ""
    parameters: dict[str, Any] = {}
    strict: bool | None = None


class Tool(_Request):
    type: Literal["function"]
    function: ToolFunction


class NamedFunction(_Request):
    name: str = Field(..., min_length=1)


class NamedToolChoice(_Request):
    type: Literal["function"]
    function: NamedFunction


class JsonSchema(_Request):
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Request):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = Field(None, description="Required when type is json_schema.")


class Prediction(_Request):
    type: Literal["content"]
    content: str | list[TextPart]


# Accepted, changing nothing here; see each field's description.
IGNORED = ("store", "metadata", "reasoning_effort", "service_tier", "prediction", "verbosity", "prompt_cache_key",
           "safety_identifier")


class ChatCompletionRequest(_Sampling):
    messages: list[Message] = Field(..., min_length=1)
    store: bool | None = Field(None, description="Ignored: completions are never stored for distillation or evals.")
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(
        None, max_length=16, description="Ignored (OpenAI keeps it with stored completions)."
    )
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = Field(
        None, description="Ignored: the served models do not reason in a separate budget."
    )
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = Field(
        None, description="Ignored: one tier."
    )
    modalities: list[Literal["text"]] | None = Field(None, description='Only ["text"]: the models produce text.')
    prediction: Prediction | None = Field(None, description="Ignored: a speed hint with no effect on the output.")
    verbosity: Literal["low", "medium", "high"] | None = Field(None, description="Ignored.")
    prompt_cache_key: str | None = Field(None, description="Ignored: shared prefixes are reused when possible anyway.")
    safety_identifier: str | None = Field(None, description="Ignored, as `user` is.")
    functions: list[ToolFunction] | None = Field(
        None, min_length=1, description="Legacy form of `tools` (deprecated by OpenAI): honoured as tools."
    )
    function_call: Literal["none", "auto"] | NamedFunction | None = Field(
        None, description="Legacy form of `tool_choice`; the reply then uses the legacy `function_call` shape."
    )
    max_tokens: MaxTokens | None = Field(None, description="Deprecated by OpenAI in favour of max_completion_tokens.")
    max_completion_tokens: MaxTokens | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=INFERENCE.max_top_logprobs)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description="vLLM extra: variables for the chat template."
    )


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None


class ResponseFunction(BaseModel):
    name: str
    arguments: str


class ResponseToolCall(BaseModel):
    id: str
    type: Literal["function"]
    function: ResponseFunction


class ResponseMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None
    tool_calls: list[ResponseToolCall] | None = None
    function_call: ResponseFunction | None = None  # the legacy shape, when the request sent `functions`
    reasoning_content: str | None = None


class ChatChoice(BaseModel):
    index: int
    message: ResponseMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


# -- completions (legacy) -----------------------------------------------------------------------


class CompletionRequest(_Sampling):
    prompt: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | Annotated[list[TokenId], Field(min_length=1)]
        | Annotated[list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1)]
    ) = Field(..., description="A text, a list of texts, token ids, or a list of token-id lists; one request each.")
    max_tokens: int | None = Field(
        16,
        ge=0,
        le=INFERENCE.max_new_tokens,
        description="OpenAI's default is 16; 0 with echo scores the prompt only (lm-eval loglikelihood).",
    )
    logprobs: int | None = Field(
        None, ge=0, le=INFERENCE.max_top_logprobs, description="Return the top-N alternatives of each token."
    )
    echo: bool = Field(False, description="Start the text (and logprobs) with the prompt.")
    best_of: int | None = Field(None, ge=1, le=1, description="Only 1 is supported.")
    response_format: ResponseFormat | None = Field(
        None, description="vLLM extension: constrain the completion to JSON (object or schema)."
    )
    suffix: str | None = Field(None, max_length=0, description="Not supported; leave it out.")


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: Literal["stop", "length"] | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    system_fingerprint: str | None = None


# -- models -------------------------------------------------------------------------------------


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    type: Literal["llm", "adapter", "embedding", "agent"] = Field(
        description="What the model is for (as LM Studio lists it): chat/completions, an adapter of an llm, "
        "/v1/embeddings, or an agent service assistant (`agent:<name>` in chat/completions)."
    )
    root: str | None = None
    parent: str | None = None
    max_model_len: int | None = Field(None, description="vLLM extra: the context length (input tokens, embeddings).")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]
