"""Continuous batching over a local KV engine.

One worker thread owns the engine. Each iteration it admits waiting requests into free slots
(prefill, first token), then runs ONE decode step for every running sequence, then retires the
sequences that finished. Requests therefore join and leave the batch at token boundaries, and a
cancelled or expired request frees its slot within one decode step. Waiting requests sit in a
bounded queue: when it is full, new requests get RESOURCE_EXHAUSTED instead of growing memory.

Prompts reuse the KV of a cached prefix (:mod:`genai_inference.prefix_cache`) and are scored (prompt
logprobs) ``PROMPT_LOGPROB_CHUNK`` positions at a time, so scoring a long prompt never holds its whole
[L, V] logits: memory stays bounded by the chunk, whatever the prompt's length.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from genai_core.errors import FailedPrecondition, InvalidArgument, Unavailable

from genai_inference.engines.base import ADAPTER_UNLOADED, KVEngine, KVRows
from genai_inference.intake import DONE, Intake, Outbox, Pending
from genai_inference.metrics import InferenceMetrics
from genai_inference.prefix_cache import Block, PrefixCache
from genai_inference.sampling import Sampler, log_softmax, top_logprobs
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

PROMPT_LOGPROB_CHUNK = 32  # prompt positions scored per forward: 32 x 49152 float32 logits = 6.3 MB
# Prompt positions turned into logprobs at a time: log_softmax's temporaries are each [rows, V] float32, 1.5 MB at
# 8 (reused from the heap) rather than 6 MB at 32 (mapped afresh), which made scoring the peak of the service's memory.
SCORE_ROWS = 8

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
        prefix_cache: PrefixCache | None = None,
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
        self.prefix_cache = prefix_cache
        self._outbox = Outbox()  # events leave the worker once per step (see intake.Outbox)
        self._running: list[_Sequence] = []
        self._batch: KVRows = engine.new_batch()
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
            finally:
                self._outbox.flush()
        self._fail_all(Unavailable("the inference engine stopped"))
        self._outbox.flush()

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
        self._batch = self.engine.new_batch()

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
            entry.outbox = self._outbox
            try:
                self._prefill(entry)
            except Exception as exc:  # a bad request (e.g. an adapter that was unloaded) fails alone
                entry.emit(exc)
                entry.emit(DONE)
            self._outbox.flush()  # the first token goes out now, not after the next decode step

    def _prefill(self, entry: Pending) -> None:
        request = entry.request
        params = request.sampling
        entry.admitted = time.monotonic()
        self.metrics.queue_time.observe(entry.admitted - entry.enqueued)
        logits, kv = self._run_prompt(entry)
        if params.max_new_tokens == 0:  # scoring only (echo + prompt logprobs): nothing to generate
            kv.select([])  # the row never joins the batch: its KV goes now
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
                    params if params.seed is None else replace(params, seed=(params.seed + index) % 2**63),
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
        finished = [self._advance(self._running[r], logits[0].copy()) for r in rows]
        self._retire(finished, first=rows.start)

    def _run_prompt(self, entry: Pending) -> tuple[np.ndarray, KVRows]:
        """Bring the prompt into a one-row KV, reusing a cached prefix; the logits after its last token.

        Without prompt logprobs the cached prefix is reused up to the prompt's last token (its logits are
        always computed). With them, the cached blocks bring their tokens' logprobs along and the prompt
        runs again from the last cached position, whose logits score the first uncached token. Positions
        before ``prompt_logprobs_start`` (a loglikelihood's context) are prefilled without the
        vocabulary-wide logits, and their cached blocks need no logprobs.
        """
        request = entry.request
        ids, adapter, top = request.prompt_ids, request.adapter, request.sampling.prompt_logprobs
        scored_from = request.sampling.prompt_logprobs_start
        first = max(1, scored_from)  # the first position predicted (position 0 has no prediction)
        cache = self.prefix_cache
        blocks: tuple[Block, ...] = ()
        if cache is not None:
            blocks = cache.lookup(ids, adapter, top, scored_from).blocks
        size = cache.block if cache else 0
        reused = len(blocks) * size
        if top is None:
            keep = min(reused, len(ids) - 1)
        else:
            keep = reused - 1 if reused >= first else reused
        kv = self.engine.restore([b.piece for b in blocks], keep) if keep else None
        entry.cached_tokens = keep
        self.metrics.cached_prompt_tokens.inc(keep)
        scored: list[TokenLogprob] | None = None
        if top is None:
            logits, kv = self.engine.prefill(ids[keep:], past=kv, adapter=adapter)
        else:
            # Cached blocks may carry more alternatives than asked for: give back what was asked.
            scored = [lp if len(lp.top) <= top else replace(lp, top=lp.top[:top])
                      for i, b in enumerate(blocks) if (i + 1) * size > scored_from
                      for lp in (b.logprobs or ())[max(0, scored_from - i * size):]]
            if scored_from == 0 and not reused:
                scored = [TokenLogprob(ids[0], self._text(ids[0]), 0.0)]  # no prediction for it (vLLM: None)
            context_end = min(first - 1, len(ids) - 1)
            if context_end - keep == 1:
                # A lone token would run as a one-row forward, which rounds int8 activations differently from a
                # chunk (onnxruntime-gguf): score it along with the chunk instead, so the logprobs are the same
                # whichever way the prompt arrives (cached or not, scored from 0 or from its continuation).
                context_end = keep
            if keep < context_end:
                _, kv = self.engine.prefill(ids[keep:context_end], past=kv, adapter=adapter)
                keep = context_end
            logits = np.zeros((0, self._vocab), dtype=np.float32)
            for start in range(keep, len(ids), PROMPT_LOGPROB_CHUNK):
                logits, kv = self.engine.prefill(ids[start : start + PROMPT_LOGPROB_CHUNK], past=kv, adapter=adapter,
                                                 all_logits=True)
                scored += self._score(ids, start, logits, top, first=scored_from)
            logits = logits[-1:]
            entry.prompt_logprobs = tuple(scored)
        assert kv is not None
        if cache is not None:
            self._remember(cache, ids, adapter, kv, len(blocks), scored, top, scored_from)
        return logits, kv

    def _score(self, ids: Sequence[int], start: int, logits: np.ndarray, top: int, first: int = 0) -> list[TokenLogprob]:
        """Prompt logprobs from the logits of positions start..: row j predicts token start + j + 1; tokens before
        position ``first`` are left out."""
        skip = max(0, first - start - 1)
        start, logits = start + skip, logits[skip:]
        rows = min(len(logits), len(ids) - start - 1)
        if rows <= 0:
            return []
        if rows > SCORE_ROWS:
            return [lp for at in range(0, rows, SCORE_ROWS)
                    for lp in self._score(ids, start + at, logits[at : min(rows, at + SCORE_ROWS)], top)]
        logprobs = log_softmax(logits[:rows])
        targets = np.asarray(ids[start + 1 : start + 1 + rows], dtype=np.int64)
        chosen = logprobs[np.arange(rows), targets]
        best = None
        if top == 1:  # lm-eval's loglikelihood asks for one alternative: argmax, no index array of the whole row
            best = logprobs.argmax(axis=1)[:, None]
        elif top:
            best = np.argpartition(logprobs, -top, axis=1)[:, -top:]
            order = np.argsort(-np.take_along_axis(logprobs, best, axis=1), axis=1, kind="stable")
            best = np.take_along_axis(best, order, axis=1)
        out = []
        for j in range(rows):
            alternatives = () if best is None else tuple(
                TopLogprob(int(i), self._text(int(i)), float(logprobs[j, i])) for i in best[j])
            token = int(targets[j])
            out.append(TokenLogprob(token, self._text(token), float(chosen[j]), alternatives))
        return out

    def _remember(self, cache: PrefixCache, ids: Sequence[int], adapter: str | None, kv: KVRows, known: int,
                  scored: list[TokenLogprob] | None, top: int | None, scored_from: int = 0) -> None:
        """Cache the prompt's whole blocks from ``known`` on (the earlier ones came from the cache). ``scored``
        holds the logprobs of positions ``scored_from``…; a block with positions before that keeps only its KV."""
        keys = cache.keys(ids, adapter)
        for index in range(known, len(keys)):
            start, end = index * cache.block, (index + 1) * cache.block
            with_logprobs = scored is not None and start >= scored_from
            if cache.has(keys[index], top if with_logprobs else None):
                continue
            piece = self.engine.snapshot(kv, start, end)
            if not with_logprobs:
                cache.insert(keys[index], Block(piece))
            else:
                assert scored is not None
                cache.insert(keys[index], Block(piece, tuple(scored[start - scored_from : end - scored_from]),
                                                top or 0))

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
        tokens = np.fromiter((s.last_token for s in self._running), dtype=np.int64, count=len(self._running))
        adapters = [s.owner.request.adapter for s in self._running]
        try:
            logits = self.engine.decode(self._batch, tokens, adapters)
        except FailedPrecondition as exc:
            if exc.reason != ADAPTER_UNLOADED:
                raise
            # Unloaded from another thread after the check above, before this forward (which changed nothing):
            # the next step ends those rows alone and decodes the others.
            return
        self.metrics.batch_size.observe(len(self._running))
        finished = [self._advance(seq, logits[row]) for row, seq in enumerate(self._running)]
        self._retire(finished)
        self.metrics.step_time.observe(time.perf_counter() - started)

    def _advance(self, seq: _Sequence, logits: np.ndarray) -> FinishEvent | None:
        """Sample the next token of ``seq`` from its logits row; return a FinishEvent when it ends."""
        owner, params = seq.owner, seq.owner.request.sampling
        if owner.cancelled:
            return FinishEvent(seq.index, FinishReason.CANCELLED)
        if owner.request.deadline is not None and time.monotonic() > owner.request.deadline:
            return FinishEvent(seq.index, FinishReason.LENGTH)
        raw = logits if params.logprobs else None
        if seq.sampler.is_plain_greedy and seq.matcher is None:
            token = int(np.argmax(logits))
        else:
            work = logits.copy() if raw is not None else logits
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

    def _retire(self, finished: list[FinishEvent | None], first: int = 0) -> None:
        """Remove finished sequences (``finished[i]`` is row ``first + i``'s) and close their requests.

        The rows that stay keep their places; the holes are filled with the last rows, so an engine
        moves only those (``KVRows.select``) and the scheduler's list follows the same order."""
        done_rows = {first + i for i, f in enumerate(finished) if f is not None}
        if not done_rows:
            return
        for row in sorted(done_rows):
            seq, finish = self._running[row], finished[row - first]
            assert finish is not None
            tail = seq.stream.finish()
            if tail:
                seq.owner.emit(TokenEvent(seq.index, (), tail))
            seq.owner.emit(finish)
            seq.owner.remaining -= 1
            if seq.owner.remaining == 0:
                self._complete(seq.owner)
        size = len(self._running) - len(done_rows)
        keep = list(range(size))
        movers = (row for row in range(size, len(self._running)) if row not in done_rows)
        for hole in sorted(r for r in done_rows if r < size):
            keep[hole] = next(movers)
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
                Usage(len(owner.request.prompt_ids), generated, owner.cached_tokens),
                Timings(owner.admitted - owner.enqueued, first - owner.enqueued, end - owner.enqueued),
                owner.prompt_logprobs,
            )
        )
        owner.emit(DONE)

