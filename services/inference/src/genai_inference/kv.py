"""The batched KV cache of the torch and onnxruntime (fp32) engines, which continuous batching moves rows
in and out of.

Rows are left-padded to a common length T. ``mask`` marks real positions (1) and padding (0);
``positions`` holds each row's next position id. Rows join (``extend``) and leave (``select``)
at token boundaries; both cost one copy of the cache, once per event, never per token.
Tensors are torch CPU tensors for every local engine (ONNX Runtime reads them through
zero-copy ``.numpy()`` views).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

Layer = tuple[torch.Tensor, torch.Tensor]  # (key, value), each [B, H, T, D]


@dataclass
class KVBatch:
    layers: list[Layer]
    mask: torch.Tensor  # [B, T] int64
    positions: torch.Tensor  # [B] int64

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])

    @classmethod
    def from_prefill(cls, layers: list[Layer], length: int) -> KVBatch:
        return cls(layers, torch.ones(1, length, dtype=torch.long), torch.tensor([length], dtype=torch.long))

    def _left_pad(self, extra: int) -> None:
        if extra <= 0:
            return
        self.layers = [
            (torch.nn.functional.pad(k, (0, 0, extra, 0)), torch.nn.functional.pad(v, (0, 0, extra, 0)))
            for k, v in self.layers
        ]
        self.mask = torch.nn.functional.pad(self.mask, (extra, 0))

    def extend(self, other: KVBatch) -> None:
        """Append ``other``'s rows, left-padding whichever side is shorter."""
        if self.size == 0:
            self.layers, self.mask, self.positions = other.layers, other.mask, other.positions
            return
        other = KVBatch(list(other.layers), other.mask, other.positions)
        self._left_pad(other.length - self.length)
        other._left_pad(self.length - other.length)
        self.layers = [
            (torch.cat([k, ok]), torch.cat([v, ov])) for (k, v), (ok, ov) in zip(self.layers, other.layers, strict=True)
        ]
        self.mask = torch.cat([self.mask, other.mask])
        self.positions = torch.cat([self.positions, other.positions])

    def select(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in that order; a row may repeat, which clones it), then trim padding."""
        index = torch.tensor(list(rows), dtype=torch.long)
        self.layers = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.layers]
        self.mask = self.mask.index_select(0, index)
        self.positions = self.positions.index_select(0, index)
        self.trim()

    def trim(self) -> None:
        """Drop leading columns that are padding in every row (after long rows left)."""
        if self.size == 0 or self.length == 0:
            return
        real = self.mask.any(dim=0).nonzero()
        start = int(real[0]) if real.numel() else self.length
        if start:
            self.layers = [(k[:, :, start:].contiguous(), v[:, :, start:].contiguous()) for k, v in self.layers]
            self.mask = self.mask[:, start:]

    def step_mask(self) -> torch.Tensor:
        """The attention mask for the next decode step: the current one plus a real column."""
        return torch.cat([self.mask, torch.ones(self.size, 1, dtype=torch.long)], dim=1)

    def advance(self, layers: list[Layer]) -> None:
        """Install the engine's updated layers after one decode step."""
        self.layers = layers
        self.mask = self.step_mask()
        self.positions = self.positions + 1


def empty_batch() -> KVBatch:
    return KVBatch([], torch.zeros(0, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long))


@dataclass(frozen=True)
class Piece:
    """Positions of one unpadded row, copied out for the prefix cache."""

    layers: list[Layer]

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.layers)


def snapshot(row: KVBatch, start: int, end: int) -> Piece:
    """A copy of positions [start, end) of a one-row batch without padding (a prefill's)."""
    if row.size != 1 or not bool(row.mask.all()):
        raise ValueError("snapshot takes a single unpadded row")
    return Piece([(k[:, :, start:end].clone(), v[:, :, start:end].clone()) for k, v in row.layers])


def restore(pieces: Sequence[Piece], length: int) -> KVBatch:
    """One row holding the first ``length`` positions of ``pieces`` end to end."""
    layers = [
        (torch.cat([p.layers[i][0] for p in pieces], dim=2)[:, :, :length].contiguous(),
         torch.cat([p.layers[i][1] for p in pieces], dim=2)[:, :, :length].contiguous())
        for i in range(len(pieces[0].layers))
    ]
    return KVBatch.from_prefill(layers, length)
