"""Session fixtures of the retrieval tests: the REAL embedding, tokenizer and inference services in-process.

* ``embedding_channel`` all-MiniLM-L6-v2 (onnxruntime) behind genai_embedding's servicer (skips without the model);
* ``tokenizer_channel`` genai_tokenizer's registry (SmolLM2 + MiniLM) behind its servicer;
* ``inference_channel`` SmolLM2-135M-Instruct (torch) behind genai_inference's servicer; generations stay short;
* ``make_stack``        a retrieval server over a fresh store (``edge`` or ``client`` local mode) per call.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

try:
    import genai_retrieval  # noqa: F401
except ImportError:  # the package is not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from genai_core.deferred import Deferred  # noqa: E402
from genai_core.testing import running_server  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ.get("GENAI_TEST_CACHE_DIR") or REPO / "var" / "cache")


@pytest.fixture(scope="session")
async def embedding_channel(cache_dir) -> AsyncIterator:
    from genai_embedding.embedder import Embedder
    from genai_embedding.model import resolve
    from genai_embedding.servicer import service_spec
    from genai_embedding.settings import EmbeddingSettings

    settings = EmbeddingSettings(cache_dir=cache_dir)
    try:
        resolve(settings.model, settings.model_path)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the default embedding model did not load: {exc}")  # a fresh clone has it: failing is right
    embedder = Embedder.load(settings)
    await embedder.warmup()
    deferred = Deferred("embedding model")
    deferred.set(embedder)
    async with running_server([service_spec(deferred)]) as (_server, channel):
        yield channel
    await embedder.close()


@pytest.fixture(scope="session")
async def tokenizer_channel(cache_dir, tmp_path_factory) -> AsyncIterator:
    from genai_tokenizer.registry import TokenizerRegistry
    from genai_tokenizer.servicer import service_spec
    from genai_tokenizer.settings import TokenizerSettings

    registry = TokenizerRegistry(TokenizerSettings(data_dir=tmp_path_factory.mktemp("tok"), cache_dir=cache_dir))
    try:
        registry.load()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the tokenizers did not load: {exc}")
    async with running_server([service_spec(registry)]) as (_server, channel):
        yield channel


@pytest.fixture(scope="session")
async def inference_channel(cache_dir, tmp_path_factory) -> AsyncIterator:
    import torch
    from genai_inference import backends
    from genai_inference.generation import Inference
    from genai_inference.metrics import InferenceMetrics
    from genai_inference.registry import ModelRegistry
    from genai_inference.servicer import service_spec
    from genai_inference.settings import InferenceSettings

    torch.set_num_threads(2)
    settings = InferenceSettings(cache_dir=cache_dir, data_dir=tmp_path_factory.mktemp("inf"), max_batch_size=4,
                                 max_new_tokens=32)
    try:
        built = backends.build(settings, InferenceMetrics())
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the default inference model did not load: {exc}")
    await built.backend.start()
    deferred = Deferred("inference engine")
    deferred.set(ModelRegistry.around(Inference(built.backend, built.tokenizer, settings)))  # what the servicer serves
    async with running_server([service_spec(deferred)]) as (_server, channel):
        yield channel
    await built.backend.close()


@pytest.fixture
def make_stack(embedding_channel, tmp_path):
    """``async with make_stack(kind, channels=...) as (stub, pipelines)``: a retrieval server over a new store,
    its ports over the real services' channels (the embedding service's always)."""
    from genai.retrieval.v1 import retrieval_service_pb2_grpc as pb_grpc
    from genai_core.downstream import Downstream
    from genai_core.settings import DownstreamSettings
    from genai_retrieval.clients import ChatClient, EmbeddingClient, PackingClient
    from genai_retrieval.pipelines import Pipelines
    from genai_retrieval.servicer import service_spec
    from genai_retrieval.settings import PREFIX, RetrievalSettings
    from genai_retrieval.store import open_store

    @asynccontextmanager
    async def make(kind: str = "edge", channels: dict | None = None, data_dir: Path | None = None, **overrides):
        data = data_dir or tmp_path / kind
        url = f"local:{data / 'qdrant'}" if kind == "client" else ""
        settings = RetrievalSettings(data_dir=data, qdrant_url=url, chunk_size_tokens=64, chunk_overlap_tokens=8,
                                     **overrides)
        store = open_store(settings.data_dir, settings.qdrant_url)
        downstream = Downstream(DownstreamSettings({}), caller_prefix=PREFIX,
                                channels={"embedding": embedding_channel, **(channels or {})})
        pipelines = Pipelines.build(settings, store, EmbeddingClient(downstream), ChatClient(downstream),
                                    PackingClient(downstream))
        deferred = Deferred("retrieval")
        deferred.set(pipelines)
        async with running_server([service_spec(deferred)]) as (_server, channel):
            try:
                yield pb_grpc.RetrievalServiceStub(channel), pipelines
            finally:
                store.close()

    return make
