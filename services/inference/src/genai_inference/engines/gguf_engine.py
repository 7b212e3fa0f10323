"""The ``onnxruntime-gguf`` engine: the GGUF's own quantized weights served as they are, by onnxruntime.

The graph (:mod:`genai_inference.quantized_graph`) is built from the GGUF's blocks once per model and
kept in the cache (``var/cache/onnx/<id>-<rev12>-gguf-a<level>/``); no torch, no fp32 copy. Token
embeddings are gathered from the memory-mapped GGUF (its Q8_0 rows, exactly) and fed to the graph.

KV cache: one buffer per layer for keys and one for values, [rows, kv_heads, capacity, head_dim] float16,
allocated zeroed (the kernel maps pages on first touch, so memory grows with the tokens actually held).
``capacity`` follows the longest row (a power of two from 256 up to the context; the buffers are reallocated
when a row outgrows it and when the batch empties), because onnxruntime's attention scratch is sized by it.
Row i of the batch lives in slot i with its own length; GroupQueryAttention
reads and writes the buffers in place (bound as both past and present), so a decode step copies
nothing, rows of different lengths need no padding, a prefill writes straight into the next free slot,
and a row that leaves is replaced by the last one (one row copied).

Memory: 23 KB of KV per token for SmolLM2-135M (30 layers x 2 x 3 heads x 64 x 2 bytes; float32 and 46 KB
with the exact configuration, accuracy level 0).
Threads: ``threads`` intra-op threads; ``spin`` (``settings.SPIN_MODES``) says whether they spin while waiting
for work. One decode step is ~500 small operators: a worker that sleeps after each and is woken for the next
makes two threads slower than one (134 vs 140 tok/s, the engine alone), a spinning one makes them faster (199).
Through the service (make bench-inference, one run): "on" (the default; onnxruntime's own) 152 tok/s single
stream and 529 at 16 streams, "run" (spin inside a forward, sleep when it returns) 158 and 409, "off" 133 and
415: between steps the scheduler's Python runs, and a worker that kept spinning is there for the next one.
A worker still sleeps after a while without work, so an idle engine costs no CPU.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import mmap
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from genai_core.cachedir import build_stamped
from genai_core.errors import FailedPrecondition

from genai_inference import quantized_graph
from genai_inference.engines.base import ADAPTER_UNLOADED
from genai_inference.engines.lora import LoraSet
from genai_inference.gguf_weights import BLOCK, GgufModel, LlamaShape, embed
from genai_inference.models import ModelSource, eos_token_ids, model_info
from genai_inference.settings import SPIN_MODES

logger = logging.getLogger(__name__)

# Prompt tokens per forward. GroupQueryAttention's scratch is [heads, chunk, capacity] float32 a layer, where capacity
# is the KV buffer's (SlotCache: the longest row rounded up to a power of two). When that was the model's whole
# context (8,192), a 64-token chunk needed 18 MiB a layer, mapped afresh and faulted in (~280,000 page faults for a
# cold 1,000-token prompt, ~1.25 s); sized by the rows it is ~2.4 MiB at 1,000 tokens and reused from the heap
# (~15,000 faults, 0.8-0.9 s, the engine alone). 64 was faster than 128 and 32 then, and is no slower than 128 now.
PREFILL_CHUNK = 64
MIN_CAPACITY = 256  # positions per KV slot at the least (SlotCache grows it by doubling as rows get longer)
GRAPH_FORMAT = 4  # bump when quantized_graph's inputs, outputs or semantics change: cached graphs are rebuilt
MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
SHAPE_FILE = "shape.json"
EMBED_Q, EMBED_D = "embed_q.npy", "embed_d.npy"  # the Q8_0 token embedding: int8 [V, H] and scales [V, H/32]


def chunks(count: int) -> list[tuple[int, int]]:
    """(start, end) of each forward of a ``count``-token prefill: ``PREFILL_CHUNK`` at a time, never a lone last
    token after a chunk. A one-token forward takes MatMulNBits' M=1 path, which rounds int8 activations differently,
    so a prompt's KV (and the logprobs scored after it) would depend on where the chunks happened to end."""
    bounds = list(range(0, count, PREFILL_CHUNK)) + [count]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        bounds[-2] -= 1
    return list(zip(bounds, bounds[1:], strict=False))


