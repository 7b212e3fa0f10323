"""Retrieval quality and cost on SciFact (BEIR layout, read in place from ../shared/data/scifact; never copied).

Starts the embedding service and the retrieval service (Qdrant Edge in a temporary directory) in-process on
free ports, ingests the corpus over gRPC, then runs the queries in each mode and reports nDCG@10 and
Recall@100 (document level: a document's rank is its best chunk's) next to an in-process reference (exact
numpy cosine over whole-document MiniLM embeddings, the BEIR baseline), search p50, ingest chunks/s, peak RSS
and the store's disk size. Writes benchmarks/results/retrieval.md.

    python benchmarks/retrieval_bench.py [--data DIR] [--docs N] [--queries N] [--rerank-candidates N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"


def load(data: Path, docs: int, queries: int):
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open()]
    qrels: dict[str, set[str]] = {}
    for line in list((data / "qrels" / "train.tsv").open())[1:]:
        q, d, score = line.rstrip("\n").split("\t")
        if int(score) > 0:
            qrels.setdefault(q, set()).add(d)
    if docs:  # keep every relevant document, then fill up to `docs`
        relevant = set().union(*qrels.values())
        keep = [c for c in corpus if c["_id"] in relevant][:docs]
        keep += [c for c in corpus if c["_id"] not in relevant][: max(0, docs - len(keep))]
        corpus = keep
    ids = {c["_id"] for c in corpus}
    qs = [json.loads(line) for line in (data / "queries.jsonl").open()]
    qs = [q for q in qs if q["_id"] in qrels and qrels[q["_id"]] & ids][: queries or None]
    return corpus, qs, qrels


def ndcg10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall(ranked: list[str], relevant: set[str], k: int = 100) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def dedupe(doc_ids: list[str]) -> list[str]:
    return list(dict.fromkeys(doc_ids))


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


async def main(args) -> str:
    from genai.retrieval.v1 import retrieval_service_pb2 as pb
    from genai.retrieval.v1 import retrieval_service_pb2_grpc as pb_grpc
    from genai_core.deferred import Deferred
    from genai_core.testing import running_server
    from genai_embedding.embedder import Embedder, EmbedOptions
    from genai_embedding.servicer import service_spec as embedding_spec
    from genai_embedding.settings import EmbeddingSettings
    from genai_retrieval.downstream import Downstream
    from genai_retrieval.servicer import Retrieval
    from genai_retrieval.servicer import service_spec as retrieval_spec
    from genai_retrieval.settings import RetrievalSettings
    from genai_retrieval.store import open_store
    from google.protobuf import struct_pb2

    corpus, queries, qrels = load(Path(args.data), args.docs, args.queries)
    print(f"{len(corpus)} documents, {len(queries)} queries", file=sys.stderr)
    embedder = Embedder.load(EmbeddingSettings(cache_dir=REPO / "var" / "cache"))
    await embedder.warmup()
    emb = Deferred("embedding")
    emb.set(embedder)
    rows: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="retrieval-bench-") as tmp:
        data_dir = Path(tmp)
        async with running_server([embedding_spec(emb)]) as (emb_server, _):
            settings = RetrievalSettings(data_dir=data_dir, chunk_size_tokens=args.chunk_size, chunk_overlap_tokens=32,
                                         max_top_k=200, optimize_after_points=10**9)
            store = open_store(data_dir)
            retrieval = Retrieval(settings, store, Downstream(f"127.0.0.1:{emb_server.port}", "", ""))
            r = Deferred("retrieval")
            r.set(retrieval)
            async with running_server([retrieval_spec(r)]) as (_server, channel):
                stub = pb_grpc.RetrievalServiceStub(channel)
                await stub.CreateCollection(pb.CreateCollectionRequest(name="scifact", sparse_enabled=True))
                start, chunks = time.perf_counter(), 0
                for i in range(0, len(corpus), 64):
                    docs = [pb.DocumentInput(document_id=c["_id"], title=c["title"], text=f"{c['title']}\n{c['text']}",
                                             metadata=struct_pb2.Struct()) for c in corpus[i : i + 64]]
                    reply = await stub.IngestDocuments(pb.IngestDocumentsRequest(collection="scifact", documents=docs),
                                                       timeout=600)
                    chunks += sum(x.chunk_count for x in reply.results)
                ingest_s = time.perf_counter() - start
                optimize_start = time.perf_counter()
                await asyncio.to_thread(store.optimize, "default", "scifact")  # HNSW, as the background thread does
                optimize_s = time.perf_counter() - optimize_start
                modes = {
                    "dense": pb.SearchOptions(mode=pb.SEARCH_MODE_DENSE, top_k=100),
                    "sparse": pb.SearchOptions(mode=pb.SEARCH_MODE_SPARSE, top_k=100),
                    "hybrid (RRF k=60)": pb.SearchOptions(mode=pb.SEARCH_MODE_HYBRID, top_k=100, candidate_count=200),
                    f"hybrid + rerank (top {args.rerank_candidates})": pb.SearchOptions(
                        mode=pb.SEARCH_MODE_HYBRID, top_k=args.rerank_candidates,
                        candidate_count=args.rerank_candidates, rerank=pb.RerankOptions(enabled=True)),
                }
                for name, options in modes.items():
                    nd, rc, lat = [], [], []
                    for q in queries:
                        t0 = time.perf_counter()
                        reply = await stub.Search(pb.SearchRequest(collection="scifact", query=q["text"],
                                                                   options=options), timeout=120)
                        lat.append(time.perf_counter() - t0)
                        ranked = dedupe([x.chunk.document_id for x in reply.results])
                        nd.append(ndcg10(ranked, qrels[q["_id"]]))
                        rc.append(recall(ranked, qrels[q["_id"]]))
                    rows[name] = (statistics.mean(nd), statistics.mean(rc), statistics.median(lat) * 1000)
                    print(name, rows[name], file=sys.stderr)
                disk = du(data_dir)
            await retrieval.close()
        # The reference: exact cosine over whole documents (truncated at 256 tokens), as the BEIR baseline does.
        texts = [f"{c['title']} {c['text']}" for c in corpus]
        vecs = []
        for i in range(0, len(texts), 64):
            res = await embedder.embed("", texts=texts[i : i + 64], options=EmbedOptions())
            vecs.extend(e.dense for e in res.embeddings)
        doc_matrix = np.stack(vecs)
        qres = await embedder.embed("", texts=[q["text"] for q in queries], options=EmbedOptions())
        nd, rc = [], []
        for q, e in zip(queries, qres.embeddings, strict=True):
            order = np.argsort(-(doc_matrix @ e.dense))[:100]
            ranked = [corpus[j]["_id"] for j in order]
            nd.append(ndcg10(ranked, qrels[q["_id"]]))
            rc.append(recall(ranked, qrels[q["_id"]]))
        reference = (statistics.mean(nd), statistics.mean(rc))
    await embedder.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        "# Retrieval benchmark: SciFact (train split)", "",
        f"{len(corpus)} documents → {chunks} chunks ({args.chunk_size}-token chunks, 32 overlap), "
        f"{len(queries)} queries; Qdrant Edge {store.engine_version}; all-MiniLM-L6-v2 (onnxruntime fp32) dense "
        "+ BM25-style sparse with IDF; document rank = its best chunk's.", "",
        "| mode | nDCG@10 | Recall@100 | search p50 (ms) |", "|---|---|---|---|",
        *(f"| {name} | {n:.3f} | {rc:.3f} | {p50:.1f} |" for name, (n, rc, p50) in rows.items()),
        f"| reference: exact numpy cosine, whole documents (in-process) | {reference[0]:.3f} | {reference[1]:.3f} | – |",
        "", f"- ingest: {chunks / ingest_s:.1f} chunks/s ({ingest_s:.1f} s, parse + chunk + embed + write, over gRPC)",
        f"- HNSW build (optimize): {optimize_s:.1f} s", f"- peak RSS of the benchmark process: {rss_mb:.0f} MB",
        f"- store on disk: {disk / 1e6:.1f} MB",
        f"- rerank: the embedding service's bi-encoder over the top {args.rerank_candidates} hybrid candidates, "
        "so its Recall@100 is bounded by that cut.", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--docs", type=int, default=0, help="0: the whole corpus")
    parser.add_argument("--queries", type=int, default=300, help="0: all")
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--rerank-candidates", type=int, default=30)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "retrieval.md"))
    args = parser.parse_args()
    report = asyncio.run(main(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(report)
