"""LoadModel / UnloadModel: an encoder artifact served mean-pooled by Embed, a cross-encoder artifact run by Rerank,
each refused on the route that is not its kind, both listed by GetInfo while loaded."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from genai.embedding.v1 import embedding_service_pb2 as pb
from genai.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from genai_core.deferred import Deferred
from genai_core.testing import running_server


@pytest.fixture(scope="module")
def artifacts(source, tmp_path_factory):
    """A random 2-layer BERT encoder and a cross-encoder (one-label sequence classifier), as artifacts."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    root = tmp_path_factory.mktemp("artifacts")
    tokenizer = AutoTokenizer.from_pretrained(str(source.directory))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, num_labels=1)
    torch.manual_seed(0)
    for name, model in (("ftart-encoder", BertModel(config)), ("ftart-cross", BertForSequenceClassification(config))):
        model.save_pretrained(str(root / name))
        tokenizer.save_pretrained(str(root / name))
    return root


@pytest.fixture(scope="module")
async def loaded_stub(artifacts, settings):
    from dataclasses import replace

    from genai_embedding.embedder import Embedder
    from genai_embedding.servicer import service_spec

    embedder = Embedder.load(replace(settings, artifacts_dir=artifacts))
    deferred = Deferred("embedding model")
    deferred.set(embedder)
    async with running_server([service_spec(deferred)]) as (_, channel):
        yield pb_grpc.EmbeddingServiceStub(channel)
    await embedder.close()


async def test_encoder_embeds_mean_pooled_and_unloads(loaded_stub):
    stub = loaded_stub
    loaded = await stub.LoadModel(pb.LoadModelRequest(model_id="ft:scratch:enc:ftjob-1", artifact_id="ftart-encoder"))
    assert loaded.model_type == pb.MODEL_TYPE_EMBEDDING
    info = await stub.GetInfo(pb.GetInfoRequest(model="ft:scratch:enc:ftjob-1"))
    assert info.dimensions == 32 and "ft:scratch:enc:ftjob-1" in info.models
    reply = await stub.Embed(pb.EmbedRequest(model="ft:scratch:enc:ftjob-1",
                                             texts=pb.TextInputs(texts=["To be, or not to be", "Alas, poor Yorick"])))
    vectors = np.array([e.dense.values for e in reply.embeddings])
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert reply.model == "ft:scratch:enc:ftjob-1" and reply.usage.prompt_tokens > 0
    default = await stub.Embed(pb.EmbedRequest(texts=pb.TextInputs(texts=["To be"])))
    assert len(default.embeddings[0].dense.values) == 384  # the default model is untouched
    await stub.UnloadModel(pb.UnloadModelRequest(model_id="ft:scratch:enc:ftjob-1"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Embed(pb.EmbedRequest(model="ft:scratch:enc:ftjob-1", texts=pb.TextInputs(texts=["x"])))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_cross_encoder_reranks_and_has_no_embeddings(loaded_stub):
    stub = loaded_stub
    loaded = await stub.LoadModel(pb.LoadModelRequest(model_id="ft:reranker:x:ftjob-2", artifact_id="ftart-cross"))
    assert loaded.model_type == pb.MODEL_TYPE_RERANKER
    passages = ["The king is dead.", "Long live the king.", "A horse, a horse!"]
    reply = await stub.Rerank(pb.RerankRequest(model="ft:reranker:x:ftjob-2", query="Who is king?",
                                               passages=passages, return_text=True))
    scores = [r.score for r in reply.results]
    assert sorted(r.index for r in reply.results) == [0, 1, 2] and scores == sorted(scores, reverse=True)
    assert all(0.0 < s < 1.0 for s in scores) and reply.results[0].text in passages
    raw = await stub.Rerank(pb.RerankRequest(model="ft:reranker:x:ftjob-2", query="Who is king?",
                                             passages=passages, raw_scores=True))
    assert [r.index for r in raw.results] == [r.index for r in reply.results]
    info = await stub.GetInfo(pb.GetInfoRequest(model="ft:reranker:x:ftjob-2"))
    assert info.model_type == pb.MODEL_TYPE_RERANKER
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.Embed(pb.EmbedRequest(model="ft:reranker:x:ftjob-2", texts=pb.TextInputs(texts=["x"])))
    assert error.value.code() is grpc.StatusCode.FAILED_PRECONDITION and "Rerank" in error.value.details()
    await stub.UnloadModel(pb.UnloadModelRequest(model_id="ft:reranker:x:ftjob-2"))


async def test_bad_loads_are_refused(loaded_stub):
    stub = loaded_stub
    for request, code in ((pb.LoadModelRequest(model_id="m", artifact_id="../etc"), grpc.StatusCode.INVALID_ARGUMENT),
                          (pb.LoadModelRequest(model_id="m", artifact_id="ftart-none"), grpc.StatusCode.NOT_FOUND),
                          (pb.LoadModelRequest(model_id="all-minilm-l6-v2", artifact_id="ftart-encoder"),
                           grpc.StatusCode.ALREADY_EXISTS)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.LoadModel(request)
        assert info.value.code() is code
