"""llama.cpp engine: the original GGUF (SmolLM2 Q4_1) through llama-cpp-python, one request at a time.

llama.cpp runs the forward passes; everything around them is shared with the other local engines so
that outputs behave the same whatever the engine:

* the prompt is the token ids we tokenized with the HF tokenizer (the GGUF vocabulary is checked
  against it at load: same size, same ids for a probe text with special tokens);
* sampling is :class:`genai_inference.sampling.Sampler` on llama.cpp's logits (greedy, temperature,
  top-k/p, min-p, penalties, logit bias, min/ignore EOS, seeds), so a seed means the same thing here
  as in the torch engine; constraints mask the same logits with :class:`constraints.Matcher`;
* incremental detokenization and stop sequences are :class:`genai_inference.textstream.TextStream`.

There is no batching: requests wait in a bounded queue (``max_queue`` → RESOURCE_EXHAUSTED) for the
single worker thread; ``n`` completions run one after another. The KV cache keeps the last sequence,
so a request (or the next of ``n`` completions) that shares a prompt prefix evaluates only the rest.
A cancelled request stops before its next token. llama_cpp is imported lazily: it is an optional
extra (``pip install 'genai-inference[llamacpp]'``), compiled from source.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
from genai_core.errors import FailedPrecondition, InvalidArgument, Unavailable

from genai_inference.engines.base import adapter_not_loaded, adapters_unsupported
from genai_inference.intake import DONE, Intake, Pending
from genai_inference.models import ModelSource, eos_token_ids, model_info
from genai_inference.sampling import Sampler, log_softmax, top_k, top_logprobs
from genai_inference.settings import InferenceSettings
from genai_inference.textstream import TextStream
from genai_inference.types import (
    DoneEvent,
    Event,
    FinishEvent,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    Timings,
    TokenEvent,
    TokenLogprob,
    TopLogprob,
    Usage,
)

logger = logging.getLogger(__name__)

MAX_CONTEXT = 4096  # n_ctx cap: the KV cache of 8,192 positions would double memory for prompts we never see
_PROMPT_LOGITS_CHUNK = 64  # prompt positions per decode when every position's logits are needed
# A probe with special tokens, digits, accents and code: the GGUF and HF tokenizers must agree on it.
_PROBE = "<|im_start|>user\nWhat's 12 × 34? Café, naïve — `print(x)`\n\t  ok<|im_end|>\n<|im_start|>assistant\n"
# general.file_type of a GGUF (llama.cpp's llama_ftype), for ModelInfo.quantization.
_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
               12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
               32: "BF16"}


def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise FailedPrecondition(
            "the llamacpp engine needs llama-cpp-python; install the optional extra: "
            "pip install 'genai-inference[llamacpp]' (compiles llama.cpp, about 7 minutes)",
            reason="ENGINE_NOT_INSTALLED",
        ) from exc
    return llama_cpp


class LlamaCppBackend:
    """A ``Backend`` over one llama.cpp context; a worker thread runs the requests in order."""

    name = "llamacpp"

    def __init__(self, settings: InferenceSettings, source: ModelSource, tokenizer) -> None:
        if source.gguf is None:
            raise FailedPrecondition(
                "the llamacpp engine needs a GGUF model; set GENAI_INFERENCE_MODEL_PATH to a .gguf file "
                "(or leave it empty for the SmolLM2 GGUF)", reason="GGUF_REQUIRED")
        llama_cpp = _import_llama_cpp()

        self.settings = settings
        self.tokenizer = tokenizer
        self.max_queue = settings.max_queue
        self._lib = llama_cpp
        n_ctx = min(source.context_length, MAX_CONTEXT)
        self._llm = llama_cpp.Llama(
            model_path=str(source.gguf), n_ctx=n_ctx, n_threads=settings.threads,
            n_threads_batch=settings.threads, logits_all=False, verbose=False,
        )
        self._ctx = self._llm.ctx
        self._vocab = int(self._llm.n_vocab())
        self._n_batch = int(self._llm.n_batch)
        self._check_vocabulary(tokenizer)
        eos = set(eos_token_ids(source.directory))
        if self._llm.token_eos() >= 0:
            eos.add(int(self._llm.token_eos()))
        self.eos_token_ids = frozenset(eos)
        self._eos = np.array(sorted(i for i in eos if 0 <= i < self._vocab), dtype=np.int64)
        file_type = self._llm.metadata.get("general.file_type", "")
        quantization = _FILE_TYPES.get(int(file_type), f"file_type {file_type}") if file_type.isdigit() else ""
        self.info = replace(model_info(source, self.name, self._vocab, quantization),
                            context_length=n_ctx, max_new_tokens=n_ctx)
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._cached: list[int] = []  # tokens whose K/V sit in sequence 0, in order
        self._compiler = None
        self._token_text: dict[int, str] = {}
        self._intake = Intake(settings.max_queue)
        self._waiting = self._intake.waiting
        self._wake = self._intake.wake
        self._stop = False
        self._thread: threading.Thread | None = None

    def _check_vocabulary(self, tokenizer) -> None:
        hf_size = len(tokenizer)
        if hf_size > self._vocab:
            raise FailedPrecondition(f"the GGUF has {self._vocab} tokens but the tokenizer {hf_size}: they do not match",
                                     reason="VOCAB_MISMATCH")
        gguf_ids = self._llm.tokenize(_PROBE.encode(), add_bos=False, special=True)
        hf_ids = tokenizer(_PROBE, add_special_tokens=False).input_ids
        if list(gguf_ids) != list(hf_ids):
            raise FailedPrecondition(
                "the GGUF's vocabulary does not give the same token ids as the model's tokenizer "
                f"({len(gguf_ids)} vs {len(hf_ids)} ids for a probe text); use the tokenizer of this GGUF",
                reason="VOCAB_MISMATCH")

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="llamacpp-worker", daemon=True)
        self._thread.start()
        ids = tuple(self.tokenizer("Hello", add_special_tokens=False).input_ids)
        from genai_inference.types import Sampling

        warm = GenerationRequest("warmup", self.info.id, ids, "Hello", Sampling(max_new_tokens=2, temperature=0.0))
        async for _ in self.generate(warm):
            pass

    async def close(self) -> None:
        with self._wake:
            self._stop = True
        self._intake.stop()
        if self._thread:
            await asyncio.to_thread(self._thread.join, 10)
        if self._thread is None or not self._thread.is_alive():
            if self._batch is not None:
                self._lib.llama_batch_free(self._batch)
                self._batch = None
            self._llm.close()

    def models(self) -> list[ModelInfo]:
        return [self.info]

    supports_adapters = False
    adapters: Mapping[str, Path] = MappingProxyType({})

    def load_adapter(self, name: str, path: Path) -> None:
        raise adapters_unsupported(self.name)

    def unload_adapter(self, name: str) -> None:
        raise adapter_not_loaded(name)

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    # -- request side (event loop) ----------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        # Prompts were checked by generation.Inference (empty, vocabulary, context length).
        if request.adapter:
            raise adapters_unsupported(self.name)
        async for event in self._intake.submit(request):
            yield event

    def cancel(self, request_id: str) -> bool:
        return self._intake.cancel(request_id)

    # -- worker thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stop and not self._waiting:
                    self._wake.wait()
                if self._stop:
                    break
                entry = self._waiting.popleft()
            self._run(entry)
        with self._wake:
            left = list(self._waiting)
            self._waiting.clear()
        for entry in left:
            entry.emit(Unavailable("the inference engine stopped"))
            entry.emit(DONE)

    def _run(self, entry: Pending) -> None:
        request, params = entry.request, entry.request.sampling
        entry.admitted = time.monotonic()
        index = 0
        try:
            compiled = self._compile(request) if request.constraint is not None and not entry.cancelled else None
            for index in range(params.n):
                if entry.cancelled or self._stop:
                    entry.emit(FinishEvent(index, FinishReason.CANCELLED))
                    continue
                entry.emit(self._completion(entry, index, compiled))
        except Exception as exc:  # noqa: BLE001 - delivered to the request, never kills the worker
            self._cached = []  # the KV cache may be half-written
            if not entry.first_token:
                if not isinstance(exc, InvalidArgument | FailedPrecondition):
                    logger.exception("llama.cpp generation failed")
                entry.emit(exc)
                entry.emit(DONE)
                return
            logger.exception("llama.cpp generation failed after the first token")
            for rest in range(index, params.n):
                entry.emit(FinishEvent(rest, FinishReason.ERROR))
        end = time.monotonic()
        first = entry.first_token or end
        entry.emit(DoneEvent(
            Usage(len(request.prompt_ids), entry.completion_tokens, entry.cached_tokens),
            Timings(entry.admitted - entry.enqueued, first - entry.enqueued, end - entry.enqueued),
            entry.prompt_logprobs,
        ))
        entry.emit(DONE)

    def _compile(self, request: GenerationRequest):
        if self._compiler is None:
            from genai_inference.constraints import ConstraintCompiler

            self._compiler = ConstraintCompiler(self.tokenizer, self._vocab, eos_token_ids=sorted(self.eos_token_ids))
        return self._compiler.compile(request.constraint)

    def _completion(self, entry: Pending, index: int, compiled) -> FinishEvent:
        """Run completion ``index`` to its end, emitting TokenEvents; return its FinishEvent."""
        request = entry.request
        params = request.sampling if request.sampling.seed is None else replace(
            request.sampling, seed=request.sampling.seed + index)
        want_prompt = index == 0 and params.prompt_logprobs is not None
        logits = self._prefill(entry, request.prompt_ids, want_prompt, params.prompt_logprobs or 0)
        sampler = Sampler(params, request.prompt_ids, self._vocab, self.eos_token_ids)
        stream = TextStream(self.tokenizer, params.stop, request.prompt_ids)
        matcher = compiled.matcher() if compiled is not None else None
        generated = 0
        while True:
            finish, token = self._advance(entry, index, params, sampler, stream, matcher, logits, generated)
            if finish is not None:
                tail = stream.finish()
                if tail:
                    entry.emit(TokenEvent(index, (), tail))
                return finish
            generated += 1
            logits = self._decode([token], len(self._cached), want_all=False)[0]
            self._cached.append(token)

    @staticmethod
    def _numpy_greedy(sampler: Sampler) -> bool:
        p = sampler.params
        return (p.greedy and sampler.bias is None and p.repetition_penalty == 1.0 and not p.presence_penalty
                and not p.frequency_penalty)

    def _advance(self, entry: Pending, index: int, params, sampler: Sampler, stream: TextStream, matcher,
                 logits: np.ndarray, generated: int) -> tuple[FinishEvent | None, int]:
        """Pick the next token from ``logits`` and emit it; a FinishEvent when the completion ends
        (the same rules as the scheduler's, so the engines stop alike)."""
        request = entry.request
        if entry.cancelled or self._stop:
            return FinishEvent(index, FinishReason.CANCELLED), 0
        if request.deadline is not None and time.monotonic() > request.deadline:
            return FinishEvent(index, FinishReason.LENGTH), 0
        raw = logits.copy() if params.logprobs else None
        if self._numpy_greedy(sampler) and matcher is None:
            # Greedy without bias or penalties: what Sampler.process + choose do, minus their checks.
            if (params.ignore_eos or sampler.generated < params.min_new_tokens) and self._eos.size:
                logits[self._eos] = -np.inf
            token = int(np.argmax(logits))
        else:
            sampler.process(logits)
            if matcher is not None:
                matcher.mask_logits(logits)
            token = sampler.choose(logits)
        if not entry.first_token:
            entry.first_token = time.monotonic()
        sampler.accept(token)
        entry.completion_tokens += 1
        logprobs = ()
        if raw is not None:
            chosen, top = top_logprobs(raw, token, params.top_logprobs)
            logprobs = (TokenLogprob(token, self._text(token), chosen,
                                     tuple(TopLogprob(i, self._text(i), v) for i, v in top)),)
        if token in self.eos_token_ids and not params.ignore_eos:
            if logprobs:
                entry.emit(TokenEvent(index, (token,), "", logprobs))
            return FinishEvent(index, FinishReason.STOP), token
        if token in params.stop_token_ids:
            return FinishEvent(index, FinishReason.STOP_SEQUENCE, stop_token_id=token), token
        if matcher is not None:
            matcher.accept(token)
        text = stream.push(token)
        entry.emit(TokenEvent(index, (token,), text, logprobs))
        if stream.stopped_by is not None:
            return FinishEvent(index, FinishReason.STOP_SEQUENCE, stop_sequence=stream.stopped_by), token
        if matcher is not None and matcher.is_terminated():
            return FinishEvent(index, FinishReason.STOP), token
        generated += 1
        if generated >= params.max_new_tokens or len(request.prompt_ids) + generated >= self.info.context_length:
            return FinishEvent(index, FinishReason.LENGTH), token
        return None, token

    # -- llama.cpp ---------------------------------------------------------------------------

    def _prefill(self, entry: Pending, ids: Sequence[int], want_prompt: bool, k: int) -> np.ndarray:
        """Bring the KV cache to ``ids`` and return the logits after its last token.

        Reuses the longest prefix shared with what the cache holds (at least the last prompt token is
        evaluated again, for its logits); with ``want_prompt`` every position is evaluated and the
        prompt logprobs are stored on ``entry``."""
        ids = list(ids)
        keep = 0
        if not want_prompt:
            for a, b in zip(self._cached, ids, strict=False):
                if a != b:
                    break
                keep += 1
            keep = min(keep, len(ids) - 1)
        if keep == 0 or not self._lib.llama_memory_seq_rm(self._memory, 0, keep, -1):
            self._lib.llama_memory_clear(self._memory, True)
            keep = 0
        self._cached = ids[:keep]
        if not entry.completion_tokens:
            entry.cached_tokens = keep
        rest = ids[keep:]
        if not want_prompt:
            last = None
            for start in range(0, len(rest), self._n_batch):
                chunk = rest[start : start + self._n_batch]
                last = self._decode(chunk, keep + start, want_all=False)[0]
                self._cached.extend(chunk)
            return last
        # Every position's logits, a chunk at a time so llama.cpp's output buffer stays small.
        out = [TokenLogprob(ids[0], self._text(ids[0]), 0.0)]  # the first token has no prediction (vLLM: None)
        last = None
        for start in range(0, len(ids), _PROMPT_LOGITS_CHUNK):
            chunk = ids[start : start + _PROMPT_LOGITS_CHUNK]
            rows = self._decode(chunk, start, want_all=True)
            self._cached.extend(chunk)
            logprobs = log_softmax(rows)
            for row in range(len(chunk)):
                position = start + row  # this row predicts ids[position + 1]
                if position + 1 < len(ids):
                    token = ids[position + 1]
                    top = tuple(TopLogprob(i, self._text(i), v) for i, v in top_k(logprobs[row], k))
                    out.append(TokenLogprob(token, self._text(token), float(logprobs[row, token]), top))
            last = rows[-1].copy()
        entry.prompt_logprobs = tuple(out[entry.request.sampling.prompt_logprobs_start:])
        return last

    def _decode(self, tokens: Sequence[int], pos: int, *, want_all: bool) -> np.ndarray:
        """Evaluate ``tokens`` at positions ``pos``…; float32 logits [len, V] with ``want_all``, else [1, V]."""
        lib, batch = self._lib, self._batch
        n = len(tokens)
        batch.n_tokens = n
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = pos + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = want_all or i == n - 1
        code = lib.llama_decode(self._ctx, batch)
        if code != 0:
            raise Unavailable(f"llama.cpp could not evaluate the batch (llama_decode returned {code})")
        rows = n if want_all else 1  # llama_get_logits: the output rows in batch order
        pointer = lib.llama_get_logits(self._ctx)
        array = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(rows, self._vocab))
        return array.copy()  # llama.cpp reuses the buffer at the next decode

    def _text(self, token_id: int) -> str:
        text = self._token_text.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id], clean_up_tokenization_spaces=False)
            self._token_text[token_id] = text
        return text
