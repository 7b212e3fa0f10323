"""Fine-tuning speed: our jobs (through the service: queue, worker process, events, checkpoints) against the
scripts a model builder writes by hand, on the same data, model and hyperparameters, in the same run.

* LoRA (r 8, alpha 16, all linear layers, dropout 0.05, lr 1e-3, batch 4, sequences cut at 128 tokens) on
  SmolLM2-135M: our ``lora`` job vs a plain PEFT loop (``finetune_plain.py lora``);
* DPO (beta 0.1, LoRA r 8, lr 5e-4, batch 4): our ``dpo`` job vs a plain TRL ``DPOTrainer`` script.

For each: seconds per optimizer step (median over the steps after the first; our job's from the times of its
per-step metrics events), tokens per second (the same token count per step for both: mean example length x
batch size), and the peak RSS of the process that trained (our worker; the script). The service and the script
never run at the same time; they alternate (plain, ours, ours, plain for 2 repeats) and each side reports its
best run, so a burst of load on a shared machine does not decide the ratio. Writes benchmarks/results/finetune.md.

    python benchmarks/finetune_bench.py [--lora-steps 20] [--dpo-steps 10] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench_services import serving  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "finetune.md"
WORDS = ("the river carries light stone past quiet towns while farmers count seeds and children name the clouds "
         "after old kings who never saw the sea").split()


def lora_data(n: int) -> list[dict]:
    """Chat examples of about 128 tokens with SmolLM2's template (long replies, cut at 128 by both sides)."""
    out = []
    for i in range(n):
        reply = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(90))
        out.append({"messages": [{"role": "user", "content": f"Write note number {i} about the river."},
                                 {"role": "assistant", "content": reply}]})
    return out


def dpo_data(n: int) -> list[dict]:
    out = []
    for i in range(n):
        good = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(30))
        bad = " ".join(WORDS[(i + 2 * k) % len(WORDS)] for k in range(30))
        out.append({"input": {"messages": [{"role": "user", "content": f"Describe the river, take {i}."}]},
                    "preferred_output": [{"role": "assistant", "content": "Gladly: " + good}],
                    "non_preferred_output": [{"role": "assistant", "content": bad}]})
    return out


def tokens_per_step(model_dir: Path, records: list[dict], batch: int, cut: int, kind: str) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    lengths = []
    for r in records:
        if kind == "lora":
            text = tokenizer.apply_chat_template(r["messages"], tokenize=False)
            lengths.append(min(cut, len(tokenizer(text, add_special_tokens=False).input_ids)))
        else:  # chosen and rejected, each with the prompt
            for reply in (r["preferred_output"], r["non_preferred_output"]):
                text = tokenizer.apply_chat_template(r["input"]["messages"] + reply, tokenize=False)
                lengths.append(min(cut, len(tokenizer(text, add_special_tokens=False).input_ids)))
    per_example = statistics.fmean(lengths) * (2 if kind == "dpo" else 1)
    return per_example * batch


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def our_job(kind: str, records: list[dict], hyper: dict, config: dict, cache: Path, threads: int) -> dict:
    import grpc
    import psutil
    from genai.finetune.v1 import finetune_service_pb2 as pb
    from genai.finetune.v1 import finetune_service_pb2_grpc as pb_grpc
    from google.protobuf import struct_pb2

    with tempfile.TemporaryDirectory(prefix="ft-bench-") as data:
        async with serving("genai_finetune", "FINETUNE", data_dir=data, cache_dir=str(cache), workers="1",
                           threads=str(threads), inference_target="", poll_seconds="0.2") as service:
            async with grpc.aio.insecure_channel(service.target) as channel:
                stub = pb_grpc.FinetuneServiceStub(channel)
                content = "\n".join(json.dumps(r) for r in records).encode()
                dataset = (await stub.CreateDataset(pb.CreateDatasetRequest(filename="bench.jsonl", content=content),
                                                    timeout=120)).dataset
                method_config = struct_pb2.Struct()
                method_config.update(config)
                job = (await stub.CreateTuningJob(pb.CreateTuningJobRequest(
                    base_model="smollm2-135m-instruct", training_dataset_id=dataset.id, method=kind,
                    method_config=method_config, hyperparameters=pb.Hyperparameters(**hyper), seed=0),
                    timeout=120)).job
                while True:
                    job = (await stub.GetTuningJob(pb.GetTuningJobRequest(job_id=job.id))).job
                    if job.state in (pb.TuningJob.STATE_SUCCEEDED, pb.TuningJob.STATE_FAILED):
                        break
                    await asyncio.sleep(1)
                if job.state != pb.TuningJob.STATE_SUCCEEDED:
                    raise RuntimeError(f"the {kind} job failed: {job.error.message}")
                events, after = [], ""
                while True:
                    page = await stub.ListTuningJobEvents(pb.ListTuningJobEventsRequest(job_id=job.id, page_size=100,
                                                                                         after=after))
                    events += page.events
                    if not page.has_more:
                        break
                    after = page.events[-1].id
            (worker,) = psutil.Process(service.proc.pid).children()
            rss = peak_rss_mb(worker.pid)
    times = sorted((e.metrics.step, e.create_time.ToNanoseconds() / 1e9) for e in events
                   if e.type == pb.TuningJobEvent.TYPE_METRICS and e.metrics.HasField("train_loss"))
    steps = [b[1] - a[1] for a, b in zip(times, times[1:], strict=False)]
    return {"s_per_step_median": statistics.median(steps), "s_per_step_mean": statistics.fmean(steps),
            "steps": len(times), "final_loss": job.progress.train_loss, "peak_rss_mb": rss}


