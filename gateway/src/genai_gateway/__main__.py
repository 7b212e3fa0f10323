"""Composition root of the gateway: settings once, backends, app, uvicorn."""

from __future__ import annotations

import os

import uvicorn
from genai_core.logs import setup_logging
from genai_core.telemetry import setup_telemetry

from genai_gateway.app import build_app
from genai_gateway.settings import GatewaySettings
from genai_gateway.tracing import SERVICE


def main() -> None:
    settings = GatewaySettings.from_env(os.environ)
    setup_logging(SERVICE, settings.log_level)
    provider = setup_telemetry(SERVICE, settings.otlp_endpoint, capture_content=settings.capture_content)
    app = build_app(settings, tracer_provider=provider)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
