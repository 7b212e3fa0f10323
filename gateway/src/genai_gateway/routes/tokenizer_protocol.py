"""JSON shapes of the tokenizer routes (pydantic), documented in the OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from genai_core.limits import TOKENIZER
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from genai_gateway.routes._bounds import NonEmpty, Positive32, TokenId, UInt32

Text = Annotated[str, Field(max_length=TOKENIZER.max_input_chars)]
Texts = str | Annotated[list[Text], Field(min_length=1, max_length=TOKENIZER.max_batch_size)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    tokenizer: str = Field(
        "",
        validation_alias=AliasChoices("tokenizer", "model"),
        description="Tokenizer id from GET /v1/tokenizers (`model` is accepted too); empty = the default.",
    )


class TokenizeRequest(_Request):
    input: Texts = Field(..., description="One text or a list of texts.")
    add_special_tokens: bool = Field(True, description="Add BOS/[CLS]/[SEP] as the tokenizer does.")
    return_tokens: bool = Field(False, description="Return the token strings.")
    return_offsets: bool = Field(False, description="Return [start, end) character offsets per token.")


class Encoding(BaseModel):
    index: int
    ids: list[int]
    count: int
    special_flags: list[bool]
    tokens: list[str] | None = None
    offsets: list[tuple[int, int]] | None = None


class TokenizeResponse(BaseModel):
    object: Literal["list"] = "list"
    tokenizer: str
    data: list[Encoding]
    request_id: str


class DetokenizeRequest(_Request):
    ids: list[TokenId] | Annotated[list[list[TokenId]], Field(max_length=TOKENIZER.max_batch_size)] = Field(
        ..., description="One sequence of token ids, or a list of them."
    )
    skip_special_tokens: bool = False


class DecodedText(BaseModel):
    index: int
    text: str


class DetokenizeResponse(BaseModel):
    object: Literal["list"] = "list"
    tokenizer: str
    data: list[DecodedText]
    request_id: str


class CountRequest(_Request):
    input: Texts
    add_special_tokens: bool = True


class CountResponse(BaseModel):
    tokenizer: str
    counts: list[int]
    total: int
    request_id: str


class FunctionCall(BaseModel):
    model_config = ConfigDict(strict=True)

    name: str
    arguments: str | dict[str, Any] = Field("{}", description="JSON object, as a string (OpenAI) or an object.")


class ToolCall(BaseModel):
    model_config = ConfigDict(strict=True)

    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class ContentPart(BaseModel):
    model_config = ConfigDict(strict=True)

    type: Literal["text"] = "text"
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True)

    role: str = Field(..., min_length=1, description="system, user, assistant or tool.")
    content: str | list[ContentPart] | None = ""
    name: str | None = None
    tool_calls: list[ToolCall] = []
    tool_call_id: str | None = None


class FunctionDef(BaseModel):
    model_config = ConfigDict(strict=True)

    name: NonEmpty
    description: str = ""
    parameters: dict[str, Any] = {}


class ToolDef(BaseModel):
    model_config = ConfigDict(strict=True)

    type: Literal["function"] = "function"
    function: FunctionDef


class ChatTemplateRequest(_Request):
    messages: list[ChatMessage] = Field(..., min_length=1, description="The conversation, in the OpenAI message shape.")
    add_generation_prompt: bool = True
    tools: list[ToolDef] = []
    chat_template: str | None = Field(None, description="A Jinja template to use instead of the tokenizer's.")


class ChatTemplateResponse(BaseModel):
    tokenizer: str
    text: str
    ids: list[int]
    count: int
    request_id: str


class PackRequest(_Request):
    token_budget: Positive32
    system_prompt: str = ""
    question: str = ""
    chunks: list[str] = Field([], max_length=TOKENIZER.max_batch_size)
    reserved_tokens: UInt32 = 0
    strategy: Literal["greedy", "prefix"] = "greedy"
    separator_tokens: UInt32 | None = None


class PackResponse(BaseModel):
    tokenizer: str
    selected_indices: list[int]
    chunk_token_counts: list[int]
    used_tokens: int
    remaining_tokens: int
    fixed_tokens: int
    request_id: str


class SpecialToken(BaseModel):
    role: str
    content: str
    id: int


class TokenizerInfo(BaseModel):
    id: str
    object: Literal["tokenizer"] = "tokenizer"
    kind: str
    source: str
    vocab_size: int
    max_length: int
    special_tokens: list[SpecialToken]
    has_chat_template: bool
    revision: str
    model: str
    created: int | None = Field(None, description="Unix seconds, for trained tokenizers.")
    max_batch_size: int
    max_input_chars: int


class TokenizerList(BaseModel):
    object: Literal["list"] = "list"
    data: list[TokenizerInfo]
    default: str


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(..., description="The new tokenizer's id: letters, digits, '.', '_', '-' (max 64).")
    kind: Literal["bpe", "wordpiece", "unigram"] = "bpe"
    vocab_size: int = Field(..., ge=TOKENIZER.min_vocab_size, le=TOKENIZER.max_vocab_size)
    special_tokens: list[NonEmpty] = []
    texts: list[str] | None = Field(None, min_length=1, description="Inline corpus, one document per entry.")
    files: list[NonEmpty] | None = Field(
        None, min_length=1, description="Corpus files relative to the tokenizer service's data dir."
    )
    min_frequency: Positive32 | None = None
    lowercase: bool = False
    max_length: Positive32 | None = None
    overwrite: bool = False


class TrainResponse(BaseModel):
    tokenizer: TokenizerInfo
    trained_chars: int
    training_ms: int
    request_id: str
