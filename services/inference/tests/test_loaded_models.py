"""Fine-tune artifacts served at run time: a LoRA adapter by artifact id under its ft: name, full weights as a
model of their own (LoadModel), and prompt/prefix-tuning adapters whose virtual tokens really apply at
generation (peft's own generate() ignores a prefix with transformers 5: see prompt_learning_engine.py)."""

from __future__ import annotations

import shutil

import grpc
import pytest
import torch
from genai.inference.v1 import inference_service_pb2 as pb

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
PROMPT = "The capital of France is"


def _greedy(max_new_tokens: int = 8) -> pb.SamplingParams:
    return pb.SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, ignore_eos=True)


async def _error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


@pytest.fixture(scope="module")
def artifacts_dir(settings):
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    return settings.artifacts_dir


async def test_lora_artifact_is_served_under_its_fine_tuned_name(stub, lora_path, adapters_dir, artifacts_dir,
                                                                 restore_engine, idle):
    shutil.copytree(adapters_dir / lora_path, artifacts_dir / "ftart-lora1", dirs_exist_ok=True)
    name = f"ft:{MODEL}:demo:ftjob-lora1"
    loaded = await stub.LoadAdapter(pb.LoadAdapterRequest(adapter_name=name, base_model=MODEL,
                                                          artifact_id="ftart-lora1"))
    assert loaded.model.id == name and loaded.model.kind == pb.Model.KIND_ADAPTER
    assert loaded.model.base_model == MODEL and loaded.model.source.endswith("ftart-lora1")
    listed = [m.id for m in (await stub.ListModels(pb.ListModelsRequest())).models]
    assert listed == [MODEL, name]
    tuned = await stub.Generate(pb.GenerateRequest(model=name, text=PROMPT, sampling=_greedy()))
    base = await stub.Generate(pb.GenerateRequest(model=MODEL, text=PROMPT, sampling=_greedy()))
    assert tuned.model == name and base.model == MODEL
    assert tuned.completions[0].text != base.completions[0].text  # the random LoRA changes the output
    assert (await stub.GetModel(pb.GetModelRequest(model=name))).model.id == name
    again = await _error(stub.LoadAdapter(pb.LoadAdapterRequest(adapter_name=name, artifact_id="ftart-lora1")))
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS

    gone = await stub.UnloadAdapter(pb.UnloadAdapterRequest(adapter_name=name))
    assert gone.model.id == name
    missing = await _error(stub.Generate(pb.GenerateRequest(model=name, text=PROMPT, sampling=_greedy())))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_unknown_artifact_names_the_setting(stub):
    error = await _error(stub.LoadAdapter(pb.LoadAdapterRequest(adapter_name="x", artifact_id="ftart-nope")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "GENAI_INFERENCE_ARTIFACTS_DIR" in error.details()
    error = await _error(stub.LoadModel(pb.LoadModelRequest(model_id="ft:x", artifact_id="ftart-nope")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_full_weights_are_a_model_of_their_own(stub, source, artifacts_dir, idle):
    (artifacts_dir / "ftart-full1").symlink_to(source.directory.resolve(), target_is_directory=True)
    name = f"ft:{MODEL}:full:ftjob-full1"
    loaded = await stub.LoadModel(pb.LoadModelRequest(model_id=name, artifact_id="ftart-full1"), timeout=300)
    assert loaded.model.id == name and loaded.model.kind == pb.Model.KIND_BASE
    try:
        listed = [m.id for m in (await stub.ListModels(pb.ListModelsRequest(kind=pb.Model.KIND_BASE))).models]
        assert listed == [MODEL, name]
        mine = await stub.Generate(pb.GenerateRequest(model=name, text=PROMPT, sampling=_greedy()))
        default = await stub.Generate(pb.GenerateRequest(model=MODEL, text=PROMPT, sampling=_greedy()))
        assert mine.model == name
        assert mine.completions[0].text == default.completions[0].text  # the same weights, another scheduler
        chat = await stub.Chat(pb.ChatRequest(model=name, messages=[pb.ChatMessage(role="user", content="Hi")],
                                              sampling=_greedy(4)))
        assert chat.model == name and chat.choices[0].message.content
        taken = await _error(stub.LoadModel(pb.LoadModelRequest(model_id=MODEL, artifact_id="ftart-full1")))
        assert taken.code() == grpc.StatusCode.ALREADY_EXISTS
    finally:
        unloaded = await stub.UnloadModel(pb.UnloadModelRequest(model_id=name))
    assert unloaded.model.id == name
    gone = await _error(stub.Generate(pb.GenerateRequest(model=name, text=PROMPT, sampling=_greedy())))
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    default_stays = await _error(stub.UnloadModel(pb.UnloadModelRequest(model_id=MODEL)))
    assert default_stays.code() == grpc.StatusCode.FAILED_PRECONDITION


def _prompt_learning_adapter(source, target, kind: str):
    """A peft prompt- or prefix-tuning adapter with its random initialization (which moves the output a lot),
    and the peft model itself, whose forward pass is the reference."""
    import peft
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(source.directory), dtype=torch.float32).eval()
    config = {
        "prefix": peft.PrefixTuningConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=8),
        "prompt": peft.PromptTuningConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=8),
    }[kind]
    model = peft.get_peft_model(base, config).eval()
    if kind == "prompt":  # random embeddings of a normal token's size barely move a 135M model; larger ones do
        with torch.no_grad():
            model.prompt_encoder["default"].embedding.weight.mul_(50)
    model.peft_config["default"].base_model_name_or_path = str(source.directory)
    model.save_pretrained(str(target))
    return model


def _forward_greedy(model, ids: list[int], steps: int) -> list[int]:
    """Greedy decoding as repeated full forward passes of the peft model: no cache, no generate()."""
    out: list[int] = []
    current = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=current, attention_mask=torch.ones_like(current)).logits
            token = int(logits[0, -1].argmax())
            out.append(token)
            current = torch.cat([current, torch.tensor([[token]])], dim=1)
    return out


