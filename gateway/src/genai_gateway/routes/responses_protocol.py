"""JSON shapes of OpenAI's Responses API (``/v1/responses``), as the ``openai`` SDK sends and parses them.

Requests reject unknown fields, like the chat routes. Fields that change nothing here are accepted and
ignored (each says so); ``background`` is refused (a background response needs a job store: use the agent
service's runs); input images and files are refused by the item schemas (the models read text only).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from genai_core.limits import INFERENCE
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from genai_gateway.routes._bounds import NonEmpty


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- input items ----------------------------------------------------------------------------------


class InputText(_Request):
    type: Literal["input_text"]
    text: str


class OutputText(_Request):
    """An assistant's text, as a previous response returned it (clients send their history back)."""

    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]] = []
    logprobs: list[dict[str, Any]] | None = None


class Refusal(_Request):
    type: Literal["refusal"]
    refusal: str


Content = Annotated[InputText | OutputText | Refusal, Field(discriminator="type")]


class MessageItem(_Request):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Content]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class FunctionCallItem(_Request):
    type: Literal["function_call"]
    call_id: NonEmpty
    name: NonEmpty
    arguments: str = Field(description="The arguments as a JSON text, as the model wrote them.")
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(_Request):
    type: Literal["function_call_output"]
    call_id: NonEmpty = Field(description="The call_id of the function_call this answers.")
    output: str | list[InputText]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


def _item_type(value: Any) -> str:
    if isinstance(value, dict):
        return value.get("type", "message")  # {"role": ..., "content": ...} is a message (EasyInputMessage)
    return getattr(value, "type", "message")


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(_item_type),
]


# -- options --------------------------------------------------------------------------------------


class FunctionTool(_Request):
    type: Literal["function"]
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(_Request):
    type: Literal["function"]
    name: NonEmpty


class TextFormatText(_Request):
    type: Literal["text"]


class TextFormatJsonObject(_Request):
    type: Literal["json_object"]


class TextFormatJsonSchema(_Request):
    type: Literal["json_schema"]
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    schema_: dict[str, Any] = Field(..., alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(_Request):
    format: Annotated[TextFormatText | TextFormatJsonObject | TextFormatJsonSchema, Field(discriminator="type")] | None = (
        None
    )
    verbosity: Literal["low", "medium", "high"] | None = Field(None, description="Ignored.")


class Reasoning(_Request):
    effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(_Request):
    include_obfuscation: bool | None = None


class ResponseCreate(_Request):
    model: str = Field("", description="A model id from GET /v1/models (or `base:adapter`); empty = the default.")
    input: str | Annotated[list[InputItem], Field(min_length=1)] = Field(
        ..., description="A text (one user message), or items: messages, function calls and their outputs."
    )
    instructions: str | None = Field(
        None, description="A system message put first; not carried over to responses that continue this one."
    )
    previous_response_id: str | None = Field(
        None, description="Continue a stored response: its input and output come before this input."
    )
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = Field(None, description="format: text, json_object or json_schema (structured output).")
    max_output_tokens: int | None = Field(None, ge=1, le=INFERENCE.max_new_tokens)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool = False
    store: bool = Field(True, description="Keep the response for GET and previous_response_id (in this gateway).")
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(None, max_length=16)
    background: Literal[False] | None = Field(None, description="Not supported: only false.")
    stream_options: StreamOptions | None = Field(None, description="Ignored.")
    include: list[str] | None = Field(None, description="Ignored: nothing optional to include.")
    reasoning: Reasoning | None = Field(None, description="Ignored: the served models do not reason separately.")
    truncation: Literal["auto", "disabled"] | None = Field(None, description="Ignored: input is never truncated.")
    top_logprobs: int | None = Field(None, ge=0, le=INFERENCE.max_top_logprobs, description="Ignored.")
    max_tool_calls: int | None = Field(None, ge=1, le=2**31 - 1, description="Ignored.")
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = Field(None, description="Ignored.")
    prompt_cache_key: str | None = Field(None, description="Ignored.")
    safety_identifier: str | None = Field(None, description="Ignored.")
    user: str | None = Field(None, description="Ignored.")


# -- the response object --------------------------------------------------------------------------


class OutputTextPart(BaseModel):
    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]]
    logprobs: list[dict[str, Any]]


class OutputMessage(BaseModel):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    status: Literal["in_progress", "completed", "incomplete"]
    content: list[OutputTextPart]


class OutputFunctionCall(BaseModel):
    id: str
    type: Literal["function_call"]
    status: Literal["in_progress", "completed", "incomplete"]
    call_id: str
    name: str
    arguments: str


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: dict[str, int]
    output_tokens: int
    output_tokens_details: dict[str, int]
    total_tokens: int


class ResponseError(BaseModel):
    code: str
    message: str


class ResponseObject(BaseModel):
    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "incomplete", "failed", "in_progress"]
    model: str
    output: list[OutputMessage | OutputFunctionCall]
    instructions: str | None
    previous_response_id: str | None
    tools: list[dict[str, Any]]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    text: dict[str, Any]
    temperature: float | None
    top_p: float | None
    max_output_tokens: int | None
    metadata: dict[str, str]
    store: bool
    background: bool
    truncation: Literal["disabled"]
    usage: ResponseUsage | None
    error: ResponseError | None
    incomplete_details: dict[str, str] | None


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response"]
    deleted: Literal[True]


class InputItemList(BaseModel):
    object: Literal["list"]
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool
