"""Tokenize latency through the gateway (HTTP) and directly over gRPC, on a running suite.

    make run            # in one terminal
    make bench          # in another

Prints p50/p90/p99 and mean per path; requests are sequential (latency, not throughput).
"""

from __future__ import annotations

import argparse
import statistics
import time

import grpc
import httpx
from genai.tokenizer.v1 import tokenizer_service_pb2 as pb
from genai.tokenizer.v1 import tokenizer_service_pb2_grpc as pb_grpc

TEXT = "The quick brown fox jumps over the lazy dog. " * 8  # ~80 tokens


def _summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    pct = lambda p: ms[min(len(ms) - 1, int(p / 100 * len(ms)))]  # noqa: E731
    return (
        f"| {name:<26} | {len(ms):>5} | {pct(50):7.2f} | {pct(90):7.2f} | {pct(99):7.2f} | "
        f"{statistics.fmean(ms):7.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--tokenizer", default="127.0.0.1:50051")
    parser.add_argument("-n", type=int, default=500)
    args = parser.parse_args()

    http_samples: list[float] = []
    with httpx.Client(base_url=args.gateway, timeout=10) as client:
        for i in range(args.n + 20):
            started = time.perf_counter()
            client.post("/v1/tokenize", json={"input": TEXT}).raise_for_status()
            if i >= 20:  # the first calls warm connections and caches
                http_samples.append(time.perf_counter() - started)

    grpc_samples: list[float] = []
    with grpc.insecure_channel(args.tokenizer) as channel:
        stub = pb_grpc.TokenizerServiceStub(channel)
        request = pb.TokenizeRequest(texts=[TEXT])
        for i in range(args.n + 20):
            started = time.perf_counter()
            stub.Tokenize(request, timeout=10)
            if i >= 20:
                grpc_samples.append(time.perf_counter() - started)

    print("| path                       |     n | p50 ms  | p90 ms  | p99 ms  | mean ms |")
    print("|----------------------------|-------|---------|---------|---------|---------|")
    print(_summary("HTTP gateway /v1/tokenize", http_samples))
    print(_summary("gRPC Tokenize (direct)", grpc_samples))


if __name__ == "__main__":
    main()
