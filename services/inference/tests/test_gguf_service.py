"""The onnxruntime-gguf engine as the service runs it: built by the engine registry (``backends.build``, the
composition root's path), behind the gRPC servicer: generation, streaming with logprobs, structured output,
prompt scoring with the prefix cache, LoRA adapters by RPC, and the engine it reports."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import grpc
import pytest
from genai.inference.v1 import inference_service_pb2 as pb
from genai.inference.v1 import inference_service_pb2_grpc as pb_grpc
from genai_core.deferred import Deferred
from genai_core.testing import running_server
from google.protobuf import struct_pb2

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
async def gguf_stub(settings):
    from genai_inference import backends
    from genai_inference.generation import Inference
    from genai_inference.metrics import InferenceMetrics
    from genai_inference.registry import ModelRegistry
    from genai_inference.servicer import service_spec
    from genai_inference.settings import EngineName

    gguf_settings = replace(settings, engine=EngineName.ONNXRUNTIME_GGUF, max_new_tokens=64)
    built = backends.build(gguf_settings, InferenceMetrics())
    await built.backend.start()
    deferred: Deferred = Deferred("inference engine")
    deferred.set(ModelRegistry.around(Inference(built.backend, built.tokenizer, gguf_settings)))
    async with running_server([service_spec(deferred)]) as (_server, channel):
        yield pb_grpc.InferenceServiceStub(channel)
    await built.backend.close()


def _chat(question: str) -> list[pb.ChatMessage]:
    return [pb.ChatMessage(role="user", content=question)]


async def test_info_names_the_engine_and_its_quantization(gguf_stub):
    info = await gguf_stub.GetInfo(pb.GetInfoRequest())
    assert info.engine == "onnxruntime-gguf"
    assert info.default_model.quantization == "Q4_1" and info.default_model.context_length == 8192


async def test_chat_answers(gguf_stub):
    reply = await gguf_stub.Chat(pb.ChatRequest(messages=_chat("Name one fruit that is yellow."),
                                                sampling=pb.SamplingParams(temperature=0.0, max_new_tokens=16)))
    choice = reply.choices[0]
    assert choice.message.content.strip()
    assert choice.finish_reason in (pb.FINISH_REASON_STOP, pb.FINISH_REASON_LENGTH)
    assert reply.usage.completion_tokens > 0


async def test_stream_with_logprobs(gguf_stub):
    deltas, complete = [], None
    async for event in gguf_stub.GenerateStream(pb.GenerateRequest(
            text="Once upon a time", return_token_ids=True,
            sampling=pb.SamplingParams(temperature=0.0, max_new_tokens=8, ignore_eos=True, top_logprobs=3))):
        if event.WhichOneof("event") == "delta":
            deltas.append(event.delta)
        elif event.WhichOneof("event") == "complete":
            complete = event.complete
    assert sum(len(d.token_ids) for d in deltas) == 8
    logprobs = [lp for d in deltas for lp in d.logprobs]
    assert len(logprobs) == 8 and all(len(lp.top_logprobs) == 3 and lp.logprob <= 0 for lp in logprobs)
    assert complete is not None and complete.usage.completion_tokens == 8


async def test_json_schema_output(gguf_stub):
    schema = struct_pb2.Struct()
    schema.update({"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"], "additionalProperties": False})
    reply = await gguf_stub.Chat(pb.ChatRequest(
        messages=_chat("Which city is the capital of Italy? Answer in JSON."),
        sampling=pb.SamplingParams(temperature=0.0, max_new_tokens=32),
        constraint=pb.OutputConstraint(json_schema=schema)))
    assert set(json.loads(reply.choices[0].message.content)) == {"city"}


async def test_scoring_twice_reuses_the_prompt(gguf_stub, tokenizer):
    ids = tokenizer("The committee met on Tuesday to review the budget for the coming year. " * 6).input_ids
    request = pb.GenerateRequest(token_ids=pb.TokenIds(ids=ids),
                                 sampling=pb.SamplingParams(max_new_tokens=0, prompt_logprobs=1, echo=True))
    first = await gguf_stub.Generate(request)
    second = await gguf_stub.Generate(request)
    assert len(first.prompt_logprobs) == len(second.prompt_logprobs) == len(ids)
    assert first.usage.cached_prompt_tokens == 0
    assert second.usage.cached_prompt_tokens == (len(ids) // 16) * 16 - 1
    assert [t.top_logprobs[0].token_id for t in first.prompt_logprobs[1:]] == [
        t.top_logprobs[0].token_id for t in second.prompt_logprobs[1:]]


async def test_adapter_by_rpc(gguf_stub, lora_path):
    loaded = await gguf_stub.LoadAdapter(pb.LoadAdapterRequest(adapter_name="rand", path=lora_path))
    assert loaded.model.id == f"{MODEL}:rand" and loaded.model.engine == "onnxruntime-gguf"
    try:
        request = pb.GenerateRequest(text="The weather today is", sampling=pb.SamplingParams(
            temperature=0.0, max_new_tokens=6, ignore_eos=True), return_token_ids=True)
        base = await gguf_stub.Generate(request)
        request.model = f"{MODEL}:rand"
        adapted = await gguf_stub.Generate(request)
        assert adapted.model == f"{MODEL}:rand"
        assert adapted.completions[0].token_ids != base.completions[0].token_ids
    finally:
        await gguf_stub.UnloadAdapter(pb.UnloadAdapterRequest(adapter_name="rand"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gguf_stub.Generate(pb.GenerateRequest(model=f"{MODEL}:rand", text="x"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_engine_runs_without_torch():
    """A deployment of the default engine needs no torch (it costs ~230 MB of resident memory)."""
    import subprocess

    code = ("import sys; from genai_inference.engines.gguf_engine import GgufEngine; "
            "from genai_inference.scheduler import Scheduler; from genai_inference.servicer import service_spec; "
            "from genai_inference.models import load_tokenizer; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stderr
