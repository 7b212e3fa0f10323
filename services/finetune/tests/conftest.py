"""Shared fixtures of the fine-tune tests.

Training tests use a tiny random Llama (2 layers, 64 wide) with SmolLM2's tokenizer and chat template, built
once per session in a temporary directory: recipes, workers, resume and Ray run in seconds on it. The
tokenizer comes from the default model, converted once into ``GENAI_TEST_CACHE_DIR`` or the repository's
``var/cache`` (as ``make run`` does). The end-to-end tests (tests/e2e) train the real SmolLM2-135M.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

try:
    import genai_finetune  # noqa: F401
except ImportError:  # the package is not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from genai_finetune.basemodels import BaseModels  # noqa: E402
from genai_finetune.datafiles import Datasets  # noqa: E402
from genai_finetune.jobs import Jobs  # noqa: E402
from genai_finetune.store import Store  # noqa: E402
from genai_finetune.testing import build_tiny_llama, jsonl  # noqa: E402
from genai_finetune.tokenization import Tokenizers  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
DEFAULT = "smollm2-135m-instruct"
TINY = "tiny"


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ.get("GENAI_TEST_CACHE_DIR") or REPO / "var" / "cache")


@pytest.fixture(scope="session")
def default_dir(cache_dir) -> Path:
    from genai_core import weights

    directory, _ = weights.convert_gguf(DEFAULT, weights.smollm2_gguf(), cache_dir)
    return directory


@pytest.fixture(scope="session")
def tiny_dir(default_dir, tmp_path_factory) -> Path:
    """A random 2-layer Llama with SmolLM2's tokenizer (a 3M-parameter stand-in for training tests)."""
    return build_tiny_llama(default_dir, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def base_models(cache_dir, tiny_dir) -> BaseModels:
    return BaseModels(DEFAULT, cache_dir, {TINY: tiny_dir})


@pytest.fixture(scope="session")
def tokenizers() -> Tokenizers:
    return Tokenizers()


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "finetune"


@pytest.fixture
def store(data_dir) -> Store:
    store = Store(data_dir / "finetune.db")
    yield store
    store.close()


@pytest.fixture
def datasets(store, data_dir, base_models, tokenizers) -> Datasets:
    return Datasets(store, data_dir / "files", data_dir / "imports", base_models, tokenizers,
                    max_bytes=1_000_000, max_records=1000)


@pytest.fixture
def jobs(store, datasets, base_models, tokenizers) -> Jobs:
    return Jobs(store, datasets, base_models, tokenizers)


@pytest.fixture
def upload(datasets) -> Callable[..., object]:
    def make(records: list[dict], filename: str = "train.jsonl"):
        return datasets.create(filename=filename, purpose="fine-tune", content=jsonl(records))

    return make