def build_graph(gguf: Path, target: Path, accuracy_level: int, lora: bool, kv_fp16: bool) -> None:
    """Write the graph, its weights, the model's shape and the embedding table into ``target``.

    Run in a child process by :func:`graph_dir`: reading a whole GGUF costs a few hundred MB that the
    serving process should never hold (its peak RSS is what the deployment must budget)."""
    import onnx

    model = GgufModel(gguf)
    graph = quantized_graph.build(model, accuracy_level=accuracy_level, lora=lora, kv_fp16=kv_fp16)
    onnx.save_model(graph, str(target / MODEL_FILE),
                    save_as_external_data=True, all_tensors_to_one_file=True, location=DATA_FILE, size_threshold=1024)
    (target / SHAPE_FILE).write_text(json.dumps(dataclasses.asdict(model.shape), indent=2))
    q, d = model.embedding_rows()
    np.save(target / EMBED_Q, q)
    np.save(target / EMBED_D, d)


def graph_dir(source: ModelSource, cache_dir: Path, accuracy_level: int, lora: bool) -> Path:
    """The graph for ``source``, built from its GGUF once and cached. Float16 KV with int8 activations; the
    exact configuration (float32 activations) keeps float32 keys and values too."""
    assert source.gguf is not None
    kv_fp16 = accuracy_level != 0
    name = f"{source.id}-{source.revision[:12]}-gguf-a{accuracy_level}{'-lora' if lora else ''}"

    def build(tmp: Path) -> dict:
        code = ("import sys; from pathlib import Path; from genai_inference.engines.gguf_engine import build_graph; "
                "build_graph(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == '1', "
                "sys.argv[5] == '1')")
        done = subprocess.run([sys.executable, "-c", code, str(source.gguf), str(tmp), str(accuracy_level),
                               "1" if lora else "0", "1" if kv_fp16 else "0"], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise FailedPrecondition(f"could not build the graph of {source.gguf.name}: {done.stderr.strip()[-800:]}",
                                     reason="GGUF_UNSUPPORTED")
        return {"model_id": source.id, "revision": source.revision, "accuracy_level": accuracy_level, "lora": lora,
                "kv": "float16" if kv_fp16 else "float32"}

    return build_stamped(Path(cache_dir) / "onnx" / name, build, stamp={"format": GRAPH_FORMAT},
                         required=MODEL_FILE, manifest="graph.json", what=f"quantized graph of {source.id}")


def _kv_buffer(shape: tuple[int, ...], dtype: type) -> tuple[np.ndarray, mmap.mmap]:
    """A zeroed array in its own anonymous mapping: pages appear when first written (a row costs what it
    holds, not the context), without the transparent huge pages numpy asks for on large arrays (2 MB per
    touched head region: 250 MB resident for a 40-token prompt)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(region, dtype=dtype).reshape(shape), region


@dataclass
class Slots:
    """Rows of the batch's KV buffers taken by one prefill: ``count`` slots from ``start``."""

    cache: SlotCache
    start: int
    count: int = 1

    @property
    def size(self) -> int:
        return self.count

    def extend(self, rows: Slots) -> None:
        raise TypeError("prefilled rows join the batch, not each other")

    def select(self, rows: Sequence[int]) -> None:
        """``[0] * n``: clone the prefilled row into the next n - 1 slots (n completions); ``[]``: drop it
        (a prompt only scored), giving its pages back."""
        if not rows:
            self.cache.release(self.start, self.start + self.count)
            self.count = 0
            return
        if any(r != 0 for r in rows) or self.count != 1:
            raise ValueError("a prefilled row can only be repeated")
        for offset in range(1, len(rows)):
            self.cache.copy_row(self.start, self.start + offset)
        self.count = len(rows)


@dataclass
class _DecodeBinding:
    """An IOBinding and the arrays it points at (kept alive here as long as the binding)."""

    binding: object
    changes: int
    lora: bool
    embeds: np.ndarray
    seqlens: np.ndarray
    total: np.ndarray
    qkv_shape: np.ndarray
    index: np.ndarray
    logits: np.ndarray
    scales: dict[str, np.ndarray]


@dataclass(frozen=True)
class Piece:
    """Positions of one row (all layers), copied out for the prefix cache."""

    keys: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.keys) + sum(a.nbytes for a in self.values)

    @property
    def length(self) -> int:
        return int(self.keys[0].shape[1])


