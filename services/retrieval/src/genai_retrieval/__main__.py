"""Composition root: settings once; in ``ready`` the downstream clients, the ports over them, the vector store
and the pipelines over those; served until SIGTERM, then ``close`` closes the store and the channels."""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import AsyncExitStack

from genai_core.deferred import Deferred
from genai_core.downstream import Downstream
from genai_core.operations import Operations
from genai_core.server import run_service

from genai_retrieval.clients import ChatClient, EmbeddingClient, PackingClient
from genai_retrieval.pipelines import Pipelines
from genai_retrieval.servicer import service_specs
from genai_retrieval.settings import NAME, PREFIX, Settings
from genai_retrieval.store import open_store

logger = logging.getLogger(__name__)


def main() -> None:
    settings = Settings.from_env(os.environ)
    s = settings.retrieval
    pipelines: Deferred[Pipelines] = Deferred("retrieval store")
    opened = AsyncExitStack()  # what ready opened, closed in reverse order
    operations = Operations(NAME)  # long-running ingests; cancelled on close, before the store closes

    async def ready() -> None:
        downstream = Downstream(settings.downstream, caller_prefix=PREFIX)  # aio channels: inside the loop
        opened.push_async_callback(downstream.close)
        store = await asyncio.to_thread(open_store, s.data_dir, s.qdrant_url, s.qdrant_api_key, s.optimize_after_points)
        opened.push_async_callback(asyncio.to_thread, store.close)
        pipelines.set(Pipelines.build(s, store, EmbeddingClient(downstream), ChatClient(downstream),
                                      PackingClient(downstream), settings.server.max_message_bytes))

    async def close() -> None:
        # run_service calls this after the drain: no call uses the store or the channels any more.
        await operations.close()
        await opened.aclose()
        logger.info("closed the vector store (%s) and the downstream channels", s.data_dir)

    asyncio.run(run_service(settings.server, NAME, service_specs(pipelines, operations), ready=ready, close=close))


if __name__ == "__main__":
    main()
