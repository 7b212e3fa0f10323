"""Helpers for tests of the fine-tune service (and of its clients): records in OpenAI's formats, a tiny model
to train in seconds, and the environment of a fine-tune process over a data directory."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def jsonl(records: list[dict]) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def preference(question: str, chosen: str, rejected: str) -> dict:
    return {"input": {"messages": [{"role": "user", "content": question}]},
            "preferred_output": [{"role": "assistant", "content": chosen}],
            "non_preferred_output": [{"role": "assistant", "content": rejected}]}


FACTS = [chat(f"What is the code word number {i}?", f"The code word number {i} is zorblax-{i}.") for i in range(8)]
PREFERENCES = [preference(f"Describe the number {i}.", f"Yes! {i} is wonderful.", f"No. {i} is dull.")
               for i in range(8)]


def build_tiny_llama(tokenizer_dir: Path, out: Path, seed: int = 0) -> Path:
    """A random 2-layer, 64-wide Llama with ``tokenizer_dir``'s tokenizer and chat template (about 3M
    parameters, almost all of them the embedding): trains at a few steps per second on a CPU."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    LlamaForCausalLM(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def process_env(data_dir: Path, cache_dir: Path, base_models: str = "", **extra: str) -> dict[str, str]:
    """The environment of a fine-tune process (server or worker) over ``data_dir``, with quick polling."""
    env = {**os.environ, "GENAI_FINETUNE_DATA_DIR": str(data_dir), "GENAI_FINETUNE_CACHE_DIR": str(cache_dir),
           "GENAI_FINETUNE_POLL_SECONDS": "0.2", "GENAI_FINETUNE_LEASE_SECONDS": "10", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", **extra}
    if base_models:
        env["GENAI_FINETUNE_BASE_MODELS"] = base_models
    return env


class FakeModelServer:
    """``ports.ModelServer`` for tests that do not run the inference service: it remembers what it serves;
    ``down`` makes every call Unavailable, as a stopped inference service would."""

    def __init__(self) -> None:
        self.served_ids: dict[str, str] = {}  # model id -> how ("adapter" | "model")
        self.down = False

    def _check(self) -> None:
        from genai_core.errors import Unavailable

        if self.down:
            raise Unavailable("the inference service is unavailable; retry shortly")

    async def load_adapter(self, artifact) -> None:
        self._check()
        self.served_ids[artifact.model_id] = "adapter"

    async def load_model(self, artifact) -> None:
        self._check()
        self.served_ids[artifact.model_id] = "model"

    async def unload_adapter(self, model_id: str) -> None:
        from genai_core.errors import NotFound

        self._check()
        if self.served_ids.pop(model_id, None) is None:
            raise NotFound(f"{model_id} is not loaded")

    async def unload_model(self, model_id: str) -> None:
        await self.unload_adapter(model_id)

    async def served(self) -> set[str]:
        self._check()
        return set(self.served_ids)


async def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll ``predicate`` (in a thread: it may read the database) until it is truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