@pytest.mark.parametrize("kind", ["prefix", "prompt"])
async def test_prompt_learning_adapter_applies_at_generation(stub, source, tokenizer, artifacts_dir, idle, kind):
    artifact = f"ftart-{kind}1"
    reference = _prompt_learning_adapter(source, artifacts_dir / artifact, kind)
    name = f"ft:{MODEL}:{kind}:ftjob-{kind}1"
    loaded = await stub.LoadModel(pb.LoadModelRequest(model_id=name, base_model=MODEL, artifact_id=artifact),
                                  timeout=300)
    assert loaded.model.kind == pb.Model.KIND_ADAPTER and loaded.model.base_model == MODEL
    try:
        steps = 8
        tuned = await stub.Generate(pb.GenerateRequest(model=name, text=PROMPT, sampling=_greedy(steps),
                                                       return_token_ids=True))
        base = await stub.Generate(pb.GenerateRequest(model=MODEL, text=PROMPT, sampling=_greedy(steps),
                                                      return_token_ids=True))
        ids = tokenizer(PROMPT).input_ids
        expected = _forward_greedy(reference, ids, steps)
        assert list(tuned.completions[0].token_ids) == expected  # the adapter's own forward pass, token for token
        assert list(tuned.completions[0].token_ids) != list(base.completions[0].token_ids)
        # and peft's generate() on the same model (the path that ignores a prefix) is not what we serve
        if kind == "prefix":
            with torch.no_grad():
                ignored = reference.generate(input_ids=torch.tensor([ids]), max_new_tokens=steps, do_sample=False)
            assert ignored[0, len(ids):].tolist() == list(base.completions[0].token_ids)
    finally:
        await stub.UnloadModel(pb.UnloadModelRequest(model_id=name))
