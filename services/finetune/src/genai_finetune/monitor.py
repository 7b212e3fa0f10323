"""The server's background loop: register what the workers finished, and keep the inference service serving
every registered artifact (after it restarts, or when it was down at a job's end)."""

from __future__ import annotations

import asyncio
import logging
import time

from genai_finetune.artifacts import Artifacts

logger = logging.getLogger(__name__)


class Monitor:
    def __init__(self, artifacts: Artifacts, *, poll_seconds: float, reconcile_seconds: float) -> None:
        self._artifacts = artifacts
        self._poll = poll_seconds
        self._reconcile = reconcile_seconds
        self._task: asyncio.Task | None = None

    async def _loop(self) -> None:
        next_reconcile = 0.0
        while True:
            try:
                await self._artifacts.finalize_trained()
                if time.monotonic() >= next_reconcile:
                    await self._artifacts.reconcile()
                    next_reconcile = time.monotonic() + self._reconcile
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round; the next one retries
                logger.exception("the fine-tune monitor round failed")
            await asyncio.sleep(self._poll)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
