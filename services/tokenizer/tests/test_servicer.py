"""TokenizerService over an in-process server with the production interceptors."""

from __future__ import annotations

import re

import grpc
import pytest
from genai.tokenizer.v1 import tokenizer_service_pb2 as pb
from genai.tokenizer.v1 import tokenizer_service_pb2_grpc as pb_grpc
from genai_core.status import field_violations
from genai_core.testing import running_server
from genai_tokenizer.servicer import SERVICE_NAME, service_spec
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
async def served(registry):
    async with running_server([service_spec(registry)]) as (server, channel):
        yield server, pb_grpc.TokenizerServiceStub(channel)


@pytest.fixture
def stub(served):
    return served[1]


async def _error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def _detail(error, kind):
    status = rpc_status.from_call(error)
    for any_ in status.details if status else []:
        if any_.Is(kind.DESCRIPTOR):
            msg = kind()
            any_.Unpack(msg)
            return msg
    return None


def _struct(value: dict) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


# -- Tokenize / CountTokens / Detokenize ----------------------------------------------------------


async def test_tokenize(stub):
    reply = await stub.Tokenize(
        pb.TokenizeRequest(tokenizer=MINILM, texts=["Hello world", "Hi"], return_tokens=True, return_offsets=True)
    )
    assert reply.tokenizer == MINILM
    first, second = reply.encodings
    assert list(first.ids) == [101, 7592, 2088, 102]
    assert list(first.tokens) == ["[CLS]", "hello", "world", "[SEP]"]
    assert [(o.start, o.end) for o in first.offsets] == [(0, 0), (0, 5), (6, 11), (0, 0)]
    assert list(first.special_flags) == [True, False, False, True]
    assert first.token_count == 4
    assert second.token_count == len(second.ids) == 3


async def test_tokenize_optional_fields_default(stub):
    (enc,) = (await stub.Tokenize(pb.TokenizeRequest(tokenizer=MINILM, texts=["Hello world"]))).encodings
    assert list(enc.ids) == [101, 7592, 2088, 102]  # add_special_tokens defaults to true
    assert list(enc.tokens) == [] and list(enc.offsets) == []
    (enc,) = (
        await stub.Tokenize(pb.TokenizeRequest(tokenizer=MINILM, texts=["Hello world"], add_special_tokens=False))
    ).encodings
    assert list(enc.ids) == [7592, 2088]


async def test_empty_tokenizer_selects_the_default(stub, smollm2):
    reply = await stub.Tokenize(pb.TokenizeRequest(texts=["Hello world"]))
    assert reply.tokenizer == SMOLLM2
    assert list(reply.encodings[0].ids) == smollm2.encode(["Hello world"])[0].ids


async def test_count_tokens(stub):
    reply = await stub.CountTokens(pb.CountTokensRequest(tokenizer=MINILM, texts=["Hello world", "Hello"]))
    assert list(reply.counts) == [4, 3]
    assert reply.total == 7
    reply = await stub.CountTokens(
        pb.CountTokensRequest(tokenizer=MINILM, texts=["Hello world"], add_special_tokens=False)
    )
    assert list(reply.counts) == [2] and reply.total == 2


async def test_detokenize_round_trip(stub):
    text = "Round-trip: ünïcode, 東京, and code()."
    ids = (await stub.Tokenize(pb.TokenizeRequest(tokenizer=SMOLLM2, texts=[text]))).encodings[0].ids
    reply = await stub.Detokenize(
        pb.DetokenizeRequest(tokenizer=SMOLLM2, sequences=[pb.TokenIds(ids=ids), pb.TokenIds(ids=[])])
    )
    assert list(reply.texts) == [text, ""]
    assert reply.tokenizer == SMOLLM2


