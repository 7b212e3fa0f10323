"""A recipe launched on several processes (``torchrun``/``accelerate launch``: DDP over gloo on CPUs, NCCL on
GPUs, or FSDP/DeepSpeed from the Trainer's arguments) runs the same code on every rank. Only the main rank
reports events and writes the output; the decision to stop (pause, cancel) is taken by the main rank and
broadcast, so every rank leaves the training loop at the same step instead of waiting on a collective that
its peers never join.
"""

from __future__ import annotations

import os

from genai_finetune.types import JobState, Level, Metrics


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


class RankReporter:
    """``execution.Reporter`` for one rank of a multi-process run."""

    def __init__(self, reporter) -> None:
        self._reporter = reporter

    def message(self, level: Level, text: str) -> None:
        if is_main():
            self._reporter.message(level, text)

    def metrics(self, metrics: Metrics, text: str) -> None:
        if is_main():
            self._reporter.metrics(metrics, text)

    def checkpoint(self, step: int, metrics: Metrics) -> None:
        if is_main():
            self._reporter.checkpoint(step, metrics)

    def state(self) -> JobState | None:
        import torch.distributed as dist

        wanted = [self._reporter.state() if is_main() else None]
        if dist.is_available() and dist.is_initialized():
            dist.broadcast_object_list(wanted, src=0)
        return wanted[0]


def report_on_main(reporter):
    """The reporter itself in a single process; a ``RankReporter`` around it when there are several."""
    return RankReporter(reporter) if world_size() > 1 else reporter
