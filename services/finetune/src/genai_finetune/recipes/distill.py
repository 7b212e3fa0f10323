"""Logit distillation with transformers' ``Trainer``: a small student (a Llama sized by the method's settings,
with the teacher's tokenizer so both predict over one vocabulary) learns the base model's next-token
distributions on the dataset's texts. The loss is ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) *
cross-entropy`` over the real tokens (Hinton et al., 2015); only ``compute_loss`` is ours, the Trainer runs the
loop. After training the student's agreement with the teacher (the share of held-out positions where both pick
the same next token) and the perplexities of both are measured.

TRL's ``DistillationTrainer`` (1.16) generates completions on-policy at every step, which a CPU cannot afford
for this many steps; the logits of a fixed text set are the off-policy form of the same objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, LlamaConfig

from genai_finetune.execution import RecipeContext
from genai_finetune.labconfigs import DistillConfig
from genai_finetune.methods import method
from genai_finetune.recipes.blocks import PerplexityTrainer, base_tokenizer, job_blocks, perplexity
from genai_finetune.recipes.common import JobCallback, final_metrics, prepare, quiet, training_arguments
from genai_finetune.recipes.distributed import is_main, report_on_main
from genai_finetune.types import Outcome


def student_config(config: DistillConfig, teacher_config) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=teacher_config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, num_key_value_heads=config.num_kv_heads,
        intermediate_size=config.intermediate_size or (8 * config.hidden_size // 3 + 7) // 8 * 8,
        max_position_embeddings=max(config.seq_length, 128), tie_word_embeddings=True,
        bos_token_id=teacher_config.bos_token_id, eos_token_id=teacher_config.eos_token_id,
        pad_token_id=teacher_config.pad_token_id if teacher_config.pad_token_id is not None
        else teacher_config.eos_token_id)


class DistillTrainer(PerplexityTrainer):
    """A Trainer whose loss mixes the teacher's softened distribution with the next-token loss."""

    def __init__(self, *args, teacher, temperature: float, alpha: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval()
        self.temperature = temperature
        self.alpha = alpha

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if not model.training or self.alpha == 0.0:  # evaluation reports the plain next-token loss
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        with torch.no_grad():
            teacher_logits = self.teacher(input_ids=inputs["input_ids"],
                                          attention_mask=inputs.get("attention_mask")).logits
        t = self.temperature
        mask = inputs["labels"][:, 1:] != -100  # the positions whose next token is real
        student = F.log_softmax(outputs.logits[:, :-1][mask] / t, dim=-1)
        target = F.log_softmax(teacher_logits[:, :-1][mask] / t, dim=-1)
        kl = F.kl_div(student, target, log_target=True, reduction="batchmean") * t * t
        loss = self.alpha * kl + (1 - self.alpha) * outputs.loss
        return (loss, outputs) if return_outputs else loss


@torch.no_grad()
def agreement(student, teacher, blocks: list[list[int]]) -> dict[str, float]:
    """Top-1 next-token agreement of student and teacher, and both perplexities, over ``blocks``."""
    same = total = 0
    losses = {"student": 0.0, "teacher": 0.0}
    for block in blocks:
        ids = torch.tensor([block])
        s, t = student(input_ids=ids, labels=ids), teacher(input_ids=ids, labels=ids)
        same += int((s.logits[0, :-1].argmax(-1) == t.logits[0, :-1].argmax(-1)).sum())
        total += len(block) - 1
        losses["student"] += float(s.loss)
        losses["teacher"] += float(t.loss)
    n = max(1, len(blocks))
    return {"agreement": same / max(1, total), "perplexity_student": perplexity(losses["student"] / n),
            "perplexity_teacher": perplexity(losses["teacher"] / n)}


def train(context: RecipeContext) -> Outcome | None:
    prepare(context)
    config, spec = context.config, context.spec
    assert isinstance(config, DistillConfig)
    chosen = method(spec.method)
    tokenizer = base_tokenizer(spec.base_model_dir)
    teacher = AutoModelForCausalLM.from_pretrained(spec.base_model_dir, dtype=torch.float32)
    teacher.requires_grad_(False)
    student = AutoModelForCausalLM.from_config(student_config(config, teacher.config))
    blocks, held = job_blocks(context, tokenizer, config.seq_length, config.eval_fraction)
    h = context.hyperparameters
    callback = JobCallback(report_on_main(context.reporter), tokens_per_step=(h.batch_size or 1) * config.seq_length)
    trainer = quiet(DistillTrainer(
        model=student, args=training_arguments(context, evaluate=bool(held)),
        train_dataset=Dataset.from_dict({"input_ids": blocks}),
        eval_dataset=Dataset.from_dict({"input_ids": held}) if held else None,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False), callbacks=[callback],
        teacher=teacher, temperature=config.temperature, alpha=config.alpha))
    trainer.train(resume_from_checkpoint=context.last_checkpoint())
    if callback.stopped is not None:
        return None
    student.eval()
    metrics = {**final_metrics(callback, trainer), **agreement(student, teacher, held),
               "parameters_student": sum(p.numel() for p in student.parameters()),
               "parameters_teacher": sum(p.numel() for p in teacher.parameters()), "train_blocks": len(blocks)}
    output = context.output_dir
    if is_main():
        output.mkdir(parents=True, exist_ok=True)
        trainer.save_model(str(output))
        tokenizer.save_pretrained(str(output))
    return Outcome(chosen.kind, chosen.serving, chosen.artifact_format, str(output), metrics, metrics["trained_tokens"])
