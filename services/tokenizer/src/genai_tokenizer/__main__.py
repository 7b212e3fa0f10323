"""Composition root: settings once, build the registry, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import os

from genai_core.server import run_service

from genai_tokenizer.registry import TokenizerRegistry
from genai_tokenizer.servicer import service_spec
from genai_tokenizer.settings import Settings


def main() -> None:
    settings = Settings.from_env(os.environ)
    registry = TokenizerRegistry(settings.tokenizer)
    asyncio.run(
        run_service(
            settings.server,
            "tokenizer",
            [service_spec(registry)],
            ready=lambda: asyncio.to_thread(registry.load),
        )
    )


if __name__ == "__main__":
    main()
