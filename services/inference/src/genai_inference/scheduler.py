"""Continuous batching over a local KV engine.

One worker thread owns the engine. Each iteration it admits waiting requests into free slots
(prefill, first token), then runs ONE decode step for every running sequence, then retires the
sequences that finished. Requests therefore join and leave the batch at token boundaries, and a
cancelled or expired request frees its slot within one decode step. Waiting requests sit in a
bounded queue: when it is full, new requests get RESOURCE_EXHAUSTED instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from genai_core.errors import InvalidArgument, Unavailable

from genai_inference.engines.base import KVEngine
from genai_inference.intake import DONE, Intake, Pending
from genai_inference.kv import KVBatch, empty_batch
from genai_inference.metrics import InferenceMetrics
from genai_inference.sampling import Sampler, top_logprobs
from genai_inference.textstream import TextStream
from genai_inference.types import (
    DoneEvent,
    Event,
    FinishEvent,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    Sampling,
    Timings,
    TokenEvent,
    TokenLogprob,
    TopLogprob,
    Usage,
)

logger = logging.getLogger(__name__)

@dataclass
class _Sequence:
    owner: Pending
    index: int
    sampler: Sampler
    stream: TextStream
    matcher: object | None
    last_token: int = 0
    generated: list[int] = field(default_factory=list)


class Scheduler:
    """A ``Backend`` that runs a ``KVEngine`` with continuous batching."""

    def __init__(
        self,
        engine: KVEngine,
        tokenizer,
        *,
        max_batch_size: int = 16,
        max_queue: int = 64,
        max_prefills_per_step: int = 2,
        compiler=None,
        metrics: InferenceMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.name = engine.name
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.max_prefills_per_step = max_prefills_per_step
        self.compiler = compiler
        self.metrics = metrics or InferenceMetrics()
        self._intake = Intake(
            max_queue, on_reject=self.metrics.rejected.inc, on_depth=self.metrics.queue_depth.set
        )
        self._waiting = self._intake.waiting  # drained by the worker thread
        self._wake = self._intake.wake
        self._running: list[_Sequence] = []
        self._batch: KVBatch = empty_batch()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._vocab = engine.info.vocab_size
        self._token_text: dict[int, str] = {}

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"scheduler-{self.name}", daemon=True)
        self._thread.start()
        # Warm-up: one short greedy request through the whole path, so the first user call is not the slow one.
        warm = GenerationRequest(
            "warmup", self.engine.info.id, tuple(self.tokenizer("Hello", add_special_tokens=False).input_ids), "Hello",
            Sampling(max_new_tokens=2, temperature=0.0),  # Sampling() would sample up to 256 tokens
        )
        async for _ in self.generate(warm):
            pass

    async def close(self) -> None:
        with self._wake:
            self._stop = True
        self._intake.stop()
        if self._thread:
            await asyncio.to_thread(self._thread.join, 10)

    def models(self) -> list[ModelInfo]:
        return [self.engine.info]

    # -- adapters: the engine's --------------------------------------------------------------

    @property
    def supports_adapters(self) -> bool:
        return self.engine.supports_adapters

    @property
    def adapters(self) -> Mapping[str, Path]:
        return self.engine.adapters

    def load_adapter(self, name: str, path: Path) -> None:
        self.engine.load_adapter(name, path)

    def unload_adapter(self, name: str) -> None:
        self.engine.unload_adapter(name)

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    # -- request side (event loop) ----------------------------------------------------------

    def _validate(self, request: GenerationRequest) -> None:
        # The prompt and sampling values were checked by generation.Inference; this rule is the
        # scheduler's own: all n completions of a request decode in one batch.
        if request.sampling.n > self.max_batch_size:
            raise InvalidArgument.for_field("sampling.n", f"at most {self.max_batch_size} completions per request")

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        self._validate(request)
        async for event in self._intake.submit(request):
            yield event

    def cancel(self, request_id: str) -> bool:
        return self._intake.cancel(request_id)

    # -- worker thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stop and not self._waiting and not self._running:
                    self._wake.wait()
                if self._stop:
                    break
            try:
                self._admit()
                if self._running:
                    self._step()
            except Exception as exc:  # an engine failure ends the affected requests, never the thread
                logger.exception("decode step failed")
                self._fail_all(exc)
        self._fail_all(Unavailable("the inference engine stopped"))

    def _fail_all(self, exc: Exception) -> None:
        owners = {id(s.owner): s.owner for s in self._running}
        with self._wake:
            owners.update({id(r): r for r in self._waiting})
            self._waiting.clear()
        for owner in owners.values():
            if not owner.first_token:
                owner.emit(exc)  # nothing was sent yet: the caller gets the error itself
                owner.emit(DONE)
                continue
            for index in range(owner.request.sampling.n):
                owner.emit(FinishEvent(index, FinishReason.ERROR))
            self._complete(owner)
        self._running = []
        self._batch = empty_batch()

    def _drop_unloaded_adapters(self) -> None:
        """Rows whose adapter was unloaded mid-request end with ERROR; the rest of the batch goes on."""
        loaded = self.engine.adapters
        finished = [
            FinishEvent(seq.index, FinishReason.ERROR)
            if seq.owner.request.adapter and seq.owner.request.adapter not in loaded else None
            for seq in self._running
        ]
        self._retire(finished)

    def _admit(self) -> None:
        # While sequences are decoding, admit only a few prompts per step: each prefill stalls every
        # running stream, and 16 arrivals prefilled back to back stalled them for seconds.
        budget = self.max_prefills_per_step if self._running else self.max_batch_size
        while budget > 0:
            budget -= 1
            with self._wake:
                if not self._waiting:
                    return
                entry = self._waiting[0]
                if not entry.cancelled and len(self._running) + entry.request.sampling.n > self.max_batch_size:
                    return
                self._waiting.popleft()
                self._intake.depth_changed()
            if entry.cancelled:  # cancelled while waiting: it never ran, but its stream still ends properly
                entry.admitted = time.monotonic()
                for index in range(entry.request.sampling.n):
                    entry.emit(FinishEvent(index, FinishReason.CANCELLED))
                self._complete(entry)
                continue
            try:
                self._prefill(entry)
            except Exception as exc:  # a bad request (e.g. an adapter that was unloaded) fails alone
                entry.emit(exc)
                entry.emit(DONE)

    def _prefill(self, entry: Pending) -> None:
        request = entry.request
        params = request.sampling
        entry.admitted = time.monotonic()
        self.metrics.queue_time.observe(entry.admitted - entry.enqueued)
        want_prompt = params.prompt_logprobs is not None
        logits, kv = self.engine.prefill(request.prompt_ids, adapter=request.adapter, all_logits=want_prompt)
        if want_prompt:
            entry.prompt_logprobs = self._prompt_logprobs(request.prompt_ids, logits, params.prompt_logprobs or 0)
            logits = logits[-1:]
        if params.max_new_tokens == 0:  # scoring only (echo + prompt logprobs): nothing to generate
            entry.first_token = time.monotonic()
            for index in range(params.n):
                entry.emit(FinishEvent(index, FinishReason.LENGTH))
            self._complete(entry)
            return
        compiled = self.compiler.compile(request.constraint) if request.constraint and self.compiler else None
        # Build every per-sequence object before touching the batch, so a failure leaves it consistent.
        sequences = [
            _Sequence(
                entry,
                index,
                Sampler(
                    params if params.seed is None else _with_seed(params, (params.seed + index) % 2**63),
                    request.prompt_ids,
                    self._vocab,
                    self.engine.eos_token_ids,
                ),
                TextStream(self.tokenizer, params.stop, request.prompt_ids),
                compiled.matcher() if compiled else None,
            )
            for index in range(params.n)
        ]
        entry.remaining = params.n
        if params.n > 1:
            kv.select([0] * params.n)
        self._batch.extend(kv)
        self._running.extend(sequences)
        rows = range(len(self._running) - params.n, len(self._running))
        finished = [self._advance(self._running[r], logits[0].clone()) for r in rows]
        self._retire(finished, first=range(len(self._running) - params.n, len(self._running)))

    def _prompt_logprobs(self, ids, logits: torch.Tensor, k: int) -> tuple[TokenLogprob, ...]:
        # The first prompt token has no prediction; report it without a logprob (0.0), as vLLM does (None).
        out = [TokenLogprob(ids[0], self._text(ids[0]), 0.0)]
        logprobs = torch.log_softmax(logits[:-1].float(), dim=-1)
        for position, token in enumerate(ids[1:]):
            row = logprobs[position]
            top = ()
            if k:
                values, indices = torch.topk(row, k)
                top = tuple(TopLogprob(int(i), self._text(int(i)), float(v)) for i, v in zip(indices, values, strict=True))
            out.append(TokenLogprob(token, self._text(token), float(row[token]), top))
        return tuple(out)

    def _text(self, token_id: int) -> str:
        text = self._token_text.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id], clean_up_tokenization_spaces=False)
            self._token_text[token_id] = text
        return text

    def _step(self) -> None:
        self._drop_unloaded_adapters()
        if not self._running:
            return
        started = time.perf_counter()
        tokens = torch.tensor([s.last_token for s in self._running], dtype=torch.long)
        adapters = [s.owner.request.adapter for s in self._running]
        logits = self.engine.decode(self._batch, tokens, adapters)
        self.metrics.batch_size.observe(len(self._running))
        finished = [self._advance(seq, logits[row]) for row, seq in enumerate(self._running)]
        self._retire(finished)
        self.metrics.step_time.observe(time.perf_counter() - started)

    def _advance(self, seq: _Sequence, logits: torch.Tensor) -> FinishEvent | None:
        """Sample the next token of ``seq`` from its logits row; return a FinishEvent when it ends."""
        owner, params = seq.owner, seq.owner.request.sampling
        if owner.cancelled:
            return FinishEvent(seq.index, FinishReason.CANCELLED)
        if owner.request.deadline is not None and time.monotonic() > owner.request.deadline:
            return FinishEvent(seq.index, FinishReason.LENGTH)
        raw = logits if params.logprobs else None
        if seq.sampler.is_plain_greedy and seq.matcher is None:
            token = int(torch.argmax(logits))
        else:
            work = logits.clone() if raw is not None else logits
            seq.sampler.process(work)
            if seq.matcher is not None:
                seq.matcher.mask_logits(work)
            token = seq.sampler.choose(work)
        now = time.monotonic()
        if not owner.first_token:
            owner.first_token = now
            self.metrics.ttft.observe(now - owner.enqueued)
        seq.sampler.accept(token)
        owner.completion_tokens += 1
        self.metrics.generated_tokens.inc()
        logprobs = ()
        if raw is not None:
            chosen, top = top_logprobs(raw, token, params.top_logprobs)
            logprobs = (
                TokenLogprob(token, self._text(token), chosen, tuple(TopLogprob(i, self._text(i), v) for i, v in top)),
            )
        if token in self.engine.eos_token_ids and not params.ignore_eos:
            if logprobs:
                owner.emit(TokenEvent(seq.index, (token,), "", logprobs))
            return FinishEvent(seq.index, FinishReason.STOP)
        if token in params.stop_token_ids:
            return FinishEvent(seq.index, FinishReason.STOP_SEQUENCE, stop_token_id=token)
        if seq.matcher is not None:
            seq.matcher.accept(token)
        seq.generated.append(token)
        seq.last_token = token
        text = seq.stream.push(token)
        owner.emit(TokenEvent(seq.index, (token,), text, logprobs))
        if seq.stream.stopped_by is not None:
            return FinishEvent(seq.index, FinishReason.STOP_SEQUENCE, stop_sequence=seq.stream.stopped_by)
        if seq.matcher is not None and seq.matcher.is_terminated():
            return FinishEvent(seq.index, FinishReason.STOP)
        length = len(owner.request.prompt_ids) + len(seq.generated)
        if len(seq.generated) >= params.max_new_tokens or length >= self.engine.info.context_length:
            return FinishEvent(seq.index, FinishReason.LENGTH)
        return None

    def _retire(self, finished: list[FinishEvent | None], first: range | None = None) -> None:
        """Remove finished sequences from the batch and close their requests."""
        offset = first.start if first is not None else 0
        done_rows = {offset + i for i, f in enumerate(finished) if f is not None}
        if not done_rows:
            return
        for row in sorted(done_rows):
            seq, finish = self._running[row], finished[row - offset]
            tail = seq.stream.finish()
            if tail:
                seq.owner.emit(TokenEvent(seq.index, (), tail))
            seq.owner.emit(finish)
            seq.owner.remaining -= 1
            if seq.owner.remaining == 0:
                self._complete(seq.owner)
        keep = [row for row in range(len(self._running)) if row not in done_rows]
        self._running = [self._running[row] for row in keep]
        self._batch.select(keep)

    def _complete(self, owner: Pending) -> None:
        end = time.monotonic()
        first = owner.first_token or end
        generated = owner.completion_tokens
        if generated > 1 and owner.first_token:
            self.metrics.inter_token.observe((end - first) / max(1, generated - owner.request.sampling.n))
        owner.emit(
            DoneEvent(
                Usage(len(owner.request.prompt_ids), generated),
                Timings(owner.admitted - owner.enqueued, first - owner.enqueued, end - owner.enqueued),
                owner.prompt_logprobs,
            )
        )
        owner.emit(DONE)


def _with_seed(params, seed: int):
    from dataclasses import replace

    return replace(params, seed=seed)