async def test_detokenize_skip_special(stub):
    seq = [pb.TokenIds(ids=[101, 7592, 2088, 102])]
    reply = await stub.Detokenize(pb.DetokenizeRequest(tokenizer=MINILM, sequences=seq, skip_special_tokens=True))
    assert list(reply.texts) == ["hello world"]
    reply = await stub.Detokenize(pb.DetokenizeRequest(tokenizer=MINILM, sequences=seq))
    assert list(reply.texts) == ["[CLS] hello world [SEP]"]


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_call",
    [
        lambda s: s.Tokenize(pb.TokenizeRequest(tokenizer="nope", texts=["x"])),
        lambda s: s.CountTokens(pb.CountTokensRequest(tokenizer="nope", texts=["x"])),
        lambda s: s.Detokenize(pb.DetokenizeRequest(tokenizer="nope", sequences=[pb.TokenIds(ids=[1])])),
        lambda s: s.GetTokenizer(pb.GetTokenizerRequest(tokenizer="nope")),
        lambda s: s.PackContext(pb.PackContextRequest(tokenizer="nope", token_budget=10)),
        lambda s: s.RenderChatTemplate(
            pb.RenderChatTemplateRequest(tokenizer="nope", messages=[pb.ChatMessage(role="user", content="x")])
        ),
    ],
)
async def test_unknown_tokenizer_is_not_found(stub, make_call):
    error = await _error(make_call(stub))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert "'nope'" in error.details() and MINILM in error.details()
    resource = _detail(error, error_details_pb2.ResourceInfo)
    assert (resource.resource_type, resource.resource_name) == ("tokenizer", "nope")


