"""Plain domain types of generation: what a backend receives and what it emits. No grpc here."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class FinishReason(enum.Enum):
    STOP = "stop"  # the model ended (EOS) or a constraint completed
    LENGTH = "length"  # max_new_tokens or the context length was reached
    STOP_SEQUENCE = "stop_sequence"
    TOOL_CALLS = "tool_calls"
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters after defaults were applied; temperature 0 means greedy."""

    max_new_tokens: int = 256
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    prompt_logprobs: int | None = None  # None: off; k >= 0: logprob of each prompt token plus k alternatives
    prompt_logprobs_start: int = 0  # the first prompt position scored (earlier ones are only prefilled)
    echo: bool = False
    ignore_eos: bool = False
    logit_bias: Mapping[int, float] = field(default_factory=dict)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class ConstraintKind(enum.Enum):
    JSON_SCHEMA = "json_schema"
    JSON_OBJECT = "json_object"
    REGEX = "regex"
    CHOICES = "choices"
    GRAMMAR_EBNF = "grammar_ebnf"
    GRAMMAR_LARK = "grammar_lark"
    TOOL_CALLS = "tool_calls"  # value: ToolCallSpec


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any]  # JSON Schema of the arguments


@dataclass(frozen=True)
class ToolCallSpec:
    """Constrain the output to tool calls: ``required`` = at least one call of any tool,
    ``name`` set = exactly that tool, ``auto`` = free text that may switch into a call."""

    tools: tuple[ToolSpec, ...]
    mode: str = "auto"  # auto | required | named
    name: str = ""
    parallel: bool = True


@dataclass(frozen=True)
class Constraint:
    kind: ConstraintKind
    value: Any  # dict schema | str regex/grammar | tuple[str, ...] choices | ToolCallSpec | None


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    model: str  # canonical base model id
    prompt_ids: tuple[int, ...]
    prompt_text: str  # the prompt as text (remote engines send text)
    sampling: Sampling = field(default_factory=Sampling)
    adapter: str | None = None
    constraint: Constraint | None = None
    deadline: float | None = None  # time.monotonic() value after which the request is cut off


@dataclass(frozen=True)
class TopLogprob:
    token_id: int
    text: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    text: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class TokenEvent:
    """New tokens of completion ``index``; ``text`` is the newly decodable text (may be empty)."""

    index: int
    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class FinishEvent:
    index: int
    reason: FinishReason
    stop_sequence: str | None = None
    stop_token_id: int | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Timings:
    queue_s: float
    time_to_first_token_s: float
    total_s: float


@dataclass(frozen=True)
class DoneEvent:
    """The last event of a request: usage over all completions, timings, prompt logprobs if asked."""

    usage: Usage
    timings: Timings
    prompt_logprobs: tuple[TokenLogprob, ...] = ()


Event = TokenEvent | FinishEvent | DoneEvent


@dataclass(frozen=True)
class ModelInfo:
    id: str
    revision: str
    engine: str
    context_length: int
    max_new_tokens: int
    vocab_size: int
    has_chat_template: bool
    source: str
    quantization: str = ""
    base_model: str = ""  # set for adapters
    is_adapter: bool = False
