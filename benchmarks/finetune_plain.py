"""The references of ``finetune_bench.py``: what a model builder would write by hand.

* ``lora``: a plain PEFT script: the model, ``get_peft_model``, AdamW and a linear schedule, a loop over
  shuffled batches padded per batch, loss on the assistant replies only;
* ``dpo``: a plain TRL script: ``DPOTrainer`` with a ``DPOConfig`` and a peft ``LoraConfig``.

Each prints one JSON line: seconds per step (median and mean over the steps after the first), the steps,
the final loss and the process's peak RSS.

    python benchmarks/finetune_plain.py lora --model DIR --data train.jsonl --steps 20 --batch-size 4 ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def summary(step_times: list[float], losses: list[float]) -> dict:
    later = step_times[1:] or step_times
    return {"s_per_step_median": statistics.median(later), "s_per_step_mean": statistics.fmean(later),
            "steps": len(step_times), "final_loss": losses[-1], "peak_rss_mb": peak_rss_mb()}


def lora(args) -> dict:
    import peft
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    examples = []
    for line in Path(args.data).read_text().splitlines():
        messages = json.loads(line)["messages"]
        prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        prompt_len = len(tokenizer(prompt, add_special_tokens=False).input_ids)
        ids = tokenizer(full, add_special_tokens=False).input_ids[: args.max_length]
        examples.append((ids, [-100] * min(prompt_len, len(ids)) + ids[prompt_len:]))
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model = peft.get_peft_model(model, peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=args.rank,
                                                       lora_alpha=args.alpha, lora_dropout=args.dropout,
                                                       target_modules=TARGETS))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    schedule = get_linear_schedule_with_warmup(optimizer, 0, args.steps)
    generator = torch.Generator().manual_seed(args.seed)
    order: list[int] = []
    step_times, losses = [], []
    for _ in range(args.steps):
        if len(order) < args.batch_size:
            order += torch.randperm(len(examples), generator=generator).tolist()
        batch, order = [examples[i] for i in order[: args.batch_size]], order[args.batch_size:]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
        started = time.perf_counter()
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        step_times.append(time.perf_counter() - started)
        losses.append(loss.item())
    return summary(step_times, losses)


def dpo(args) -> dict:
    import peft
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    rows = []
    for line in Path(args.data).read_text().splitlines():
        record = json.loads(line)
        rows.append({"prompt": record["input"]["messages"], "chosen": record["preferred_output"],
                     "rejected": record["non_preferred_output"]})

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.losses: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._start)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    timer = Timer()
    config = DPOConfig(output_dir=args.out, per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
                       max_steps=args.steps, beta=args.beta, max_length=args.max_length, logging_steps=1,
                       save_strategy="no", report_to=[], use_cpu=True, seed=args.seed, gradient_checkpointing=False,
                       lr_scheduler_type="linear", disable_tqdm=True)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32), args=config,
                         processing_class=tokenizer, train_dataset=Dataset.from_list(rows), callbacks=[timer],
                         peft_config=peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=args.rank,
                                                     lora_alpha=args.alpha, lora_dropout=0.0,
                                                     target_modules=TARGETS))
    trainer.train()
    return summary(timer.times, timer.losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["lora", "dpo"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default="/tmp/plain-dpo")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=int, default=16)
    parser.add_argument("--dropout", type=float, default=0.05)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps({"lora": lora, "dpo": dpo}[args.kind](args)))


if __name__ == "__main__":
    main()
