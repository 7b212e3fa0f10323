"""``GET /v1/models`` and ``GET /v1/models/{model}``: every model the suite serves, whichever service runs it.

Each backend that serves models is a row of ``SOURCES``: its name in the services table and how to list its
models as OpenAI model cards. The inference service lists its base model and loaded adapters, the embedding
service its embedding models; a new service (agents) joins with a row. Backends this gateway has no target
for are skipped; one that is down is skipped with a warning while the others still answer, so a client that
lists models at start-up keeps working when, say, only the embedding service is down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from genai.embedding.v1 import embedding_service_pb2 as epb
from genai.inference.v1 import inference_service_pb2 as ipb

from genai_gateway.errors import GatewayError, call
from genai_gateway.routes import agent_openai, calls
from genai_gateway.routes import openai_protocol as api
from genai_gateway.routing import ApiRoute

logger = logging.getLogger(__name__)

router = APIRouter(tags=["openai"], route_class=ApiRoute)

Source = Callable[[Request], Awaitable[list[api.ModelCard]]]


def _inference_card(m: ipb.Model) -> api.ModelCard:
    adapter = m.kind == ipb.Model.KIND_ADAPTER
    return api.ModelCard(
        id=m.id,
        object="model",
        created=m.load_time.seconds if m.HasField("load_time") else 0,
        owned_by="genai",
        type="adapter" if adapter else "llm",
        root=(m.source or m.id) if adapter else m.id,
        parent=m.base_model if adapter else None,
        max_model_len=m.context_length or None,
    )


async def _inference(request: Request) -> list[api.ModelCard]:
    stub, cards, token = calls.stub(request, "inference"), [], ""
    while True:
        reply = await call(stub.ListModels(ipb.ListModelsRequest(request_id=calls.request_id(request),
                                                                  page_token=token)))
        cards.extend(_inference_card(m) for m in reply.models)
        token = reply.next_page_token
        if not token:
            return cards


async def _embedding(request: Request) -> list[api.ModelCard]:
    stub = calls.stub(request, "embedding")
    default = await call(stub.GetInfo(epb.GetInfoRequest(request_id=calls.request_id(request))))
    infos = [default] + await asyncio.gather(*(
        call(stub.GetInfo(epb.GetInfoRequest(request_id=calls.request_id(request), model=m)))
        for m in default.models if m != default.model
    ))
    return [api.ModelCard(id=i.model, object="model", created=0, owned_by="genai", type="embedding", root=i.model,
                          max_model_len=i.max_input_tokens or None) for i in infos]


# Backend name (a row of genai_core.services) -> its models as cards.
SOURCES: dict[str, Source] = {"inference": _inference, "embedding": _embedding, "agent": agent_openai.model_cards}


async def _cards(request: Request) -> list[api.ModelCard]:
    names = [n for n in SOURCES if n in request.app.state.backends.targets]
    if not names:
        calls.stub(request, "inference")  # 503, saying which target to set
    results = await asyncio.gather(*(SOURCES[n](request) for n in names), return_exceptions=True)
    cards: list[api.ModelCard] = []
    failures = []
    for name, result in zip(names, results, strict=True):
        if isinstance(result, GatewayError) and result.status == 503:
            logger.warning("listing models without the %s service: %s", name, result.message)
            failures.append(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            cards.extend(result)
    if failures and not cards:
        raise failures[0]
    return cards


@router.get("/v1/models", response_model=api.ModelList, response_model_exclude_unset=True,
            summary="List models: the LLM, its adapters, embedding models, agents")
async def list_models(request: Request) -> api.ModelList:
    return api.ModelList(object="list", data=await _cards(request))


@router.get("/v1/models/{model:path}", response_model=api.ModelCard, response_model_exclude_unset=True,
            summary="Get one model")
async def get_model(model: str, request: Request) -> api.ModelCard:
    if agent_openai.is_agent(model):  # `agent:<assistant>`: one lookup, not a listing of every source
        return await agent_openai.model_card(model, request)
    for card in await _cards(request):
        if card.id == model:
            return card
    if "inference" in request.app.state.backends.targets:  # `base:adapter` and other spellings it resolves
        reply = await call(calls.stub(request, "inference").GetModel(
            ipb.GetModelRequest(request_id=calls.request_id(request), model=model)))
        return _inference_card(reply.model)
    raise GatewayError(404, f"model {model!r} does not exist; GET /v1/models lists them", "not_found_error",
                       "model_not_found")
