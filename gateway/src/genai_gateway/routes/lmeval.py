"""The tokenizer routes lm-evaluation-harness probes (vLLM's shapes), served from the tokenizer service.

lm-eval's ``local-completions`` model with ``tokenizer_backend=remote`` (chosen automatically when these
answer) strips ``/v1/completions`` from its base URL and calls:

* ``GET /tokenizer_info`` -> ``{"eos_token", "bos_token", "pad_token", ...}``;
* ``POST /tokenize`` ``{"prompt", "add_special_tokens"}`` -> ``{"tokens": [...], "count", "max_model_len"}``;
* ``POST /detokenize`` ``{"tokens": [...]}`` -> ``{"prompt"}``.

So lm-eval needs no tokenizer download from a model hub: it tokenizes with the very tokenizer that the
inference service's model uses. ``model`` (optional, as vLLM accepts it) names a tokenizer of the
tokenizer service; unset uses its default.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from genai.tokenizer.v1 import tokenizer_service_pb2 as pb
from pydantic import BaseModel, ConfigDict, Field

from genai_gateway.errors import call
from genai_gateway.routes import calls
from genai_gateway.routes._bounds import TokenId
from genai_gateway.routing import ApiRoute

router = APIRouter(tags=["lm-eval"], route_class=ApiRoute)


class TokenizeIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # vLLM clients send more (return_token_strs, ...)
    prompt: str
    add_special_tokens: bool = True
    model: str = Field("", description="a tokenizer id; empty: the default")


class DetokenizeIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    tokens: list[TokenId] = Field(description="token ids")
    model: str = ""


@router.get("/tokenizer_info", summary="Tokenizer special tokens and limits (vLLM shape, for lm-eval)")
async def tokenizer_info(request: Request, model: str = ""):
    reply = await call(calls.stub(request, "tokenizer").GetTokenizer(
        pb.GetTokenizerRequest(request_id=calls.request_id(request), tokenizer=model)))
    info = reply.tokenizer
    roles = {t.role.lower(): t.content for t in info.special_tokens}
    return {"tokenizer_class": info.kind and pb.TokenizerKind.Name(info.kind), "model": info.id,
            "eos_token": roles.get("eos"), "bos_token": roles.get("bos"), "pad_token": roles.get("pad"),
            "unk_token": roles.get("unk"), "model_max_length": info.max_length or None}


@router.post("/tokenize", summary="Tokenize a prompt (vLLM shape, for lm-eval)")
async def tokenize(body: TokenizeIn, request: Request):
    reply = await call(calls.stub(request, "tokenizer").Tokenize(pb.TokenizeRequest(
        request_id=calls.request_id(request), tokenizer=body.model, texts=[body.prompt],
        add_special_tokens=body.add_special_tokens)), {r"^texts\[0\]": "prompt"})
    tokens = list(reply.encodings[0].ids)
    return {"tokens": tokens, "count": len(tokens), "max_model_len": None}


@router.post("/detokenize", summary="Decode token ids (vLLM shape, for lm-eval)")
async def detokenize(body: DetokenizeIn, request: Request):
    reply = await call(calls.stub(request, "tokenizer").Detokenize(pb.DetokenizeRequest(
        request_id=calls.request_id(request), tokenizer=body.model, sequences=[pb.TokenIds(ids=body.tokens)])),
        {r"^sequences\[0\]": "tokens"})
    return {"prompt": reply.texts[0]}
