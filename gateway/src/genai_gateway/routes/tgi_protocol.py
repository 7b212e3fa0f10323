"""JSON shapes of the TGI-compatible routes (pydantic), as text-generation-inference defines them.

Like TGI, requests ignore fields they do not know (the `text-generation` client sends `stream`
to every route). Responses have no defaults: routes set what they send and serialize with
``exclude_unset``, so ``details`` appears only when asked for, as in TGI.
"""

from __future__ import annotations

from typing import Any, Literal

from genai_core.limits import INFERENCE
from pydantic import BaseModel, ConfigDict, Field

from genai_gateway.routes._bounds import JSON_SAFE_MAX, UINT32_MAX, NonEmpty


class Grammar(BaseModel):
    model_config = ConfigDict(strict=True)

    type: Literal["json", "regex"]
    value: dict[str, Any] | str = Field(
        ..., description="A JSON Schema (object or JSON text), or a regular expression."
    )


class Parameters(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    max_new_tokens: int | None = Field(None, ge=1, le=INFERENCE.max_new_tokens)
    do_sample: bool = Field(False, description="false (and no temperature/top_k/top_p) means greedy decoding.")
    temperature: float | None = Field(None, gt=0)
    top_k: int | None = Field(None, gt=0, le=UINT32_MAX)
    top_p: float | None = Field(None, gt=0, le=1)
    typical_p: None = Field(None, description="Not supported: leave it out or null.")
    repetition_penalty: float | None = Field(None, gt=0)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = Field(None, ge=0, le=JSON_SAFE_MAX)
    stop: list[NonEmpty] = Field([], max_length=INFERENCE.max_stop_sequences)
    details: bool = False
    decoder_input_details: bool = False
    return_full_text: bool | None = False
    best_of: int | None = Field(None, ge=1, le=1, description="Only 1 is supported.")
    truncate: None = Field(None, description="Not supported: leave it out or null.")
    watermark: Literal[False] = Field(False, description="Not supported: leave it out or false.")
    grammar: Grammar | None = None
    top_n_tokens: int | None = Field(None, ge=0, le=INFERENCE.max_top_logprobs)
    adapter_id: str | None = Field(None, description="A loaded adapter (or `base:adapter`); empty = the default model.")


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    inputs: str = Field(..., min_length=1)
    parameters: Parameters = Field(default_factory=Parameters)
    stream: bool = Field(False, description="Only read by POST /, which streams when it is true.")


class Token(BaseModel):
    id: int
    text: str
    logprob: float | None
    special: bool


class PrefillToken(BaseModel):
    id: int
    text: str
    logprob: float | None


FinishReason = Literal["length", "eos_token", "stop_sequence"]


class Details(BaseModel):
    finish_reason: FinishReason
    generated_tokens: int
    seed: int | None
    prefill: list[PrefillToken]
    tokens: list[Token]
    top_tokens: list[list[Token]] | None = None


class GenerateResponse(BaseModel):
    generated_text: str
    details: Details | None = None

