"""Shared session fixtures: settings over a temporary data dir, one loaded registry, a corpus.

Converting the SmolLM2 GGUF tokenizer takes ~10 s the first time; the converted files are
cached in ``GENAI_TEST_CACHE_DIR`` if set, else the repository's ``var/cache`` (where
``make run`` keeps them) if it exists, else a temporary directory of the session.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from genai_tokenizer.registry import TokenizerRegistry
from genai_tokenizer.settings import TokenizerSettings

REPO = Path(__file__).resolve().parents[3]
SMOLLM2 = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    if os.environ.get("GENAI_TEST_CACHE_DIR"):
        return Path(os.environ["GENAI_TEST_CACHE_DIR"])
    if (REPO / "var" / "cache").is_dir():
        return REPO / "var" / "cache"
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def settings(tmp_path_factory, cache_dir) -> TokenizerSettings:
    return TokenizerSettings(
        data_dir=tmp_path_factory.mktemp("tokenizer-data"),
        cache_dir=cache_dir,
        max_batch_size=16,
        max_input_chars=5000,
        max_training_chars=1_000_000,
    )


@pytest.fixture(scope="session")
def registry(settings) -> TokenizerRegistry:
    """Both built-ins, loaded once for the whole session (tests may add trained tokenizers to it)."""
    registry = TokenizerRegistry(settings)
    registry.load()
    return registry


@pytest.fixture(scope="session")
def smollm2(registry):
    return registry.get(SMOLLM2)


@pytest.fixture(scope="session")
def minilm(registry):
    return registry.get(MINILM)


@pytest.fixture
def make_registry(settings, tmp_path) -> Callable[..., TokenizerRegistry]:
    """A cheap registry (MiniLM only) over its own data directory, for tests that train or persist.

    ``make_registry(data_dir=..., load=True, **settings_overrides)``; the data dir defaults to
    a fresh temporary one per test.
    """

    def make(data_dir: Path | None = None, load: bool = True, **overrides) -> TokenizerRegistry:
        fields = {"builtins": (MINILM,), "default_tokenizer": MINILM, **overrides}
        local = replace(settings, data_dir=data_dir or tmp_path / "data", **fields)
        registry = TokenizerRegistry(local)
        if load:
            registry.load()
        return registry

    return make


WORDS = (
    "the quick brown fox jumps over lazy dog tokenizer model service token budget context chunk "
    "retrieval generation embedding vector search answer question prompt system user assistant "
    "data train vocabulary merge piece language text sentence encode decode byte pair word "
    "café naïve über résumé 東京 日本語 straße"
).split()


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    """Four hundred varied, deterministic lines (words, numbers, punctuation, some non-ASCII)."""
    rng = random.Random(1234)
    lines = []
    for i in range(400):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 16))]
        if i % 3 == 0:
            words[0] = words[0].capitalize()
        if i % 7 == 0:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 10_000)))
        lines.append(" ".join(words) + rng.choice([".", "!", "?", ",", ";", " :)", f" #{i}."]))
    return lines


@pytest.fixture(scope="session")
def corpus_file(settings, corpus) -> str:
    """The corpus as a file under the session data dir; returns its path relative to that dir."""
    path = settings.data_dir / "corpora" / "train.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(corpus) + "\n", encoding="utf-8")
    return "corpora/train.txt"
