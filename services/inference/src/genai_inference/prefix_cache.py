"""Prefix caching: prompts that share a prefix (a system prompt, few-shot examples, a RAG template, the
context of N answer choices scored one by one) reuse its KV cache instead of computing it again.

Prompts are cut into blocks of ``block`` tokens. A block is keyed by a hash chain over every token up to
its end and the adapter (LoRA changes the keys and values), so a key names the block's exact content and
everything before it, as in vLLM's automatic prefix caching. A block holds the engine's copy of its KV
positions and, when the prompt was scored, the prompt logprobs of its tokens (a token's logprob and its
top alternatives depend only on the tokens before it, so they are as reusable as the KV). Blocks are
evicted least recently used first once they hold more than ``capacity_bytes``.

Only whole blocks of prompts are cached, from the worker thread only (no locking).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genai_inference.engines.base import KVPiece
from genai_inference.types import TokenLogprob


@dataclass
class Block:
    piece: KVPiece
    logprobs: tuple[TokenLogprob, ...] | None = None  # one per token of the block, when scored
    top: int = -1  # how many alternatives each of those carries

    @property
    def nbytes(self) -> int:
        return self.piece.nbytes


@dataclass(frozen=True)
class Match:
    blocks: tuple[Block, ...]
    block: int

    @property
    def tokens(self) -> int:
        return len(self.blocks) * self.block

    def logprobs(self) -> list[TokenLogprob]:
        return [lp for b in self.blocks for lp in (b.logprobs or ())]


class PrefixCache:
    def __init__(self, capacity_bytes: int, block: int = 16) -> None:
        if block < 1:
            raise ValueError("block must be positive")
        self.capacity_bytes = capacity_bytes
        self.block = block
        self.bytes = 0
        self._blocks: OrderedDict[bytes, Block] = OrderedDict()
        self.hits = 0  # lookups that reused at least one block
        self.reused_tokens = 0

    def __len__(self) -> int:
        return len(self._blocks)

    def keys(self, ids: Sequence[int], adapter: str | None) -> list[bytes]:
        """The chained key of every whole block of ``ids``."""
        tokens = np.asarray(ids, dtype=np.int64)
        parent = hashlib.blake2b((adapter or "").encode(), digest_size=16).digest()
        out = []
        for start in range(0, len(tokens) - self.block + 1, self.block):
            parent = hashlib.blake2b(parent + tokens[start : start + self.block].tobytes(), digest_size=16).digest()
            out.append(parent)
        return out

    def lookup(self, ids: Sequence[int], adapter: str | None, top: int | None = None, scored_from: int = 0) -> Match:
        """The cached blocks that start ``ids``, in order. With ``top`` (prompt logprobs wanted from position
        ``scored_from`` on), a block holding any of those positions counts only if it was scored with at least
        that many alternatives; blocks before ``scored_from`` need only their KV."""
        found: list[Block] = []
        for index, key in enumerate(self.keys(ids, adapter)):
            block = self._blocks.get(key)
            scored = top is not None and (index + 1) * self.block > scored_from
            if block is None or (scored and (block.logprobs is None or block.top < top)):
                break
            self._blocks.move_to_end(key)
            found.append(block)
        if found:
            self.hits += 1
            self.reused_tokens += len(found) * self.block
        return Match(tuple(found), self.block)

    def insert(self, key: bytes, block: Block) -> None:
        old = self._blocks.pop(key, None)
        if old is not None:
            self.bytes -= old.nbytes
        if block.nbytes > self.capacity_bytes:
            return
        self._blocks[key] = block
        self.bytes += block.nbytes
        while self.bytes > self.capacity_bytes:
            _, evicted = self._blocks.popitem(last=False)
            self.bytes -= evicted.nbytes

    def has(self, key: bytes, top: int | None) -> bool:
        block = self._blocks.get(key)
        return block is not None and (top is None or (block.logprobs is not None and block.top >= top))

    def clear(self) -> None:
        self._blocks.clear()
        self.bytes = 0