class SlotCache:
    """The batch: rows [0, size) are decoding; the slots after them are free (prefills write there).

    Each slot holds ``capacity`` positions, the longest row rounded up to a power of two (at least
    ``MIN_CAPACITY``, at most the model's context), not the context itself: GroupQueryAttention sizes its
    scratch by the buffer it is bound to ([heads, tokens, capacity] float32 a layer), so an 8,192-position
    buffer made every prompt chunk map and fault in 18 MiB a layer, and every decode step stride over it."""

    def __init__(self, shape: LlamaShape, rows: int, dtype: type = np.float32) -> None:
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.lengths = np.zeros(rows, dtype=np.int64)
        self.rows = rows
        self.size = 0
        self.changes = 0  # bumped whenever the decoding rows or the buffers change (the engine rebinds then)
        self.capacity = 0
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self._regions: list[mmap.mmap] = []  # the mappings live as long as their buffers
        self._allocate(min(MIN_CAPACITY, shape.context))

    @property
    def dims(self) -> tuple[int, int, int, int]:
        return (self.rows, self.shape.kv_heads, self.capacity, self.shape.head_dim)

    @property
    def slot_bytes(self) -> int:
        return self.shape.kv_heads * self.capacity * self.shape.head_dim * self.dtype.itemsize

    def _allocate(self, capacity: int) -> None:
        """New buffers of ``capacity`` positions, the held positions of every slot copied over one buffer at a
        time (each old buffer's pages go back before the next is copied: peak memory grows by one buffer)."""
        old = list(zip(self.keys + self.values, self._regions, strict=True))
        self.capacity = capacity
        fresh = [_kv_buffer(self.dims, self.dtype) for _ in range(2 * self.shape.layers)]
        held = [(int(slot), int(self.lengths[slot])) for slot in np.flatnonzero(self.lengths)]
        for (array, _), (previous, region) in zip(fresh, old, strict=False):  # old is empty on the first call
            for slot, length in held:
                array[slot, :, :length] = previous[slot, :, :length]
            region.madvise(mmap.MADV_DONTNEED)
        layers = self.shape.layers
        self.keys = [array for array, _ in fresh[:layers]]
        self.values = [array for array, _ in fresh[layers:]]
        self._regions = [region for _, region in fresh]
        self.changes += 1

    def ensure(self, length: int) -> None:
        """Room for ``length`` positions in every slot (grows by doubling; a no-op when there is)."""
        if length <= self.capacity:
            return
        if length > self.shape.context:
            raise ValueError(f"{length} positions exceed the model's context of {self.shape.context}")
        capacity = self.capacity
        while capacity < length:
            capacity *= 2
        self._allocate(min(capacity, self.shape.context))

    def shrink(self) -> None:
        """Back to the smallest buffers once no slot holds anything (one long prompt does not keep its capacity)."""
        smallest = min(MIN_CAPACITY, self.shape.context)
        if self.capacity > smallest and not self.lengths.any():
            self._allocate(smallest)

    def release(self, first: int, last: int) -> None:
        """Give the pages of slots [first, last) back to the system (rows that left: memory follows load)."""
        if last <= first:
            return
        for region in self._regions:
            region.madvise(mmap.MADV_DONTNEED, first * self.slot_bytes, (last - first) * self.slot_bytes)
        self.lengths[first:last] = 0

    def free_slot(self, count: int = 1) -> int:
        if self.size + count > self.rows:
            raise RuntimeError(f"no free KV slot: {self.size} rows of {self.rows} are decoding")
        return self.size

    def copy_row(self, source: int, target: int) -> None:
        length = int(self.lengths[source])
        for buffers in (self.keys, self.values):
            for array in buffers:
                array[target, :, :length] = array[source, :, :length]
        self.lengths[target] = length

    # -- KVRows ----------------------------------------------------------------------------

    def extend(self, rows: Slots) -> None:
        if rows.cache is not self:
            raise ValueError("rows of another cache")
        if rows.start != self.size:  # a prefill always writes at the first free slot
            for offset in range(rows.count):
                self.copy_row(rows.start + offset, self.size + offset)
        self.size += rows.count
        self.changes += 1

    def select(self, rows: Sequence[int]) -> None:
        keep = list(rows)
        moves = [(source, target) for target, source in enumerate(keep) if source != target]
        sources = {s for s, _ in moves}
        if any(t in sources for _, t in moves) or len(sources) != len(moves):
            # Rows swapping places or repeating: copy the sources out first (never happens on retire).
            length = int(self.lengths[keep].max(initial=0))
            index = np.asarray(keep, dtype=np.int64)
            for buffers in (self.keys, self.values):
                for array in buffers:
                    array[: len(keep), :, :length] = array[index, :, :length]
            self.lengths[: len(keep)] = self.lengths[index]
        else:
            for source, target in moves:
                self.copy_row(source, target)
        self.release(len(keep), max(self.size, int(np.max(keep, initial=-1)) + 1))
        self.size = len(keep)
        self.changes += 1
        self.shrink()


