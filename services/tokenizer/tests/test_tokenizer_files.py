"""GetTokenizerFiles (a tokenizer's files, so a model trained elsewhere uses exactly it) and the check that a
corpus is large enough for the vocabulary asked of it."""

from __future__ import annotations

import grpc
import pytest
from genai.tokenizer.v1 import tokenizer_service_pb2 as pb
from genai.tokenizer.v1 import tokenizer_service_pb2_grpc as pb_grpc
from genai_core.status import field_violations
from genai_core.testing import running_server
from genai_tokenizer.servicer import service_spec
from transformers import AutoTokenizer


@pytest.fixture(scope="module")
async def stub(registry):
    async with running_server([service_spec(registry)]) as (_, channel):
        yield pb_grpc.TokenizerServiceStub(channel)


async def test_trained_tokenizer_files_load_as_the_same_tokenizer(stub, corpus, tmp_path):
    trained = await stub.TrainTokenizer(pb.TrainTokenizerRequest(
        tokenizer_id="files-bpe", kind=pb.TOKENIZER_KIND_BPE, vocab_size=300, inline=pb.InlineCorpus(texts=corpus),
        overwrite=True))
    reply = await stub.GetTokenizerFiles(pb.GetTokenizerFilesRequest(tokenizer="files-bpe"))
    assert reply.tokenizer.revision == trained.tokenizer.revision
    names = {f.name for f in reply.files}
    assert {"tokenizer.json", "tokenizer_config.json"} <= names
    for f in reply.files:
        (tmp_path / f.name).write_bytes(f.content)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    expected = await stub.Tokenize(pb.TokenizeRequest(tokenizer="files-bpe", texts=[corpus[0]]))
    assert loaded(corpus[0], add_special_tokens=False).input_ids == list(expected.encodings[0].ids)
    assert len(loaded) == trained.tokenizer.vocab_size


async def test_builtin_files_leave_the_weights_out(stub):
    reply = await stub.GetTokenizerFiles(pb.GetTokenizerFilesRequest(tokenizer="all-minilm-l6-v2"))
    names = {f.name for f in reply.files}
    assert "tokenizer.json" in names and not any(n.endswith(".safetensors") for n in names)


async def test_unknown_tokenizer_is_not_found(stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetTokenizerFiles(pb.GetTokenizerFilesRequest(tokenizer="nope"))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_a_corpus_too_small_for_the_vocabulary_is_rejected(stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.TrainTokenizer(pb.TrainTokenizerRequest(
            tokenizer_id="too-big", kind=pb.TOKENIZER_KIND_BPE, vocab_size=8000,
            inline=pb.InlineCorpus(texts=["to be or not to be, that is the question"] * 20)))
    error = info.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "too small for a vocabulary of 8000" in error.details()
    assert [field for field, _ in field_violations(error)] == ["vocab_size"]
    listed = await stub.ListTokenizers(pb.ListTokenizersRequest())
    assert "too-big" not in {t.id for t in listed.tokenizers}  # nothing half-registered
