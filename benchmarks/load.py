"""`make load`: many concurrent OpenAI chat streams through the gateway for a while, and what they met.

Starts the inference service and the gateway as their own processes (or uses ``--url``), then keeps
``--streams`` clients busy for ``--seconds``: each sends a streamed chat completion, reads it to the end, and
starts the next. Reported: requests, completed streams, 429s (the inference queue was full: the client is told
to retry), other errors (HTTP statuses or error events in the stream), time to first token p50/p95/max, output
tokens per second, and the resident memory of the inference service and the gateway before and after
(and their peaks). The report goes to stdout and to ``benchmarks/results/load.md``.

    python benchmarks/load.py --streams 64 --seconds 120
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_services import REPO, Service, free_port, serving  # noqa: E402
from genai_core.services import SERVICES  # noqa: E402
from genai_inference.settings import InferenceSettings  # noqa: E402

PROMPTS = [
    "Write a short poem about the sea.",
    "Explain photosynthesis to a child.",
    "List five uses of a paperclip.",
    "What is the capital of France, and why is it famous?",
]


@dataclass
class Tally:
    requests: int = 0
    completed: int = 0
    rejected_429: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    ttft: list[float] = field(default_factory=list)
    output_tokens: int = 0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def _rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _client(http: httpx.AsyncClient, url: str, stop_at: float, tally: Tally, max_tokens: int, i: int) -> None:
    n = i
    while time.monotonic() < stop_at:
        body = {"messages": [{"role": "user", "content": PROMPTS[n % len(PROMPTS)]}], "max_tokens": max_tokens,
                "stream": True, "stream_options": {"include_usage": True}}
        n += 1
        tally.requests += 1
        started = time.monotonic()
        first = None
        try:
            async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                if r.status_code == 429:
                    tally.rejected_429 += 1
                    await r.aread()
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                    continue
                if r.status_code != 200:
                    tally.error(f"HTTP {r.status_code}")
                    await r.aread()
                    continue
                failed = False
                async for line in r.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        tally.error(f"stream error: {chunk['error'].get('code')}")
                        failed = True
                    elif chunk.get("usage"):
                        tally.output_tokens += chunk["usage"]["completion_tokens"]
                    elif first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                        first = time.monotonic() - started
                if not failed:
                    tally.completed += 1
                    if first is not None:
                        tally.ttft.append(first)
        except httpx.HTTPError as exc:
            tally.error(type(exc).__name__)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(url: str, streams: int, seconds: float, max_tokens: int) -> tuple[Tally, float]:
    tally = Tally()
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=10), limits=limits) as http:
        started = time.monotonic()
        stop_at = started + seconds
        await asyncio.gather(*(_client(http, url, stop_at, tally, max_tokens, i) for i in range(streams)))
        return tally, time.monotonic() - started


@contextlib.asynccontextmanager
async def _suite(engine: str):
    async with serving("genai_inference", "INFERENCE", engine=engine) as inference:
        port = free_port()
        env = {**os.environ, "GENAI_GATEWAY_PORT": str(port), "GENAI_GATEWAY_INFERENCE_TARGET": inference.target,
               "GENAI_LOG_LEVEL": "WARNING",
               **{f"GENAI_GATEWAY_{n.upper()}_TARGET": "" for n in SERVICES if n != "inference"}}
        gateway = subprocess.Popen([sys.executable, "-m", "genai_gateway"], env=env, cwd=REPO)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                await asyncio.sleep(0.2)
            yield url, inference, Service(gateway, url)
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)


def _report(args, tally: Tally, elapsed: float, memory: list[tuple[str, float, float, float]]) -> str:
    lines = [
        f"# Load: {args.streams} concurrent chat streams for {args.seconds:.0f} s",
        "",
        f"`python benchmarks/load.py --streams {args.streams} --seconds {args.seconds:.0f} --max-tokens "
        f"{args.max_tokens}` (engine `{args.engine}`), run {time.strftime('%Y-%m-%d %H:%M')}, on 2 shared CPU cores.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| requests sent | {tally.requests} |",
        f"| streams completed | {tally.completed} |",
        f"| 429 (queue full; retried after Retry-After) | {tally.rejected_429} |",
        f"| other errors | {sum(tally.errors.values())} {dict(sorted(tally.errors.items())) or ''} |",
        f"| TTFT p50 / p95 / max (s) | {_percentile(tally.ttft, 0.5):.2f} / {_percentile(tally.ttft, 0.95):.2f} / "
        f"{max(tally.ttft, default=float('nan')):.2f} |",
        f"| mean TTFT (s) | {statistics.fmean(tally.ttft) if tally.ttft else float('nan'):.2f} |",
        f"| output tokens / s (all streams) | {tally.output_tokens / elapsed:.1f} |",
    ]
    lines += ["", "| process | RSS before (MiB) | RSS after (MiB) | peak RSS (MiB) |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {before:.0f} | {after:.0f} | {peak:.0f} |" for name, before, after, peak in memory]
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--engine", default=os.environ.get("GENAI_INFERENCE_ENGINE", InferenceSettings.engine.value))
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "load.md")
    args = parser.parse_args()
    async with _suite(args.engine) as (url, inference, gateway):
        processes = {"inference": inference.proc.pid, "gateway": gateway.proc.pid}
        before = {name: _rss_mb(pid) for name, pid in processes.items()}
        tally, elapsed = await _run(url, args.streams, args.seconds, args.max_tokens)
        await asyncio.sleep(2)  # let in-flight cleanup finish before reading memory
        memory = [(name, before[name], _rss_mb(pid), _rss_mb(pid, "VmHWM")) for name, pid in processes.items()]
    report = _report(args, tally, elapsed, memory)
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)


if __name__ == "__main__":
    asyncio.run(main())
