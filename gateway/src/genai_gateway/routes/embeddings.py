"""Embedding routes: OpenAI-compatible /v1/embeddings, native /v1/embeddings/sparse and /v1/rerank."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Request
from genai.embedding.v1 import embedding_service_pb2 as pb

from genai_gateway.routes import calls
from genai_gateway.routes import embeddings_protocol as api
from genai_gateway.routing import ApiRoute

router = APIRouter(tags=["embeddings"], route_class=ApiRoute)




def _renames(value: object) -> dict[str, str]:
    """Proto field paths -> the HTTP field the client sent (a single input is just ``input``)."""
    single = isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], int))
    renames = {r"^texts\[0\]$": "input", r"^token_inputs\[0\]$": "input"} if single else {}
    return {**renames, r"^texts": "input", r"^token_inputs": "input", r"^options\.dimensions": "dimensions"}


def _inputs(value: str | list[str] | list[int] | list[list[int]], message: pb.EmbedRequest) -> None:
    if isinstance(value, str):
        message.texts.texts.append(value)
    elif value and isinstance(value[0], int):
        message.token_inputs.sequences.append(pb.TokenIds(ids=value))
    elif value and isinstance(value[0], list):
        message.token_inputs.sequences.extend(pb.TokenIds(ids=ids) for ids in value)
    else:
        message.texts.texts.extend(value)  # type: ignore[arg-type]
        message.texts.SetInParent()  # an empty list still says "texts", so the error names input


async def _embed(request: Request, message: pb.EmbedRequest, value: object) -> pb.EmbedResponse:
    timeout = calls.deadlines(request).inputs(len(message.texts.texts) + len(message.token_inputs.sequences))
    return await calls.unary(request, calls.stub(request, "embedding").Embed(message, timeout=timeout), _renames(value))


def _usage(usage) -> api.EmbeddingUsage:
    return api.EmbeddingUsage(prompt_tokens=usage.prompt_tokens, total_tokens=usage.prompt_tokens)


@router.post("/v1/embeddings", response_model=api.EmbeddingResponse, summary="Create embeddings (OpenAI)")
async def create_embeddings(body: api.EmbeddingRequest, request: Request) -> api.EmbeddingResponse:
    message = pb.EmbedRequest(request_id=calls.request_id(request), model=body.model)
    _inputs(body.input, message)
    if body.dimensions is not None:
        message.options.dimensions = body.dimensions
    reply = await _embed(request, message, body.input)

    def encode(values) -> list[float] | str:
        if body.encoding_format == "base64":
            return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")
        return list(values)

    return api.EmbeddingResponse(
        data=[api.EmbeddingData(index=e.index, embedding=encode(e.dense.values)) for e in reply.embeddings],
        model=reply.model,
        usage=_usage(reply.usage),
    )


@router.post("/v1/embeddings/sparse", response_model=api.SparseResponse, summary="Sparse (BM25-style) vectors")
async def create_sparse(body: api.SparseRequest, request: Request) -> api.SparseResponse:
    message = pb.EmbedRequest(
        request_id=calls.request_id(request), model=body.model,
        options=pb.EmbedOptions(kind=pb.EMBEDDING_KIND_SPARSE, sparse_model=body.sparse_model),
    )
    _inputs(body.input, message)
    reply = await _embed(request, message, body.input)
    return api.SparseResponse(
        data=[
            api.SparseData(index=e.index, indices=list(e.sparse.indices), values=list(e.sparse.values))
            for e in reply.embeddings
        ],
        model=reply.model,
        usage=_usage(reply.usage),
    )


@router.post("/v1/rerank", response_model=api.RerankResponse, response_model_exclude_none=True,
             summary="Rerank documents against a query (Cohere/Jina/TEI shape)")
async def rerank(body: api.RerankRequest, request: Request) -> api.RerankResponse:
    message = pb.RerankRequest(
        request_id=calls.request_id(request), model=body.model, query=body.query, passages=body.documents,
        return_text=body.return_documents,
    )
    if body.top_n is not None:
        message.top_n = body.top_n
    timeout = calls.deadlines(request).inputs(len(body.documents) + 1)
    reply = await calls.unary(request, calls.stub(request, "embedding").Rerank(message, timeout=timeout),
                              {r"^passages": "documents"})
    return api.RerankResponse(
        id=reply.request_id,
        model=reply.model,
        results=[
            api.RerankResult(
                index=r.index, relevance_score=r.score,
                document=api.RerankDocument(text=r.text) if body.return_documents else None,
            )
            for r in reply.results
        ],
        usage=_usage(reply.usage),
    )
