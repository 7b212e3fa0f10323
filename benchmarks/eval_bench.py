"""The evaluation service against lm-evaluation-harness on the same gateway, and the scores of SmolLM2-135M.

Starts the suite (tokenizer, inference (its default engine), embedding, retrieval, evaluation, gateway) as processes on
free ports with temporary data directories, then, in one run:

1. throughput on multiple choice (GPQA diamond) and on GSM8K (5-shot generation): examples/s of the
   service vs lm-eval's ``local-completions`` driving the same gateway (in this process, timed around
   ``simple_evaluate``: its own start-up excluded), lm-eval with its defaults (batch 1, one request at a
   time) and batched (``--batch_size 8 --num_concurrent 4``);
2. the cross-check: the service's accuracy and per-choice log-likelihoods vs lm-eval's on the same
   multiple-choice examples;
3. the score of every shipped task with its 95 % bootstrap CI (limits below), and GSM8K perplexity on the
   onnxruntime int8 engine next to the default engine;
4. perplexity of the first 1,024 tokens of GSM8K test Q+A through the service vs the inference
   benchmark's method (one Generate with prompt_logprobs) on the same token ids;
5. the 135M judge on the hand-labelled faithfulness set (40 items), next to the word-overlap variant;
6. bad input: unknown task / model / collection, malformed task YAML, and hostile programs in the
   sandbox (run through a registered code task), with the service still serving afterwards.

Writes benchmarks/results/evaluation.md.

    python benchmarks/eval_bench.py [--mc N] [--gsm8k N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
from genai_inference.settings import InferenceSettings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
# The inference engine the suite runs (the service's default unless the environment picks one).
ENGINE = os.environ.get("GENAI_INFERENCE_ENGINE") or InferenceSettings.engine.value
SERVICES = ("tokenizer", "inference", "embedding", "retrieval", "evaluation")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Suite:
    """Every service and the gateway as processes, each caller pointed at the others."""

    def __init__(self, work: Path, extra: dict[str, str] | None = None) -> None:
        self.work = work
        self.ports = {name: free_port() for name in SERVICES}
        self.gateway_port = free_port()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "GENAI_LOG_LEVEL": "WARNING",
                    "GENAI_GATEWAY_PORT": str(self.gateway_port), "GENAI_GATEWAY_REQUEST_TIMEOUT": "900",
                    "OMP_WAIT_POLICY": "PASSIVE"}
        callers = ["GENAI_GATEWAY_", *(f"GENAI_{n.upper()}_" for n in SERVICES)]
        for name, port in self.ports.items():
            prefix = f"GENAI_{name.upper()}_"
            self.env[f"{prefix}PORT"] = str(port)
            self.env[f"{prefix}METRICS_PORT"] = "0"
            self.env[f"{prefix}DATA_DIR"] = str(work / name)
            self.env[f"{prefix}CACHE_DIR"] = str(REPO / "var" / "cache")
            for caller in callers:
                self.env[f"{caller}{name.upper()}_TARGET"] = f"127.0.0.1:{port}"
        self.env.update(extra or {})
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def start(self, names=(*SERVICES, "gateway")) -> None:
        from genai_core.services import SERVICES as TABLE

        for name in TABLE:  # every service of the table this run does not start (agent, finetune, ...)
            if name not in names:  # not deployed: the gateway's readiness must not wait for it
                self.env[f"GENAI_GATEWAY_{name.upper()}_TARGET"] = ""
        for name in names:
            out = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
            self.procs[name] = subprocess.Popen([sys.executable, "-m", f"genai_{name}"], cwd=REPO, env=self.env,
                                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{(self.work / f'{name}.log').read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=2) as reply:
                    if reply.status == 200:
                        return
            time.sleep(0.5)
        raise TimeoutError("the suite did not become ready")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- helpers over the gateway ------------------------------------------------------------------------------


def create(base: str, body: dict) -> dict:
    reply = httpx.post(f"{base}/v1/evaluations/runs", json=body, timeout=120)
    reply.raise_for_status()
    return reply.json()["run"]


def wait(base: str, run_id: str) -> dict:
    with httpx.stream("GET", f"{base}/v1/evaluations/runs/{run_id}/events", timeout=3600) as events:
        for _ in events.iter_lines():
            pass
    return httpx.get(f"{base}/v1/evaluations/runs/{run_id}", timeout=60).json()["run"]


def timed_run(base: str, body: dict) -> tuple[dict, float]:
    started = time.perf_counter()
    run = wait(base, create(base, body)["id"])
    if run["state"] != "STATE_SUCCEEDED":
        raise RuntimeError(f"run failed: {run.get('error')}")
    return run, time.perf_counter() - started


def samples(base: str, run_id: str) -> list[dict]:
    return httpx.get(f"{base}/v1/evaluations/runs/{run_id}/samples", params={"page_size": 1000},
                     timeout=60).json()["samples"]


def lm_eval_run(base: str, task_id: str, limit: int, work: Path, *, batch: int = 1, concurrent: int = 1,
                model_kind: str = "local-completions", extra: dict | None = None) -> tuple[dict, float]:
    """lm-eval in this process on our exported task; returns (results, seconds of simple_evaluate)."""
    import lm_eval
    from genai_evaluation import datasets, lmeval
    from genai_evaluation.registry import builtin_tasks
    from lm_eval.tasks import TaskManager

    task = builtin_tasks()[task_id]
    name, include = lmeval.export(task, datasets.load(task.dataset, work), work / f"lmeval-{task_id}")
    endpoint = "chat/completions" if model_kind == "local-chat-completions" else "completions"
    args = f"model={MODEL},base_url={base}/v1/{endpoint},max_retries=1,num_concurrent={concurrent},timeout=900"
    started = time.perf_counter()
    out = lm_eval.simple_evaluate(model=model_kind, model_args=args, tasks=[name], batch_size=batch, limit=limit,
                                  task_manager=TaskManager(include_path=str(include)), log_samples=True,
                                  **(extra or {}))
    return {"name": name, **out}, time.perf_counter() - started


def fmt(value, spec=".3f") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def metric_rows(run: dict, label: str = "") -> list[str]:
    rows = []
    for r in run["results"]:
        ci = f"[{fmt(r.get('ci_lower'))}, {fmt(r.get('ci_upper'))}]" if r.get("ci_lower") is not None else "–"
        name = r["metric"] + (f" ({r['filter']})" if r["filter"] else "")
        rows.append(f"| {r['task_id']}{label} | {name} | {fmt(r['value'])} | {ci} | {fmt(r.get('stderr'))} | "
                    f"{r['sample_count']} |")
    return rows


# -- the parts ---------------------------------------------------------------------------------------------


def throughput(suite: Suite, work: Path, args, report: list[str]) -> dict:
    base = suite.base
    log(f"multiple choice: gpqa_diamond, {args.mc} questions")
    ours, ours_s = timed_run(base, {"tasks": ["gpqa_diamond"], "limit": args.mc})
    log(f"  service: {ours_s:.1f} s")
    theirs, theirs_s = lm_eval_run(base, "gpqa_diamond", args.mc, work)
    log(f"  lm-eval batch 1: {theirs_s:.1f} s")
    batched, batched_s = lm_eval_run(base, "gpqa_diamond", args.mc, work, batch=8, concurrent=4)
    log(f"  lm-eval batch 8 x 4 concurrent: {batched_s:.1f} s")

    log(f"generation: gsm8k 5-shot, {args.gsm8k} questions")
    gen, gen_s = timed_run(base, {"tasks": ["gsm8k"], "limit": args.gsm8k})
    log(f"  service: {gen_s:.1f} s")
    lm_gen, lm_gen_s = lm_eval_run(base, "gsm8k", args.gsm8k, work)
    log(f"  lm-eval: {lm_gen_s:.1f} s")

    name = theirs["name"]
    acc = {r["metric"]: r["value"] for r in ours["results"]}
    lm_acc = theirs["results"][name]
    lm_lls = {s["doc_id"]: [float(r[0][0]) for r in s["resps"]] for s in theirs["samples"][name]}
    diffs = [abs(a - b) for s in samples(base, ours["id"]) for a, b in
             zip(s["loglikelihoods"], lm_lls[s["example_index"]], strict=True)]
    gen_name = lm_gen["name"]
    gen_ours = {(r["metric"], r["filter"]): r["value"] for r in gen["results"]}
    report += [
        "## Throughput: the service vs lm-eval driving the same gateway (same run, same machine)",
        "",
        "Examples per second over the whole evaluation (lm-eval timed around `simple_evaluate`, so its "
        "import and start-up are left out; the service from CreateEvaluationRun to the last event).",
        "",
        "| task | examples | service s | service ex/s | lm-eval (batch 1) s | ex/s | × | lm-eval (batch 8, 4 concurrent) s "
        "| ex/s | × |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| gpqa_diamond (multiple choice, 4 choices) | {args.mc} | {ours_s:.1f} | {args.mc / ours_s:.2f} | "
        f"{theirs_s:.1f} | {args.mc / theirs_s:.2f} | {theirs_s / ours_s:.2f} | {batched_s:.1f} | "
        f"{args.mc / batched_s:.2f} | {batched_s / ours_s:.2f} |",
        f"| gsm8k (5-shot generation, ≤256 tokens) | {args.gsm8k} | {gen_s:.1f} | {args.gsm8k / gen_s:.3f} | "
        f"{lm_gen_s:.1f} | {args.gsm8k / lm_gen_s:.3f} | {lm_gen_s / gen_s:.2f} | – | – | – |",
        "",
        "## Cross-check: same task, model and few-shot setting",
        "",
        "| task | metric | service | lm-eval through our gateway | max abs difference of per-choice log-likelihoods |",
        "|---|---|---|---|---|",
        f"| gpqa_diamond ({args.mc}) | acc | {fmt(acc['acc'], '.4f')} | {fmt(lm_acc['acc,none'], '.4f')} | "
        f"{max(diffs):.2e} over {len(diffs)} choices |",
        f"| gpqa_diamond ({args.mc}) | acc_norm | {fmt(acc['acc_norm'], '.4f')} | {fmt(lm_acc['acc_norm,none'], '.4f')} | |",
        f"| gsm8k ({args.gsm8k}, 5-shot) | exact_match strict | {fmt(gen_ours.get(('exact_match', 'strict-match')), '.4f')} "
        f"| {fmt(lm_gen['results'][gen_name].get('exact_match,strict-match'), '.4f')} | (generation: both greedy) |",
        f"| gsm8k ({args.gsm8k}, 5-shot) | exact_match flexible | "
        f"{fmt(gen_ours.get(('exact_match', 'flexible-extract')), '.4f')} | "
        f"{fmt(lm_gen['results'][gen_name].get('exact_match,flexible-extract'), '.4f')} | |",
        "",
    ]
    return {"mc": ours, "gsm8k": gen}


def scores(suite: Suite, work: Path, args, report: list[str], done: dict) -> None:
    base = suite.base
    rows = [*metric_rows(done["mc"]), *metric_rows(done["gsm8k"])]
    plan = [({"tasks": ["gsm8k_ppl"], "limit": args.ppl}, ""),
            ({"tasks": ["humaneval"], "limit": args.humaneval}, ""),
            ({"tasks": ["facts_retrieval", "gsm8k_retrieval"], "limit": args.retrieval, "search_mode": "dense"},
             " (dense)"),
            ({"tasks": ["facts_retrieval", "gsm8k_retrieval"], "limit": args.retrieval, "search_mode": "hybrid"},
             " (hybrid)"),
            ({"tasks": ["facts_rag"], "apply_chat_template": True}, "")]
    for body, label in plan:
        log(f"scores: {body}")
        run, seconds = timed_run(base, body)
        rows += metric_rows(run, label)
        log(f"  {seconds:.1f} s")
    report += [f"## Scores of SmolLM2-135M-Instruct on the shipped tasks ({ENGINE} engine)", "",
               "95 % percentile-bootstrap CIs over examples (1,000 resamples); stderr = sample std / √n as lm-eval. "
               "GPQA and GSM8K limits as above; the rest as listed (`examples`).", "",
               "| task | metric | value | 95 % CI | stderr | examples |", "|---|---|---|---|---|---|", *rows, ""]


def int8_engine(work: Path, args, report: list[str]) -> None:
    log("gsm8k_ppl on the onnxruntime int8 engine")
    suite = Suite(work / "int8", {"GENAI_INFERENCE_ENGINE": "onnxruntime", "GENAI_INFERENCE_ONNX_PRECISION": "int8"})
    for name in SERVICES:
        (work / "int8" / name).mkdir(parents=True, exist_ok=True)
    suite.start(("tokenizer", "inference", "evaluation", "gateway"))
    try:
        run, seconds = timed_run(suite.base, {"tasks": ["gsm8k_ppl", "gpqa_diamond"], "limit": args.ppl})
    finally:
        suite.stop()
    report += ["## The int8 engine on the same tasks", "",
               f"onnxruntime `quantize_dynamic` int8 (GENAI_INFERENCE_ENGINE=onnxruntime, "
               f"GENAI_INFERENCE_ONNX_PRECISION=int8), first {args.ppl} examples of each ({seconds:.0f} s):", "",
               "| task | metric | value | 95 % CI | stderr | examples |", "|---|---|---|---|---|---|",
               *metric_rows(run, " (int8)"), ""]


async def _ppl_check(suite: Suite) -> dict:
    """The inference benchmark's method (one Generate with prompt_logprobs, first token unscored) and the
    service's (a registered loglikelihood_rolling task scoring the first 1,024 tokens, first token unscored)
    on the same text: GSM8K test Q+A texts joined until they reach 1,024 tokens."""
    import grpc
    import yaml
    from genai.inference.v1 import inference_service_pb2 as pb
    from genai.inference.v1 import inference_service_pb2_grpc as pb_grpc
    from genai.tokenizer.v1 import tokenizer_service_pb2 as tpb
    from genai.tokenizer.v1 import tokenizer_service_pb2_grpc as tpb_grpc
    from genai_evaluation import datasets
    from genai_evaluation.registry import builtin_tasks

    docs = datasets.load(builtin_tasks()["gsm8k_ppl"].dataset, Path("."))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.ports['tokenizer']}") as tch, \
            grpc.aio.insecure_channel(f"127.0.0.1:{suite.ports['inference']}") as ich:
        tok, inf = tpb_grpc.TokenizerServiceStub(tch), pb_grpc.InferenceServiceStub(ich)

        async def encode(text: str) -> list[int]:
            reply = await tok.Tokenize(tpb.TokenizeRequest(texts=[text], add_special_tokens=False))
            return list(reply.encodings[0].ids)

        async def direct(ids: list[int]) -> float:
            reply = await inf.Generate(pb.GenerateRequest(model=MODEL, token_ids=pb.TokenIds(ids=ids),
                                                          sampling=pb.SamplingParams(max_new_tokens=1, temperature=0.0,
                                                                                     prompt_logprobs=0)), timeout=600)
            lps = [t.logprob for t in reply.prompt_logprobs][1:]
            return math.exp(-sum(lps) / len(lps))

        per_doc: list[int] = []  # exactly as benchmarks/inference_bench.py builds its 1,024 tokens
        texts = []
        for d in docs:
            texts.append(f"Question: {d['question']}\nAnswer: {d['answer']}\n\n")
            per_doc += await encode(texts[-1])
            if len(per_doc) >= 1024:
                break
        text = "".join(texts)
        whole = (await encode(text))[:1024]
        bench_figure, same_text = await direct(per_doc[:1024]), await direct(whole)
    task = {"task": "gsm8k_ppl_1024", "output_type": "loglikelihood_rolling", "dataset_path": "inline",
            "dataset_kwargs": {"docs": [{"text": text}]}, "doc_to_target": "text",
            "rolling": {"score_first_token": False, "max_tokens": 1024}, "metric_list": [{"metric": "token_perplexity"}]}
    httpx.post(f"{suite.base}/v1/evaluations/tasks", json={"yaml": yaml.safe_dump(task), "replace": True},
               timeout=60).raise_for_status()
    run, _ = timed_run(suite.base, {"tasks": ["gsm8k_ppl_1024"]})
    first_difference = next((i for i, (a, b) in enumerate(zip(per_doc, whole, strict=False)) if a != b), 1024)
    return {"bench": bench_figure, "direct": same_text, "service": run["results"][0]["value"],
            "first_difference": first_difference}


def ppl_check(suite: Suite, report: list[str]) -> None:
    log("perplexity check against the inference benchmark's method")
    r = asyncio.run(_ppl_check(suite))
    report += ["## Perplexity: the service vs the inference benchmark's method", "",
               "GSM8K test Q+A texts joined until they reach 1,024 tokens. The inference benchmark tokenizes each text "
               "on its own, sends the first 1,024 tokens as one Generate with prompt_logprobs and leaves the first "
               "token unscored; the service scores the joined text as a registered loglikelihood_rolling task "
               "(`rolling: {score_first_token: false, max_tokens: 1024}`).", "",
               "| method | tokens | perplexity |", "|---|---|---|",
               f"| inference benchmark (`make bench-inference`: texts tokenized one by one) | 1024 | {r['bench']:.4f} |",
               f"| the same Generate on the joined text's tokens | 1024 | {r['direct']:.4f} |",
               f"| evaluation service (loglikelihood_rolling on the joined text) | 1024 | {r['service']:.4f} |", "",
               f"Tokenized one by one or joined, the token ids first differ at position {r['first_difference']} "
               "(the tokenizer merges across a join), so the service's figure is compared with the Generate on "
               "the joined text's tokens: the same token ids through the same engine.", ""]


async def _judge(suite: Suite) -> list[tuple[int, float, float]]:
    from genai_core.downstream import Downstream
    from genai_core.settings import DownstreamSettings
    from genai_evaluation import rag
    from genai_evaluation.clients import InferenceModel

    items = [json.loads(line) for line in (REPO / "services/evaluation/src/genai_evaluation/data/judge_labels.jsonl")
             .read_text().splitlines()]
    downstream = Downstream(DownstreamSettings({n: f"127.0.0.1:{suite.ports[n]}" for n in ("tokenizer", "inference")},
                                               timeout=600))
    try:
        judge = InferenceModel(downstream, MODEL, MODEL)
        limit = asyncio.Semaphore(8)

        async def verdict(item: dict) -> float:
            async with limit:
                return await rag.faithfulness(judge, [item["context"]], item["answer"])

        judged = await asyncio.gather(*(verdict(i) for i in items))
    finally:
        await downstream.close()
    return [(i["faithful"], p, rag.overlap(i["answer"], [i["context"]])) for i, p in zip(items, judged, strict=True)]


def _auc(pairs: list[tuple[int, float]]) -> float:
    pos = [s for y, s in pairs if y == 1]
    neg = [s for y, s in pairs if y == 0]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def judge_reliability(suite: Suite, report: list[str]) -> None:
    log("judge reliability on the hand-labelled set")
    rows = asyncio.run(_judge(suite))

    def accuracy(scores: list[tuple[int, float]], threshold: float) -> float:
        return sum((s >= threshold) == bool(y) for y, s in scores) / len(scores)

    llm = [(y, p) for y, p, _ in rows]
    words = [(y, o) for y, _, o in rows]
    best = max((accuracy(llm, t), t) for t in sorted({p for _, p in llm}))
    best_words = max((accuracy(words, t), t) for t in sorted({o for _, o in words}))
    report += ["## How reliable is a 135M judge?", "",
               f"Faithfulness verdicts on {len(rows)} hand-labelled (context, answer) pairs in "
               "`services/evaluation/src/genai_evaluation/data/judge_labels.jsonl` (half supported, half with one "
               "changed fact). The judge's score is P(Yes) from its log-likelihoods of \"Yes\" and \"No\".", "",
               "| scorer | accuracy at 0.5 | best accuracy (threshold) | ROC AUC | mean score, supported | mean score, unsupported |",
               "|---|---|---|---|---|---|",
               f"| SmolLM2-135M judge (faithfulness) | {accuracy(llm, 0.5):.3f} | {best[0]:.3f} ({best[1]:.3f}) | "
               f"{_auc(llm):.3f} | {sum(p for y, p in llm if y) / sum(y for y, _ in llm):.3f} | "
               f"{sum(p for y, p in llm if not y) / sum(1 - y for y, _ in llm):.3f} |",
               f"| word overlap (faithfulness_overlap) | {accuracy(words, 0.5):.3f} | {best_words[0]:.3f} "
               f"({best_words[1]:.3f}) | {_auc(words):.3f} | {sum(o for y, o in words if y) / sum(y for y, _ in words):.3f} | "
               f"{sum(o for y, o in words if not y) / sum(1 - y for y, _ in words):.3f} |", ""]


HOSTILE = {
    "infinite loop": "while True:\n    pass",
    "memory hog": "x = bytearray(16 * 1024 ** 3)",
    "fork bomb": "import os\nwhile True:\n    os.fork()",
    "write outside the temp dir": "open('/etc/genai-escape', 'w').write('x')",
    "network": "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=3)",
    "huge file": "open('f', 'w').write('x' * (1 << 30))",
}


def bad_input(suite: Suite, report: list[str]) -> None:
    log("bad input and sandbox escapes")
    import yaml

    base = suite.base
    rows = []
    for what, method, path, body in (
        ("unknown task", "post", "/v1/evaluations/runs", {"tasks": ["no_such_task"]}),
        ("unknown model", "post", "/v1/evaluations/runs", {"tasks": ["gsm8k"], "model": "no-such-model"}),
        ("unknown collection", "post", "/v1/evaluations/runs", {"tasks": ["facts_retrieval"], "collection": "nope"}),
        ("malformed task YAML (bad metric)", "post", "/v1/evaluations/tasks",
         {"yaml": "task: t\noutput_type: multiple_choice\ndataset_path: inline\ndataset_kwargs: {docs: [{q: a}]}\n"
                  "doc_to_text: q\ndoc_to_choice: [a, b]\ndoc_to_target: 0\nmetric_list: [{metric: accuracy}]\n"}),
        ("malformed task YAML (syntax)", "post", "/v1/evaluations/tasks", {"yaml": "task: [unclosed"}),
    ):
        reply = getattr(httpx, method)(f"{base}{path}", json=body, timeout=60)
        error = reply.json().get("error", {})
        rows.append(f"| {what} | {reply.status_code} | {error.get('param') or ''} | {error.get('message', '')[:110]} |")
    task = {"task": "sandbox_escapes", "output_type": "generate_until", "dataset_path": "inline",
            "dataset_kwargs": {"docs": [{"name": k, "code": v} for k, v in HOSTILE.items()]},
            "doc_to_text": "{{name}}", "generation_kwargs": {"max_gen_toks": 1},
            "execution": {"program": "{{code}}", "timeout_s": 5, "memory_mb": 512},
            "metric_list": [{"metric": "pass_at_k", "k": [1]}]}
    httpx.post(f"{base}/v1/evaluations/tasks", json={"yaml": yaml.safe_dump(task), "replace": True},
               timeout=60).raise_for_status()
    run, seconds = timed_run(base, {"tasks": ["sandbox_escapes"]})
    outcomes = {s["document"]["name"]: s["execution_results"][0] for s in samples(base, run["id"])}
    info = httpx.get(f"{base}/v1/evaluations/info", timeout=30).json()
    ready = httpx.get(f"{base}/readyz", timeout=30).status_code
    report += ["## Bad input", "", "| request | HTTP | param | message |", "|---|---|---|---|", *rows, "",
               f"Hostile programs run through a registered code task (`execution.program: \"{{{{code}}}}\"`), "
               f"{seconds:.1f} s for all; sandbox: {info['sandbox']}.", "",
               "| program | outcome |", "|---|---|", *[f"| {k} | {v} |" for k, v in outcomes.items()], "",
               f"Afterwards `/readyz` answered {ready}; `/etc/genai-escape` exists: {Path('/etc/genai-escape').exists()}.",
               ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mc", type=int, default=20, help="GPQA questions for throughput and the cross-check")
    parser.add_argument("--gsm8k", type=int, default=24, help="GSM8K questions (5-shot generation)")
    parser.add_argument("--ppl", type=int, default=50, help="GSM8K texts for perplexity (and int8 GPQA)")
    parser.add_argument("--humaneval", type=int, default=20)
    parser.add_argument("--retrieval", type=int, default=100, help="queries per retrieval task")
    parser.add_argument("--quick", action="store_true", help="tiny limits: check the benchmark itself runs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "evaluation.md")
    args = parser.parse_args()
    if args.quick:
        args.mc, args.gsm8k, args.ppl, args.humaneval, args.retrieval = 2, 1, 3, 2, 5
    work = Path(tempfile.mkdtemp(prefix="genai-eval-bench-"))
    load = os.getloadavg()
    report = ["# Evaluation service", "",
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}) · "
              f"Python {platform.python_version()} · load average before start {load[0]:.2f} / {load[1]:.2f} / "
              f"{load[2]:.2f} (other work may share this machine: compare numbers of the same run only)", "",
              f"Model: {MODEL} ({ENGINE} engine unless noted). Command: `make bench-eval`"
              f"{' BENCH_ARGS=--quick' if args.quick else ''}.", ""]
    suite = Suite(work)
    for name in SERVICES:
        (work / name).mkdir(parents=True, exist_ok=True)
    try:
        log("starting the suite")
        suite.start()
        done = throughput(suite, work, args, report)
        scores(suite, work, args, report, done)
        ppl_check(suite, report)
        judge_reliability(suite, report)
        bad_input(suite, report)
    finally:
        suite.stop()
    int8_engine(work, args, report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report) + "\n")
    log(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