class GgufEngine:
    """A ``KVEngine`` over onnxruntime and a GGUF's quantized weights. Not thread-safe: one forward at a
    time (the scheduler's worker thread); adapter loads take the same lock."""

    name = "onnxruntime-gguf"

    def __init__(self, source: ModelSource, cache_dir: Path, *, threads: int = 2, max_batch_size: int = 16,
                 accuracy_level: int = 4, spin: str = "on") -> None:
        import onnxruntime as ort

        if source.gguf is None:
            raise FailedPrecondition("the onnxruntime-gguf engine serves a GGUF file; set GENAI_INFERENCE_MODEL_PATH "
                                     "to one (or leave it empty for the SmolLM2 GGUF)", reason="GGUF_REQUIRED")
        self._ort = ort
        self.source = source
        self.cache_dir = Path(cache_dir)
        self.threads = threads
        self.spin = SPIN_MODES[spin]
        self.accuracy_level = accuracy_level
        started = time.perf_counter()
        directory = graph_dir(source, self.cache_dir, accuracy_level, lora=False)
        self.shape = LlamaShape(**json.loads((directory / SHAPE_FILE).read_text()))
        # Memory-mapped: only the rows of tokens actually seen become resident.
        self._rows = (np.load(directory / EMBED_Q, mmap_mode="r"), np.load(directory / EMBED_D, mmap_mode="r"))
        self._session = self._open(directory / MODEL_FILE)
        self._lora_session = None
        self.load_seconds = time.perf_counter() - started
        self.kv_dtype = np.float16 if accuracy_level else np.float32  # see graph_dir
        self._cache = SlotCache(self.shape, max_batch_size, self.kv_dtype)
        self._decode: _DecodeBinding | None = None
        self._lock = threading.Lock()
        self.lora = LoraSet(self.shape)
        self.eos_token_ids = eos_token_ids(source.directory)
        self.info = model_info(source, self.name, self.shape.vocab, self.shape.file_type)
        logger.info("onnxruntime-gguf session for %s (%s, accuracy level %d) ready in %.1f s", source.id,
                    self.info.quantization, accuracy_level, self.load_seconds)

    def _open(self, path: Path):  # noqa: ANN202 - onnxruntime.InferenceSession
        ort = self._ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = False  # an arena keeps a long prompt's scratch for the process's life
        for key, value in self.spin.items():
            options.add_session_config_entry(key, value)
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    # -- adapters -----------------------------------------------------------------------------

    supports_adapters = True

    @property
    def adapters(self) -> Mapping[str, Path]:
        return self.lora.paths

    def load_adapter(self, name: str, path: Path) -> None:
        self.lora.check_new(name, path)
        session = self._lora_session
        if session is None:  # the first adapter: the graph with LoRA inputs (built once, cached)
            session = self._open(graph_dir(self.source, self.cache_dir, self.accuracy_level, lora=True) / MODEL_FILE)
        with self._lock:
            self.lora.add(name, path)
            self._lora_session = session
            self._decode = None

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            self.lora.remove(name)
            if not self.lora.paths:
                self._lora_session = None  # back to the plain graph; its memory goes
            self._decode = None

    # -- KVEngine -----------------------------------------------------------------------------

    def new_batch(self) -> SlotCache:
        self._cache.release(0, self._cache.rows)
        self._cache.size = 0
        self._cache.changes += 1
        self._cache.shrink()
        return self._cache

    def snapshot(self, row: Slots, start: int, end: int) -> Piece:
        slot = row.start
        return Piece(tuple(a[slot, :, start:end].copy() for a in self._cache.keys),
                     tuple(a[slot, :, start:end].copy() for a in self._cache.values))

    def restore(self, pieces: Sequence[Piece], length: int) -> Slots:
        cache = self._cache
        slot = cache.free_slot()
        cache.ensure(length)
        at = 0
        for piece in pieces:
            take = min(piece.length, length - at)
            if take <= 0:
                break
            for layer in range(self.shape.layers):
                cache.keys[layer][slot, :, at : at + take] = piece.keys[layer][:, :take]
                cache.values[layer][slot, :, at : at + take] = piece.values[layer][:, :take]
            at += take
        cache.lengths[slot] = at
        return Slots(cache, slot)

    def prefill(self, ids: Sequence[int], *, past: Slots | None = None, adapter: str | None = None,
                all_logits: bool = False) -> tuple[np.ndarray, Slots]:
        tokens = np.asarray(ids, dtype=np.int64)
        if tokens.size == 0:
            raise ValueError("prefill needs at least one token")
        cache = self._cache
        row = past if past is not None else Slots(cache, cache.free_slot())
        if past is None:
            cache.lengths[row.start] = 0
        kept = []
        with self._lock:
            cache.ensure(int(cache.lengths[row.start]) + len(tokens))
            session, lora = self._session_for([adapter])
            for start, end in chunks(len(tokens)):
                chunk = tokens[start:end]
                last = end == len(tokens)
                wanted = np.arange(len(chunk)) if all_logits else np.array([len(chunk) - 1])
                logits = self._forward(session, lora, chunk, row.start, [adapter] * len(chunk), wanted)
                if all_logits or last:
                    kept.append(logits)
        out = kept[0] if len(kept) == 1 else np.concatenate(kept)
        return out, row

    def decode(self, batch: SlotCache, tokens: np.ndarray, adapters: Sequence[str | None]) -> np.ndarray:
        size = batch.size
        with self._lock:
            session, lora = self._session_for(adapters)
            batch.ensure(int(batch.lengths[:size].max()) + 1)
            bound = self._decode
            if bound is None or (bound.changes, bound.lora) != (batch.changes, lora):
                bound = self._decode = self._bind_decode(session, batch, lora)
            q, d = self._rows
            np.multiply(q[tokens].reshape(size, -1, BLOCK), d[tokens][..., None], out=bound.embeds.reshape(size, -1, BLOCK))
            bound.seqlens[:] = batch.lengths[:size]
            bound.total[...] = int(batch.lengths[:size].max()) + 1
            if lora:
                self.lora.fill_scales(bound.scales, adapters)
            session.run_with_iobinding(bound.binding)
            batch.lengths[:size] += 1
        return bound.logits

    # -- onnxruntime ----------------------------------------------------------------------------

    def _session_for(self, adapters: Sequence[str | None]):  # noqa: ANN202
        """The plain graph, or the LoRA graph when any row uses an adapter."""
        wanted = [a for a in adapters if a]
        if not wanted:
            return self._session, False
        missing = [a for a in wanted if a not in self.lora.paths]
        if missing or self._lora_session is None:
            raise FailedPrecondition(f"adapter '{missing[0] if missing else wanted[0]}' was unloaded",
                                     reason=ADAPTER_UNLOADED)
        return self._lora_session, True

    def _bind_kv(self, binding, rows: int, slot: int) -> None:  # noqa: ANN001
        shape, cache = self.shape, self._cache
        dims = [rows, shape.kv_heads, cache.capacity, shape.head_dim]
        step = cache.slot_bytes
        for i in range(shape.layers):
            for kind, buffers in (("key", cache.keys), ("value", cache.values)):
                pointer = buffers[i].ctypes.data + slot * step
                binding.bind_input(f"past_{kind}.{i}", "cpu", 0, cache.dtype.type, dims, pointer)
                binding.bind_output(f"present_{kind}.{i}", "cpu", 0, cache.dtype.type, dims, pointer)

    def _bind_array(self, binding, name: str, array: np.ndarray) -> None:  # noqa: ANN001
        binding.bind_input(name, "cpu", 0, array.dtype, list(array.shape), array.ctypes.data)

    def _bind_lora(self, binding, scales: dict[str, np.ndarray]) -> None:  # noqa: ANN001
        for name, array in self.lora.inputs().items():
            self._bind_array(binding, name, array)
        for group, array in scales.items():
            self._bind_array(binding, f"lora_scale.{group}", array)

    def _bind_decode(self, session, batch: SlotCache, lora: bool) -> _DecodeBinding:  # noqa: ANN001
        """One binding reused by every decode step while the rows stay the same: its inputs are arrays
        rewritten in place before each run, its outputs the KV buffers themselves and one logits array."""
        s, size = self.shape, batch.size
        bound = _DecodeBinding(
            binding=session.io_binding(), changes=batch.changes, lora=lora,
            embeds=np.zeros((size, s.hidden), dtype=np.float32), seqlens=np.zeros(size, dtype=np.int32),
            total=np.zeros((), dtype=np.int32),
            qkv_shape=np.array([size, 1, (s.heads + 2 * s.kv_heads) * s.head_dim], dtype=np.int64),
            index=np.arange(size, dtype=np.int64), logits=np.empty((size, s.vocab), dtype=np.float32),
            scales=self.lora.scale_arrays(size) if lora else {},
        )
        for name, array in (("embeds", bound.embeds), ("seqlens_k", bound.seqlens),
                            ("total_sequence_length", bound.total), ("qkv_shape", bound.qkv_shape),
                            ("logits_index", bound.index)):
            self._bind_array(bound.binding, name, array)
        if lora:
            self._bind_lora(bound.binding, bound.scales)
        self._bind_kv(bound.binding, size, 0)
        bound.binding.bind_output("logits", "cpu", 0, np.float32, list(bound.logits.shape), bound.logits.ctypes.data)
        return bound

    def _forward(self, session, lora: bool, tokens: np.ndarray, slot: int, adapters: Sequence[str | None],
                 wanted: np.ndarray) -> np.ndarray:  # noqa: ANN001
        """One chunk of one row's prompt, written into ``slot``; the logits of the ``wanted`` positions."""
        s, cache = self.shape, self._cache
        past = int(cache.lengths[slot])
        count = len(tokens)
        binding = session.io_binding()
        arrays = {
            "embeds": embed(self._rows, tokens),
            "qkv_shape": np.array([1, count, (s.heads + 2 * s.kv_heads) * s.head_dim], dtype=np.int64),
            "seqlens_k": np.array([past + count - 1], dtype=np.int32),
            "total_sequence_length": np.array(past + count, dtype=np.int32),
            "logits_index": np.asarray(wanted, dtype=np.int64),
        }
        for name, array in arrays.items():
            self._bind_array(binding, name, array)
        if lora:
            scales = self.lora.scale_arrays(count)
            self.lora.fill_scales(scales, adapters)
            self._bind_lora(binding, scales)
        self._bind_kv(binding, 1, slot)
        logits = np.empty((len(wanted), s.vocab), dtype=np.float32)
        binding.bind_output("logits", "cpu", 0, np.float32, list(logits.shape), logits.ctypes.data)
        session.run_with_iobinding(binding)
        cache.lengths[slot] = past + count
        return logits
