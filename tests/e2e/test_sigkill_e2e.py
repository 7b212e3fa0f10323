"""The inference service killed (SIGKILL) in the middle of a stream: the client gets a clean SSE error event
within a second, ``/readyz`` names the dead backend, and the gateway recovers once the service is back.

It runs its own inference service and gateway (the shared suite's must not be killed), on free ports.
"""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest
from genai_core import services

from tests.support.processes import free_port, log_tail, start_service, stop, wait_grpc_serving, wait_http_ok

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHAT = {"messages": [{"role": "user", "content": "Count from one to one hundred in words."}], "max_tokens": 200,
        "temperature": 0, "stream": True}


def _inference(port: int, tmp_path):
    env = {"GENAI_INFERENCE_PORT": str(port), "GENAI_INFERENCE_METRICS_PORT": "0",
           "GENAI_INFERENCE_DATA_DIR": str(tmp_path / "inference")}
    return start_service("genai_inference", env, tmp_path / "inference.log")


def test_sigkill_mid_stream_is_a_clean_error_then_recovery(tmp_path):
    port, gateway_port = free_port(), free_port()
    inference = _inference(port, tmp_path)
    gateway = start_service("genai_gateway", {
        "GENAI_GATEWAY_PORT": str(gateway_port), "GENAI_GATEWAY_INFERENCE_TARGET": f"127.0.0.1:{port}",
        **{f"GENAI_GATEWAY_{name.upper()}_TARGET": "" for name in services.SERVICES if name != "inference"},
    }, tmp_path / "gateway.log")
    base = f"http://127.0.0.1:{gateway_port}"
    try:
        wait_grpc_serving(f"127.0.0.1:{port}", 180, proc=inference, log_path=tmp_path / "inference.log")
        wait_http_ok(f"{base}/readyz", 60, proc=gateway, log_path=tmp_path / "gateway.log")

        events: list[str] = []
        with httpx.Client(timeout=60) as http, http.stream("POST", f"{base}/v1/chat/completions", json=CHAT) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            for line in lines:  # the stream has started: content is arriving
                if line.startswith("data: ") and '"content"' in line:
                    break
            inference.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            for line in lines:
                if line.startswith("data: "):
                    events.append(line[len("data: "):])
            ended = time.monotonic() - killed
        errors = [json.loads(e)["error"] for e in events if e != "[DONE]" and "error" in json.loads(e)]
        assert ended < 1.0, f"the stream took {ended:.2f} s to end after the kill"
        assert events[-1] == "[DONE]" and len(errors) == 1, events[-5:]
        assert errors[0]["type"] == "service_unavailable_error"
        assert errors[0]["message"] == "the inference service is unavailable; retry shortly"  # no address in it

        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["not_ready"] == ["inference"]
        down = httpx.post(f"{base}/v1/chat/completions", json={**CHAT, "stream": False}, timeout=30)
        assert down.status_code == 503 and down.headers["retry-after"]

        inference.wait(timeout=10)
        inference = _inference(port, tmp_path)
        wait_grpc_serving(f"127.0.0.1:{port}", 180, proc=inference, log_path=tmp_path / "inference.log")
        wait_http_ok(f"{base}/readyz", 60, proc=gateway, log_path=tmp_path / "gateway.log")
        again = httpx.post(f"{base}/v1/chat/completions", json={**CHAT, "stream": False, "max_tokens": 8}, timeout=60)
        assert again.status_code == 200, again.text
        assert again.json()["choices"][0]["message"]["content"]
    finally:
        codes = [stop(gateway, 30), stop(inference, 30)]
        assert None not in codes, f"{log_tail(tmp_path / 'gateway.log')}\n{log_tail(tmp_path / 'inference.log')}"
