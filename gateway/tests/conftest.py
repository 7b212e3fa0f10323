"""Gateway test fixtures: a real tokenizer gRPC service in-process, and gateway apps in front of it.

Everything expensive is session-scoped: the tokenizer registry loads once (~1 s from the shared
cache), one in-process gRPC server serves every gateway variant, and each app's lifespan runs once.

Fixtures (conftest is not importable under --import-mode=importlib, so helpers are fixtures too):

* ``client``          open gateway (no API keys) over the real tokenizer service;
* ``auth_client``     the same with ``api_keys=("k1", "k2")``;
* ``small_client``    ``max_body_bytes=256``;
* ``down_client``     tokenizer target is a free port where nothing listens;
* ``absent_client``   ``tokenizer_target=""`` (the backend is not configured);
* ``data_dir``        the tokenizer service's data dir (tmp), for corpus files;
* ``assert_envelope`` checks the error envelope's exact shape and returns ``body["error"]``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from genai_core.testing import running_server
from genai_gateway.app import build_app
from genai_gateway.settings import GatewaySettings
from genai_tokenizer.registry import TokenizerRegistry
from genai_tokenizer.servicer import service_spec
from genai_tokenizer.settings import TokenizerSettings
from opentelemetry.sdk.trace import TracerProvider

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO / "var" / "cache"
ENVELOPE_KEYS = {"message", "type", "code", "param", "trace_id"}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokenizer-data")
    (path / "corpus").mkdir()
    (path / "corpus" / "a.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 50)
    return path


@pytest.fixture(scope="session")
def registry(data_dir: Path) -> TokenizerRegistry:
    reg = TokenizerRegistry(TokenizerSettings(data_dir=data_dir, cache_dir=CACHE_DIR))
    reg.load()
    return reg


@pytest.fixture(scope="session")
async def tokenizer_port(registry: TokenizerRegistry) -> AsyncIterator[int]:
    async with running_server([service_spec(registry)]) as (server, _channel):
        yield server.port


async def _serve(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(settings, tracer_provider=TracerProvider())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=60) as http:
            http.app = app  # type: ignore[attr-defined]
            yield http


@pytest.fixture(scope="session")
async def client(tokenizer_port: int) -> AsyncIterator[httpx.AsyncClient]:
    async for http in _serve(GatewaySettings(targets={"tokenizer": f"127.0.0.1:{tokenizer_port}"})):
        yield http


@pytest.fixture(scope="session")
async def auth_client(tokenizer_port: int) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(targets={"tokenizer": f"127.0.0.1:{tokenizer_port}"}, api_keys=("k1", "k2"))
    async for http in _serve(settings):
        yield http


@pytest.fixture(scope="session")
async def small_client(tokenizer_port: int) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(targets={"tokenizer": f"127.0.0.1:{tokenizer_port}"}, max_body_bytes=256)
    async for http in _serve(settings):
        yield http


@pytest.fixture(scope="session")
async def down_client() -> AsyncIterator[httpx.AsyncClient]:
    # Bound but never listening: connections are refused, and no other process can take the port meanwhile.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        settings = GatewaySettings(targets={"tokenizer": f"127.0.0.1:{sock.getsockname()[1]}"}, request_timeout=5.0)
        async for http in _serve(settings):
            yield http


@pytest.fixture(scope="session")
async def absent_client() -> AsyncIterator[httpx.AsyncClient]:
    async for http in _serve(GatewaySettings(targets={})):
        yield http


@pytest.fixture(scope="session")
def assert_envelope():
    def check(response: httpx.Response, status: int, type_: str | None = None, code: str | None = None) -> dict:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == ENVELOPE_KEYS, error
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["trace_id"], str)
        if type_ is not None:
            assert error["type"] == type_, error
        if code is not None:
            assert error["code"] == code, error
        return error

    return check
