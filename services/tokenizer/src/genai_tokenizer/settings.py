"""The tokenizer service's settings: the only place it reads the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from genai_core.limits import TOKENIZER
from genai_core.services import service
from genai_core.settings import ServerSettings, load

PREFIX = service("tokenizer").env_prefix


@dataclass(frozen=True)
class TokenizerSettings:
    """Domain settings, read from ``GENAI_TOKENIZER_*``."""

    data_dir: Path = Path("var/tokenizer")  # trained tokenizers and training corpora live here
    cache_dir: Path = Path("var/cache")  # converted built-in tokenizers (shared with inference)
    default_tokenizer: str = "smollm2-135m-instruct"
    builtins: tuple[str, ...] = ("smollm2-135m-instruct", "all-minilm-l6-v2")
    max_batch_size: int = TOKENIZER.max_batch_size
    max_input_chars: int = TOKENIZER.max_input_chars
    max_training_chars: int = TOKENIZER.max_training_chars

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_input_chars < 1:
            raise ValueError("max_batch_size and max_input_chars must be positive")


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    tokenizer: TokenizerSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            server=ServerSettings.for_service("tokenizer", environ),
            tokenizer=load(TokenizerSettings, PREFIX, environ),
        )