async def test_empty_texts(stub):
    error = await _error(stub.Tokenize(pb.TokenizeRequest(tokenizer=MINILM)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(error)] == ["texts"]
    error = await _error(stub.CountTokens(pb.CountTokensRequest(tokenizer=MINILM)))
    assert [f for f, _ in field_violations(error)] == ["texts"]


async def test_too_many_and_too_long_texts(stub):
    error = await _error(stub.Tokenize(pb.TokenizeRequest(tokenizer=MINILM, texts=["x"] * 17)))
    assert [f for f, _ in field_violations(error)] == ["texts"]
    error = await _error(stub.Tokenize(pb.TokenizeRequest(tokenizer=MINILM, texts=["ok", "x" * 5001])))
    assert [f for f, _ in field_violations(error)] == ["texts[1]"]


async def test_out_of_range_ids(stub):
    seqs = [pb.TokenIds(ids=[1, 2]), pb.TokenIds(ids=[3, 4, 30522])]
    error = await _error(stub.Detokenize(pb.DetokenizeRequest(tokenizer=MINILM, sequences=seqs)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    ((field, description),) = field_violations(error)
    assert field == "sequences[1].ids[2]"
    assert "30522" in description
    error = await _error(stub.Detokenize(pb.DetokenizeRequest(tokenizer=MINILM)))
    assert [f for f, _ in field_violations(error)] == ["sequences"]


# -- request ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_call",
    [
        lambda s, rid: s.Tokenize(pb.TokenizeRequest(request_id=rid, texts=["x"])),
        lambda s, rid: s.CountTokens(pb.CountTokensRequest(request_id=rid, texts=["x"])),
        lambda s, rid: s.Detokenize(pb.DetokenizeRequest(request_id=rid, sequences=[pb.TokenIds(ids=[1])])),
        lambda s, rid: s.GetTokenizer(pb.GetTokenizerRequest(request_id=rid)),
        lambda s, rid: s.ListTokenizers(pb.ListTokenizersRequest(request_id=rid)),
        lambda s, rid: s.PackContext(pb.PackContextRequest(request_id=rid, token_budget=100, question="q")),
        lambda s, rid: s.RenderChatTemplate(
            pb.RenderChatTemplateRequest(request_id=rid, messages=[pb.ChatMessage(role="user", content="x")])
        ),
    ],
)
async def test_request_id_is_echoed_or_generated(stub, make_call):
    assert (await make_call(stub, "client-chosen-42")).request_id == "client-chosen-42"
    first = (await make_call(stub, "")).request_id
    second = (await make_call(stub, "")).request_id
    assert HEX32.fullmatch(first) and HEX32.fullmatch(second)
    assert first != second


# -- chat templates -------------------------------------------------------------------------------


async def test_render_chat_template(stub, smollm2):
    reply = await stub.RenderChatTemplate(
        pb.RenderChatTemplateRequest(
            messages=[pb.ChatMessage(role="system", content="Be brief."), pb.ChatMessage(role="user", content="Hi!")],
            add_generation_prompt=True,
        )
    )
    assert reply.tokenizer == SMOLLM2
    assert "<|im_start|>user\nHi!<|im_end|>" in reply.text
    assert reply.text.endswith("<|im_start|>assistant\n")
    assert list(reply.ids) == smollm2.encode([reply.text], add_special_tokens=False)[0].ids
    assert reply.token_count == len(reply.ids)


TOOLS_TEMPLATE = (
    "{% for t in tools %}[tool {{ t.function.name }}: {{ t.function.description }}; "
    "params {{ t.function.parameters.properties | list | join(',') }}]{% endfor %}"
    "{% for m in messages %}<{{ m.role }}{% if m.name %} name={{ m.name }}{% endif %}>{{ m.content }}"
    "{% for c in m.tool_calls or [] %}(call {{ c.id }} {{ c.function.name }} city={{ c.function.arguments.city }})"
    "{% endfor %}{% if m.tool_call_id %}(answers {{ m.tool_call_id }}){% endif %}{% endfor %}"
)


async def test_tools_and_tool_calls_reach_the_template(stub):
    reply = await stub.RenderChatTemplate(
        pb.RenderChatTemplateRequest(
            tokenizer=MINILM,  # no template of its own: the request's is used
            chat_template=TOOLS_TEMPLATE,
            tools=[
                pb.Tool(
                    name="get_weather",
                    description="Weather for a city",
                    parameters=_struct({"type": "object", "properties": {"city": {"type": "string"}}}),
                )
            ],
            messages=[
                pb.ChatMessage(role="user", content="Paris?"),
                pb.ChatMessage(
                    role="assistant",
                    tool_calls=[pb.ToolCall(id="c1", name="get_weather", arguments=_struct({"city": "Paris"}))],
                ),
                pb.ChatMessage(role="tool", name="get_weather", tool_call_id="c1", content="sunny"),
            ],
        )
    )
    assert reply.text == (
        "[tool get_weather: Weather for a city; params city]"
        "<user>Paris?"
        "<assistant>(call c1 get_weather city=Paris)"
        "<tool name=get_weather>sunny(answers c1)"
    )


async def test_no_chat_template_is_failed_precondition(stub):
    error = await _error(
        stub.RenderChatTemplate(
            pb.RenderChatTemplateRequest(tokenizer=MINILM, messages=[pb.ChatMessage(role="user", content="x")])
        )
    )
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert _detail(error, error_details_pb2.ErrorInfo).reason == "NO_CHAT_TEMPLATE"


async def test_broken_template_and_missing_role(stub):
    error = await _error(
        stub.RenderChatTemplate(
            pb.RenderChatTemplateRequest(
                chat_template="{% for %}", messages=[pb.ChatMessage(role="user", content="x")]
            )
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(error)] == ["chat_template"]
    error = await _error(stub.RenderChatTemplate(pb.RenderChatTemplateRequest(messages=[pb.ChatMessage(content="x")])))
    assert [f for f, _ in field_violations(error)] == ["messages[0].role"]


# -- PackContext ----------------------------------------------------------------------------------


async def test_pack_context(stub, smollm2):
    chunks = ["Short relevant chunk.", " ".join(["filler"] * 300), "Another short chunk."]
    system, question = "Answer from context.", "What is in the chunks?"
    counts = smollm2.count(chunks, add_special_tokens=False)
    fixed = sum(smollm2.count([system, question], add_special_tokens=False))
    budget = fixed + counts[0] + counts[2] + 2 + 50  # separators of 1 token each, plus 50 to spare
    request = pb.PackContextRequest(
        token_budget=budget, system_prompt=system, question=question, chunks=chunks, reserved_tokens=20
    )
    greedy = await stub.PackContext(request)
    assert list(greedy.selected_indices) == [0, 2]
    assert list(greedy.chunk_token_counts) == counts
    assert greedy.fixed_tokens == fixed
    assert greedy.used_tokens + greedy.remaining_tokens == budget - 20
    request.strategy = pb.PACK_STRATEGY_PREFIX
    assert list((await stub.PackContext(request)).selected_indices) == [0]
    request.strategy = pb.PACK_STRATEGY_GREEDY
    request.separator_tokens = 0
    zero_sep = await stub.PackContext(request)
    assert zero_sep.used_tokens == fixed + counts[0] + counts[2]


async def test_pack_context_budget_errors(stub):
    error = await _error(stub.PackContext(pb.PackContextRequest(question="q")))
    assert [f for f, _ in field_violations(error)] == ["token_budget"]
    error = await _error(stub.PackContext(pb.PackContextRequest(token_budget=3, system_prompt="word " * 50)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(error)] == ["token_budget"]


# -- ListTokenizers / GetTokenizer ----------------------------------------------------------------


async def test_list_tokenizers(stub, registry):
    reply = await stub.ListTokenizers(pb.ListTokenizersRequest())
    ids = [t.id for t in reply.tokenizers]
    assert ids == sorted(ids) == [t.id for t in registry.list()]
    assert {SMOLLM2, MINILM} <= set(ids)
    assert reply.next_page_token == ""
    assert reply.default_tokenizer == SMOLLM2


async def test_list_tokenizers_pages_of_one(stub, registry):
    expected = [t.id for t in registry.list()]
    seen, token, pages = [], "", 0
    while True:
        reply = await stub.ListTokenizers(pb.ListTokenizersRequest(page_size=1, page_token=token))
        pages += 1
        assert len(reply.tokenizers) == 1
        seen.append(reply.tokenizers[0].id)
        token = reply.next_page_token
        if not token:
            break
        assert pages <= len(expected)
    assert seen == expected
    assert pages == len(expected)


async def test_list_tokenizers_page_size_limit(stub):
    error = await _error(stub.ListTokenizers(pb.ListTokenizersRequest(page_size=101)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(error)] == ["page_size"]
    assert len((await stub.ListTokenizers(pb.ListTokenizersRequest(page_size=100))).tokenizers) >= 2


async def test_get_tokenizer(stub):
    smol = (await stub.GetTokenizer(pb.GetTokenizerRequest(tokenizer=SMOLLM2))).tokenizer
    mini = (await stub.GetTokenizer(pb.GetTokenizerRequest(tokenizer=MINILM))).tokenizer
    default = (await stub.GetTokenizer(pb.GetTokenizerRequest())).tokenizer
    assert default == smol
    assert (smol.vocab_size, mini.vocab_size) == (49152, 30522)
    assert (smol.kind, mini.kind) == (pb.TOKENIZER_KIND_BPE, pb.TOKENIZER_KIND_WORDPIECE)
    assert smol.source == mini.source == pb.TOKENIZER_SOURCE_BUILTIN
    for info in (smol, mini):
        assert re.fullmatch(r"[0-9a-f]{64}", info.revision)
        assert (info.max_batch_size, info.max_input_chars) == (16, 5000)
        assert not info.HasField("create_time")
    assert smol.revision != mini.revision
    assert (smol.has_chat_template, mini.has_chat_template) == (True, False)
    assert (smol.max_length, mini.max_length) == (8192, 512)
    assert smol.model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert {(s.role, s.content, s.id) for s in mini.special_tokens} >= {("cls", "[CLS]", 101), ("sep", "[SEP]", 102)}


# -- TrainTokenizer -------------------------------------------------------------------------------


async def test_train_then_use(stub, corpus):
    reply = await stub.TrainTokenizer(
        pb.TrainTokenizerRequest(
            request_id="train-1",
            tokenizer_id="svc-bpe",
            kind=pb.TOKENIZER_KIND_BPE,
            vocab_size=400,
            inline=pb.InlineCorpus(texts=corpus),
            max_length=1024,
        )
    )
    assert reply.request_id == "train-1"
    info = reply.tokenizer
    assert info.id == "svc-bpe"
    assert info.kind == pb.TOKENIZER_KIND_BPE and info.source == pb.TOKENIZER_SOURCE_TRAINED
    assert 256 <= info.vocab_size <= 400
    assert info.max_length == 1024
    assert info.HasField("create_time") and info.create_time.seconds > 0
    assert reply.trained_chars == sum(map(len, corpus))

    text = "A brand new tokenizer, trained just now!"
    enc = (await stub.Tokenize(pb.TokenizeRequest(tokenizer="svc-bpe", texts=[text]))).encodings[0]
    assert enc.token_count > 0 and max(enc.ids) < info.vocab_size
    back = await stub.Detokenize(pb.DetokenizeRequest(tokenizer="svc-bpe", sequences=[pb.TokenIds(ids=enc.ids)]))
    assert list(back.texts) == [text]
    got = (await stub.GetTokenizer(pb.GetTokenizerRequest(tokenizer="svc-bpe"))).tokenizer
    assert got == info
    listed = [t.id for t in (await stub.ListTokenizers(pb.ListTokenizersRequest())).tokenizers]
    assert "svc-bpe" in listed

    again = await _error(
        stub.TrainTokenizer(
            pb.TrainTokenizerRequest(
                tokenizer_id="svc-bpe", kind=pb.TOKENIZER_KIND_BPE, vocab_size=400, inline=pb.InlineCorpus(texts=corpus)
            )
        )
    )
    assert again.code() is grpc.StatusCode.ALREADY_EXISTS


async def test_train_wordpiece_from_files(stub, corpus_file):
    reply = await stub.TrainTokenizer(
        pb.TrainTokenizerRequest(
            tokenizer_id="svc-wp",
            kind=pb.TOKENIZER_KIND_WORDPIECE,
            vocab_size=300,
            files=pb.CorpusFiles(paths=[corpus_file]),
            lowercase=True,
            min_frequency=1,
        )
    )
    assert reply.tokenizer.kind == pb.TOKENIZER_KIND_WORDPIECE
    assert reply.tokenizer.max_length == 2048  # the default
    enc = (await stub.Tokenize(pb.TokenizeRequest(tokenizer="svc-wp", texts=["QUICK Fox"], return_tokens=True))).encodings[0]
    assert list(enc.tokens) == ["[CLS]", "quick", "fox", "[SEP]"]


async def test_train_with_bad_kind(stub, corpus):
    error = await _error(
        stub.TrainTokenizer(
            pb.TrainTokenizerRequest(tokenizer_id="k", vocab_size=400, inline=pb.InlineCorpus(texts=corpus))
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(error)] == ["kind"]
    error = await _error(
        stub.TrainTokenizer(
            pb.TrainTokenizerRequest(tokenizer_id="k", kind=99, vocab_size=400, inline=pb.InlineCorpus(texts=corpus))
        )
    )
    assert [f for f, _ in field_violations(error)] == ["kind"]


async def test_train_without_corpus(stub):
    error = await _error(
        stub.TrainTokenizer(pb.TrainTokenizerRequest(tokenizer_id="c", kind=pb.TOKENIZER_KIND_BPE, vocab_size=400))
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(error)] == ["corpus"]


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"tokenizer_id": "bad id"}, "tokenizer_id"),
        ({"vocab_size": 10}, "vocab_size"),
        ({"min_frequency": 0}, "min_frequency"),
        ({"special_tokens": ["ok", " spaced"]}, "special_tokens[1]"),
        ({"files": pb.CorpusFiles(paths=["../../etc/passwd"])}, "files.paths[0]"),
        ({"files": pb.CorpusFiles(paths=["/etc/passwd"])}, "files.paths[0]"),
        ({"inline": pb.InlineCorpus(texts=["", ""])}, "corpus"),
    ],
)
async def test_train_invalid_arguments(stub, corpus, request_fields, field):
    fields = {
        "tokenizer_id": "invalid-train",
        "kind": pb.TOKENIZER_KIND_BPE,
        "vocab_size": 400,
        "inline": pb.InlineCorpus(texts=corpus[:50]),
        **request_fields,
    }
    if "files" in request_fields:
        del fields["inline"]
    error = await _error(stub.TrainTokenizer(pb.TrainTokenizerRequest(**fields)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(error)] == [field]


async def test_train_builtin_id_is_already_exists(stub, corpus):
    error = await _error(
        stub.TrainTokenizer(
            pb.TrainTokenizerRequest(
                tokenizer_id=MINILM, kind=pb.TOKENIZER_KIND_BPE, vocab_size=400,
                inline=pb.InlineCorpus(texts=corpus), overwrite=True,
            )
        )
    )
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    assert _detail(error, error_details_pb2.ResourceInfo).resource_name == MINILM


# -- server wiring --------------------------------------------------------------------------------


async def test_metrics_and_service_name(served):
    server, stub = served
    await stub.CountTokens(pb.CountTokensRequest(texts=["x"]))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.CountTokens(pb.CountTokensRequest(tokenizer="nope", texts=["x"]))
    sample = server.metrics.registry.get_sample_value
    labels = {"grpc_service": SERVICE_NAME, "grpc_method": "CountTokens"}
    assert sample("genai_grpc_requests_total", {**labels, "grpc_code": "OK"}) >= 1
    assert sample("genai_grpc_requests_total", {**labels, "grpc_code": "NOT_FOUND"}) >= 1
    assert SERVICE_NAME == "genai.tokenizer.v1.TokenizerService"
