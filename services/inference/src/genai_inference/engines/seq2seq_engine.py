"""Text-to-text models (an encoder-decoder such as T5, pretrained by the fine-tune service) as a ``Backend``: the
prompt goes to the encoder, the decoder writes the completion with transformers' ``generate``. Requests run one
at a time (an encoder-decoder does not share the decoder-only KV batches of the scheduler); a request asks for
what ``generate`` can do: greedy or sampled decoding, ``n`` completions, stop sequences and a seed. Log
probabilities and output constraints belong to the decoder-only engines and are refused with a clear error.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from genai_core.errors import InvalidArgument

from genai_inference.engines.base import adapter_not_loaded, adapters_unsupported
from genai_inference.types import (
    DoneEvent,
    FinishEvent,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    Timings,
    TokenEvent,
)
from genai_inference.types import Usage as TokenUsage


def is_encoder_decoder(directory: Path) -> bool:
    config = directory / "config.json"
    return config.exists() and bool(json.loads(config.read_text()).get("is_encoder_decoder"))


class Seq2SeqBackend:
    name = "torch-seq2seq"
    supports_adapters = False

    def __init__(self, model_id: str, directory: Path, revision: str, *, threads: int = 2,
                 context_length: int = 1024) -> None:
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        torch.set_num_threads(threads)
        self._torch = torch
        self.model = AutoModelForSeq2SeqLM.from_pretrained(str(directory), dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
        self._lock = threading.Lock()
        self._cancelled: set[str] = set()
        self.info = ModelInfo(id=model_id, revision=revision, engine=self.name, context_length=context_length,
                              max_new_tokens=context_length // 2, vocab_size=self.model.config.vocab_size,
                              has_chat_template=False, source=str(directory))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self.model = None

    def models(self) -> list[ModelInfo]:
        return [self.info]

    def cancel(self, request_id: str) -> bool:
        return False  # a request runs to its end once started (they are short)

    @property
    def adapters(self) -> dict[str, Path]:
        return {}

    def load_adapter(self, name: str, path: Path) -> None:
        raise adapters_unsupported(self.name)

    def unload_adapter(self, name: str) -> None:
        raise adapter_not_loaded(name)

    @staticmethod
    def _check(request: GenerationRequest) -> None:
        s = request.sampling
        unsupported = [(s.logprobs or s.top_logprobs, "sampling.logprobs"),
                       (s.prompt_logprobs is not None or s.echo, "sampling.prompt_logprobs"),
                       (request.constraint is not None, "constraint")]
        for asked, field in unsupported:
            if asked:
                raise InvalidArgument.for_field(field, f"'{request.model}' is a text-to-text (encoder-decoder) model: "
                                                "it returns text only, without log probabilities or constraints")

    def _run(self, request: GenerationRequest) -> list[tuple[list[int], str, FinishReason, str | None]]:
        torch, s = self._torch, request.sampling
        if s.seed is not None:
            torch.manual_seed(s.seed)
        ids = torch.tensor([list(request.prompt_ids)])
        kwargs = {"max_new_tokens": s.max_new_tokens, "min_new_tokens": s.min_new_tokens or None,
                  "num_return_sequences": s.n, "repetition_penalty": s.repetition_penalty}
        if s.greedy:
            kwargs.update(do_sample=False, num_beams=1)
        else:
            kwargs.update(do_sample=True, temperature=s.temperature, top_k=s.top_k or None, top_p=s.top_p)
        with self._lock, torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        eos, pad = self.model.config.eos_token_id, self.model.config.pad_token_id
        results = []
        for row in out.tolist():
            tokens = row[1:]  # after the decoder start token
            ended = eos in tokens
            tokens = [t for t in (tokens[:tokens.index(eos)] if ended else tokens) if t != pad]
            text = self.tokenizer.decode(tokens)  # sentinels stay: they say which span a piece fills
            reason, stop = (FinishReason.STOP if ended else FinishReason.LENGTH), None
            for sequence in s.stop:
                if sequence in text:
                    text, stop, reason = text[:text.index(sequence)], sequence, FinishReason.STOP_SEQUENCE
            results.append((tokens, text, reason, stop))
        return results

    async def generate(self, request: GenerationRequest) -> AsyncIterator:
        self._check(request)
        started = time.perf_counter()
        results = await asyncio.to_thread(self._run, request)
        elapsed = time.perf_counter() - started
        for index, (tokens, text, reason, stop) in enumerate(results):
            yield TokenEvent(index, tuple(tokens), text)
            yield FinishEvent(index, reason, stop_sequence=stop)
        completion = sum(len(r[0]) for r in results)
        yield DoneEvent(TokenUsage(len(request.prompt_ids), completion), Timings(0.0, elapsed, elapsed))