def plain(kind: str, model_dir: Path, records: list[dict], args: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="ft-plain-") as work:
        data = Path(work) / "data.jsonl"
        data.write_text("\n".join(json.dumps(r) for r in records))
        out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "finetune_plain.py"), kind, "--model",
                              str(model_dir), "--data", str(data), "--out", str(Path(work) / "out"), *args],
                             check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(name: str, result: dict, tokens: float) -> str:
    return (f"| {name} | {result['steps']} | {result['s_per_step_median']:.2f} | {result['s_per_step_mean']:.2f} | "
            f"{tokens / result['s_per_step_median']:.0f} | {result['peak_rss_mb']:.0f} | {result['final_loss']:.3f} |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lora-steps", type=int, default=20)
    parser.add_argument("--dpo-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, alternating")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "var" / "cache")
    args = parser.parse_args()
    from genai_core.weights import DEFAULT_MODEL, convert_gguf, smollm2_gguf

    model_dir, _ = convert_gguf(DEFAULT_MODEL, smollm2_gguf(), args.cache_dir)
    lines = ["# Fine-tuning speed: our jobs vs plain scripts (make bench-finetune)", "",
             f"SmolLM2-135M fp32 on CPU, {args.threads} torch threads, batch 4, sequences cut at 128 tokens; "
             "s/step = median (and mean) over the steps after the first; tokens/s = the same tokens per step for "
             "both sides / median s/step; peak RSS of the training process; each side's best of "
             f"{args.repeats} alternating runs. One machine: compare the rows of a table with each other, not with "
             "other runs.", ""]
    header = ["| | steps | s/step (median) | s/step (mean) | tokens/s | peak RSS MB | final loss |",
              "|---|---|---|---|---|---|---|"]

    async def compare(kind: str, records: list[dict], hyper: dict, config: dict, plain_args: list[str]):
        ours, references = [], []
        for repeat in range(args.repeats):  # plain, ours, ours, plain, ...
            order = ("plain", "ours") if repeat % 2 == 0 else ("ours", "plain")
            for side in order:
                if side == "ours":
                    ours.append(await our_job(kind, records, hyper, config, args.cache_dir, args.threads))
                else:
                    references.append(plain(kind, model_dir, records, plain_args))
        best = min(ours, key=lambda r: r["s_per_step_median"])
        reference = min(references, key=lambda r: r["s_per_step_median"])
        runs = ", ".join(f"{a['s_per_step_median']:.2f}/{b['s_per_step_median']:.2f}" for a, b in zip(ours, references,
                                                                                                    strict=True))
        return best, reference, runs

    lora_records = lora_data(80)
    lora_tokens = tokens_per_step(model_dir, lora_records, 4, 128, "lora")
    ours, reference, runs = await compare(
        "lora", lora_records, {"n_epochs": 50, "batch_size": 4, "max_steps": args.lora_steps, "max_seq_length": 128,
                               "checkpoint_steps": 10}, {"rank": 8, "alpha": 16, "dropout": 0.05},
        ["--steps", str(args.lora_steps), "--batch-size", "4", "--max-length", "128", "--lr", "1e-3",
         "--threads", str(args.threads)])
    ratio = ours["s_per_step_median"] / reference["s_per_step_median"]
    lines += ["## LoRA", "", *header, row("our `lora` job (service, worker, checkpoints every 10 steps)", ours,
                                           lora_tokens), row("plain PEFT loop", reference, lora_tokens), "",
              f"Ratio (ours / plain, best median s/step of each): **{ratio:.3f}** (target <= 1.05); "
              f"every run, ours/plain: {runs}", ""]

    dpo_records = dpo_data(40)
    dpo_tokens = tokens_per_step(model_dir, dpo_records, 4, 128, "dpo")
    ours_dpo, reference_dpo, runs_dpo = await compare(
        "dpo", dpo_records, {"n_epochs": 50, "batch_size": 4, "max_steps": args.dpo_steps, "max_seq_length": 128,
                             "checkpoint_steps": 5}, {"beta": 0.1, "rank": 8, "alpha": 16},
        ["--steps", str(args.dpo_steps), "--batch-size", "4", "--max-length", "128", "--lr", "5e-4", "--beta", "0.1",
         "--threads", str(args.threads)])
    ratio_dpo = ours_dpo["s_per_step_median"] / reference_dpo["s_per_step_median"]
    lines += ["## DPO", "", *header, row("our `dpo` job (service, worker, checkpoints every 5 steps)", ours_dpo,
                                          dpo_tokens), row("plain TRL DPOTrainer script", reference_dpo, dpo_tokens),
              "", f"Ratio (ours / plain, best median s/step of each): **{ratio_dpo:.3f}** (target <= 1.05); "
              f"every run, ours/plain: {runs_dpo}", ""]
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
