"""The remote engines against a real peer: our gateway's TGI- and OpenAI-compatible endpoints,
in front of the real torch inference service. Greedy output through the remote engine must equal
the local result, because the peer runs the same model."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from genai_core.deferred import Deferred
from genai_core.errors import FailedPrecondition
from genai_core.testing import running_server
from genai_gateway.settings import GatewaySettings
from genai_gateway.testing import serve_gateway
from genai_inference.engines.openai_engine import OpenAIBackend
from genai_inference.engines.tgi_engine import TgiBackend
from genai_inference.generation import Inference
from genai_inference.registry import ModelRegistry
from genai_inference.servicer import service_spec
from genai_inference.types import Constraint, ConstraintKind, FinishReason, Sampling

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
async def gateway_url(inference):
    deferred: Deferred = Deferred("inference engine")
    deferred.set(ModelRegistry.around(inference))
    async with running_server([service_spec(deferred)]) as (server, _channel):
        settings = GatewaySettings(targets={"inference": f"127.0.0.1:{server.port}"}, request_timeout=120)
        async with serve_gateway(settings) as url:
            yield url


def _remote(cls, url: str, source, tokenizer, settings) -> Inference:
    remote_settings = dataclasses.replace(settings, remote_url=url, remote_model=source.id)
    return Inference(cls(remote_settings, source, tokenizer), tokenizer, remote_settings)


@pytest.fixture(scope="module")
def remotes(gateway_url, source, tokenizer, settings):
    return {
        "tgi": _remote(TgiBackend, gateway_url, source, tokenizer, settings),
        "openai": _remote(OpenAIBackend, f"{gateway_url}/v1", source, tokenizer, settings),
    }


async def _answer(inference: Inference, chat_text, **sampling) -> tuple[str, FinishReason]:
    prompt = chat_text(QUESTION)
    request = inference.request(
        "", "", text=prompt, sampling=Sampling(**sampling), constraint=None, add_special_tokens=False
    )
    result = await inference.collect(request)
    return result.completions[0].text, result.completions[0].finish.reason


@pytest.mark.parametrize("kind", ["tgi", "openai"])
async def test_remote_greedy_equals_local(kind, remotes, inference, chat_text):
    local, _ = await _answer(inference, chat_text, temperature=0.0, max_new_tokens=12)
    remote, reason = await _answer(remotes[kind], chat_text, temperature=0.0, max_new_tokens=12)
    assert remote == local
    assert "Paris" in remote
    assert reason in (FinishReason.STOP, FinishReason.LENGTH)


@pytest.mark.parametrize("kind", ["tgi", "openai"])
async def test_remote_stop_sequence_and_seed(kind, remotes, chat_text):
    text, reason = await _answer(remotes[kind], chat_text, temperature=0.0, max_new_tokens=20, stop=("Paris",))
    assert "Paris" not in text and reason in (FinishReason.STOP, FinishReason.STOP_SEQUENCE)
    first, _ = await _answer(remotes[kind], chat_text, temperature=0.9, seed=11, max_new_tokens=10)
    again, _ = await _answer(remotes[kind], chat_text, temperature=0.9, seed=11, max_new_tokens=10)
    assert first == again


@pytest.mark.parametrize("kind", ["tgi", "openai"])
async def test_remote_json_schema(kind, remotes, chat_text):
    import json

    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["city"],
        "properties": {"city": {"type": "string", "maxLength": 12}},
    }
    inference = remotes[kind]
    request = inference.request(
        "",
        "",
        text=chat_text("Name a city as JSON."),
        add_special_tokens=False,
        sampling=Sampling(temperature=0.0, max_new_tokens=30),
        constraint=Constraint(ConstraintKind.JSON_SCHEMA, schema),
    )
    result = await inference.collect(request)
    assert set(json.loads(result.completions[0].text)) == {"city"}


async def test_remote_unsupported_constraint_is_a_clear_error(remotes, chat_text):
    inference = remotes["openai"]
    request = inference.request(
        "",
        "",
        text=chat_text("Yes or no?"),
        add_special_tokens=False,
        sampling=Sampling(temperature=0.0, max_new_tokens=3),
        constraint=Constraint(ConstraintKind.REGEX, "yes|no"),
    )
    with pytest.raises(FailedPrecondition):
        await inference.collect(request)


@pytest.mark.parametrize(
    "module",
    ["genai_inference.engines.tgi_engine", "genai_inference.engines.openai_engine", "genai_inference.engines.base",
     "genai_inference.backends"],
)
def test_importing_a_remote_engine_does_not_load_torch(module):
    """A TGI/OpenAI deployment needs no torch: importing its engine (and the registry) must not load it."""
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
