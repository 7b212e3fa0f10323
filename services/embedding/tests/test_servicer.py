"""Every RPC in-process over gRPC (real model, onnxruntime fp32): happy paths and bad-input codes."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from genai.embedding.v1 import embedding_service_pb2 as pb
from genai.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from genai_core.channels import create_channel
from genai_core.deferred import Deferred
from genai_core.server import GrpcServer
from genai_core.settings import ServerSettings
from genai_core.status import field_violations
from genai_embedding.servicer import service_spec
from genai_sparse.bm25 import term_id
from grpc_health.v1 import health_pb2, health_pb2_grpc

TEXTS = ["Paris is the capital of France.", "The cat sat on the mat.", "Stocks fell sharply on Monday."]


def _texts(*texts: str, request_id: str = "", **options) -> pb.EmbedRequest:
    return pb.EmbedRequest(
        request_id=request_id, texts=pb.TextInputs(texts=list(texts)), options=pb.EmbedOptions(**options)
    )


async def _error(awaitable) -> tuple[grpc.StatusCode, list[tuple[str, str]], str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value.code(), field_violations(info.value), info.value.details()


async def test_embed_dense_unit_vectors_in_order(stub, embedder):
    reply = await stub.Embed(_texts(*TEXTS, request_id="r1"))
    assert reply.request_id == "r1" and reply.model == "all-minilm-l6-v2"
    assert [e.index for e in reply.embeddings] == [0, 1, 2]
    vectors = np.array([e.dense.values for e in reply.embeddings])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not reply.embeddings[0].HasField("sparse")
    assert reply.usage.prompt_tokens == sum(e.token_count for e in reply.embeddings) > 0
    assert reply.timings.total_duration.ToNanoseconds() > 0
    alone = await stub.Embed(_texts(TEXTS[1]))  # batching does not change a text's vector
    np.testing.assert_allclose(alone.embeddings[0].dense.values, vectors[1], atol=1e-5)


async def test_embed_unnormalised_and_sparse_both(stub):
    raw = await stub.Embed(_texts(TEXTS[0], normalize=False))
    assert np.linalg.norm(raw.embeddings[0].dense.values) != pytest.approx(1.0, abs=1e-3)
    both = await stub.Embed(_texts("the cat chased the cats and a dog", kind=pb.EMBEDDING_KIND_BOTH))
    e = both.embeddings[0]
    assert len(e.dense.values) == 384
    weights = dict(zip(e.sparse.indices, e.sparse.values, strict=True))
    assert list(e.sparse.indices) == sorted(e.sparse.indices)
    # bm25-english (the default): stop words dropped, "cat" and "cats" are one stem, saturated above "dog"
    assert set(weights) == {term_id("cat"), term_id("chase"), term_id("dog")}
    assert weights[term_id("cat")] > weights[term_id("dog")] > 0
    sparse = await stub.Embed(_texts("the cat", kind=pb.EMBEDDING_KIND_SPARSE))
    assert not sparse.embeddings[0].HasField("dense") and sparse.embeddings[0].HasField("sparse")


@pytest.mark.parametrize("sparse_model", ["bm25-wordpiece", "all-minilm-l6-v2"])
async def test_wordpiece_sparse_model_weighs_token_ids(stub, sparse_model):
    reply = await stub.Embed(_texts("the cat and the dog", kind=pb.EMBEDDING_KIND_SPARSE, sparse_model=sparse_model))
    weights = dict(zip(reply.embeddings[0].sparse.indices, reply.embeddings[0].sparse.values, strict=True))
    assert 101 not in weights and 102 not in weights  # [CLS]/[SEP]
    assert weights[1996] > weights[4937] > 0  # "the" twice outweighs "cat" once


async def test_unknown_sparse_model_and_english_on_token_ids_are_invalid(stub):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Embed(_texts("x y", kind=pb.EMBEDDING_KIND_SPARSE, sparse_model="splade"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "bm25-english" in err.value.details()
    request = pb.EmbedRequest(token_inputs=pb.TokenInputs(sequences=[pb.TokenIds(ids=[101, 7592, 102])]),
                              options=pb.EmbedOptions(kind=pb.EMBEDDING_KIND_SPARSE))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Embed(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "bm25-wordpiece" in err.value.details()


async def test_embed_token_inputs_match_texts(stub, embedder):
    ids = embedder._tokenizer.encode(TEXTS[0]).ids
    by_ids = await stub.Embed(pb.EmbedRequest(token_inputs=pb.TokenInputs(sequences=[pb.TokenIds(ids=ids)])))
    by_text = await stub.Embed(_texts(TEXTS[0]))
    np.testing.assert_allclose(by_ids.embeddings[0].dense.values, by_text.embeddings[0].dense.values, atol=1e-5)


async def test_truncation_policies(stub):
    long = "word " * 400
    end = await stub.Embed(_texts(long, "short"))
    assert end.embeddings[0].token_count == 256 and end.embeddings[0].truncated
    assert not end.embeddings[1].truncated
    start = await stub.Embed(_texts(long, truncation=pb.TRUNCATION_POLICY_TRUNCATE_START))
    assert start.embeddings[0].token_count == 256
    code, violations, details = await _error(stub.Embed(_texts("ok", long, truncation=pb.TRUNCATION_POLICY_REJECT)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert violations[0][0] == "texts[1]" and "max_input_tokens 256" in details


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.EmbedRequest(texts=pb.TextInputs()), "texts"),
        (pb.EmbedRequest(), "texts"),
        (_texts("fine", ""), "texts[1]"),
        (_texts(*(["x"] * 2048)), "texts"),
        (_texts("x", dimensions=128), "options.dimensions"),
        (_texts("x", prompt_name="query"), "options.prompt_name"),
        (pb.EmbedRequest(token_inputs=pb.TokenInputs(sequences=[pb.TokenIds(ids=[101, 99999999])])), "token_inputs[0]"),
        (pb.EmbedRequest(token_inputs=pb.TokenInputs(sequences=[pb.TokenIds()])), "token_inputs[0]"),
    ],
)
async def test_embed_bad_input_is_invalid_argument_with_field(stub, request_, field):
    code, violations, _ = await _error(stub.Embed(request_))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert violations[0][0] == field


async def test_ids_of_another_tokenizer_say_so(stub):
    # What LangChain's OpenAIEmbeddings sends by default: tiktoken (cl100k) ids for "Hello world".
    code, violations, details = await _error(
        stub.Embed(pb.EmbedRequest(token_inputs=pb.TokenInputs(sequences=[pb.TokenIds(ids=[9906, 1917, 100257])])))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and violations[0][0] == "token_inputs[0]"
    assert "100257" in details and "30522" in details and "check_embedding_ctx_length=False" in details


async def test_unknown_model_is_not_found(stub):
    for call in (
        stub.Embed(pb.EmbedRequest(model="nope", texts=pb.TextInputs(texts=["x"]))),
        stub.Rerank(pb.RerankRequest(model="nope", query="q", passages=["p"])),
        stub.GetInfo(pb.GetInfoRequest(model="nope")),
    ):
        code, _, details = await _error(call)
        assert code == grpc.StatusCode.NOT_FOUND and "all-minilm-l6-v2" in details
    alias = await stub.Embed(pb.EmbedRequest(model="sentence-transformers/all-MiniLM-L6-v2", texts=pb.TextInputs(texts=["x"])))
    assert alias.model == "all-minilm-l6-v2"


async def test_concurrent_requests_share_forward_passes(stub, embedder):
    before = embedder.batcher.batches
    replies = await asyncio.gather(*(stub.Embed(_texts(f"sentence number {i}")) for i in range(16)))
    assert all(len(r.embeddings) == 1 for r in replies)
    assert embedder.batcher.batches - before < 16


async def test_embed_stream_answers_each_batch_with_its_indices(stub):
    async def batches():
        yield pb.EmbedStreamRequest(request_id="a", texts=pb.TextInputs(texts=TEXTS))
        yield pb.EmbedStreamRequest(request_id="bad", texts=pb.TextInputs(texts=["ok", ""]))
        yield pb.EmbedStreamRequest(request_id="b", texts=pb.TextInputs(texts=["one"]),
                                    options=pb.EmbedOptions(kind=pb.EMBEDDING_KIND_SPARSE))

    replies = {r.request_id: r async for r in stub.EmbedStream(batches())}
    assert set(replies) == {"a", "bad", "b"}
    assert [e.index for e in replies["a"].embeddings] == [0, 1, 2]
    assert all(len(e.dense.values) == 384 for e in replies["a"].embeddings)
    assert replies["bad"].error.code == "INVALID_ARGUMENT" and "texts[1]" in replies["bad"].error.message
    assert not replies["bad"].embeddings
    assert replies["b"].embeddings[0].HasField("sparse") and not replies["a"].HasField("error")
    assert replies["a"].usage.prompt_tokens > 0


async def test_rerank_sorts_by_cosine(stub):
    reply = await stub.Rerank(pb.RerankRequest(
        query="Which city is France's capital?", passages=["I like pizza.", TEXTS[0], "Berlin is in Germany."],
        return_text=True, request_id="rr",
    ))
    assert reply.request_id == "rr" and [r.index for r in reply.results][0] == 1
    assert reply.results[0].text == TEXTS[0] and reply.results[0].score == pytest.approx(0.878, abs=0.01)
    scores = [r.score for r in reply.results]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    top = await stub.Rerank(pb.RerankRequest(query="capital of France", passages=TEXTS, top_n=1))
    assert len(top.results) == 1 and top.results[0].index == 0 and top.results[0].text == ""
    assert top.usage.prompt_tokens > 0


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.RerankRequest(query="", passages=["p"]), "query"),
        (pb.RerankRequest(query="q"), "passages"),
        (pb.RerankRequest(query="q", passages=["p", ""]), "passages[1]"),
        (pb.RerankRequest(query="q", passages=["p"], top_n=0), "top_n"),
        (pb.RerankRequest(query="q", passages=["p", "word " * 300], truncation=pb.TRUNCATION_POLICY_REJECT),
         "passages[1]"),
    ],
)
async def test_rerank_bad_input(stub, request_, field):
    code, violations, _ = await _error(stub.Rerank(request_))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and violations[0][0] == field


async def test_get_info(stub, embedder):
    info = await stub.GetInfo(pb.GetInfoRequest(request_id="i"))
    assert (info.request_id, info.model, info.dimensions, info.max_input_tokens) == ("i", "all-minilm-l6-v2", 384, 256)
    assert info.revision == embedder.source.revision and len(info.revision) == 64
    assert info.engine == "onnxruntime" and info.engine_version
    assert info.max_batch_size == 1024 and info.sparse_dimensions == 2**31
    assert list(info.sparse_models) == ["bm25-english", "bm25-wordpiece"]
    assert info.pooling == pb.POOLING_MEAN and info.model_type == pb.MODEL_TYPE_EMBEDDING
    assert list(info.models) == ["all-minilm-l6-v2"] and not info.supported_dimensions


async def test_unavailable_and_not_serving_until_loaded():
    deferred = Deferred("embedding model")
    async def watch(channel):
        health = health_pb2_grpc.HealthStub(channel)
        return (await health.Check(health_pb2.HealthCheckRequest(service="genai.embedding.v1.EmbeddingService"))).status

    server = GrpcServer(ServerSettings(host="127.0.0.1", port=0, grace_seconds=0.5), [service_spec(deferred)])
    port = await server.start()
    channel = create_channel(f"127.0.0.1:{port}")
    try:
        assert await watch(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
        code, _, _ = await _error(pb_grpc.EmbeddingServiceStub(channel).Embed(_texts("x")))
        assert code == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()
        await server.stop(0.1)
