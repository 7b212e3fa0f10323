"""Composition root: settings once, open the vector store, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import os

from genai_core.deferred import Deferred
from genai_core.server import run_service

from genai_retrieval.downstream import Downstream
from genai_retrieval.service import Retrieval
from genai_retrieval.servicer import service_spec
from genai_retrieval.settings import Settings
from genai_retrieval.store import open_store


def main() -> None:
    settings = Settings.from_env(os.environ)
    s = settings.retrieval
    retrieval: Deferred[Retrieval] = Deferred("retrieval store")

    async def ready() -> None:
        store = await asyncio.to_thread(open_store, s.data_dir, s.qdrant_url, s.qdrant_api_key, s.optimize_after_points)
        downstream = Downstream(s.embedding_target, s.inference_target, s.tokenizer_target, timeout=s.downstream_timeout)
        retrieval.set(Retrieval(s, store, downstream))

    spec = service_spec(retrieval, settings.server.max_message_bytes)
    asyncio.run(run_service(settings.server, "retrieval", [spec], ready=ready))


if __name__ == "__main__":
    main()
