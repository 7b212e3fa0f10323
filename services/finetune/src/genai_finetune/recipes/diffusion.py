"""A small class-conditioned diffusion model with diffusers: a ``UNet2DModel`` learns to predict the noise that
a ``DDPMScheduler`` added to the dataset's images (the DDPM objective). diffusers has no trainer, so the
objective is a small ``torch.nn.Module`` whose forward returns the loss and transformers' ``Trainer`` runs it:
batches, AdamW, the schedule, checkpoints with resume, pause and cancel work as for every other method.

After training, images are sampled with a few-step DDIM scheduler and their quality is measured the way small
image models are usually judged without an Inception network: a classifier trained on the same data (logistic
regression on the pixels) labels the samples, and its accuracy on them (did the model draw the class it was
asked for?) is reported next to its accuracy on held-out real images and the sampling speed.

The artifact holds ``unet/``, ``scheduler/`` (DDIM) and ``genai_image_model.json`` (labels, image size,
channels, steps), which the inference service's image generation loads.
"""

from __future__ import annotations

import io
import json
import random
import time

import numpy as np
import torch
from datasets import Dataset

from genai_finetune.execution import RecipeContext
from genai_finetune.labconfigs import DiffusionConfig
from genai_finetune.methods import method
from genai_finetune.recipes.common import JobCallback, final_metrics, prepare, quiet, training_arguments
from genai_finetune.recipes.distributed import is_main, report_on_main
from genai_finetune.types import Level, Outcome

MANIFEST = "genai_image_model.json"


def to_array(png: bytes, size: int, channels: int) -> np.ndarray:
    """A PNG as a [channels, size, size] float array in [-1, 1]."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L" if channels == 1 else "RGB").resize((size, size),
                                                                                     Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def to_png(array: np.ndarray) -> bytes:
    from PIL import Image

    pixels = ((np.clip(array, -1, 1) + 1) * 127.5).round().astype(np.uint8)
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def channels_of(png: bytes) -> int:
    from PIL import Image

    return 1 if Image.open(io.BytesIO(png)).mode in ("L", "LA", "1", "I", "I;16") else 3


def build_unet(config: DiffusionConfig, channels: int, classes: int):
    from diffusers import UNet2DModel

    b = config.base_channels
    return UNet2DModel(sample_size=config.image_size, in_channels=channels, out_channels=channels, layers_per_block=1,
                       block_out_channels=(b, 2 * b, 2 * b), norm_num_groups=min(8, b),
                       down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
                       num_class_embeds=classes if config.conditional and classes else None)


class NoisePrediction(torch.nn.Module):
    """The DDPM training objective as a module: noise the images at random steps, predict the noise, MSE."""

    def __init__(self, unet, scheduler) -> None:
        super().__init__()
        self.unet = unet
        self.scheduler = scheduler

    def forward(self, pixel_values: torch.Tensor, class_labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        noise = torch.randn_like(pixel_values)
        steps = torch.randint(0, self.scheduler.config.num_train_timesteps, (pixel_values.shape[0],),
                              device=pixel_values.device)
        noisy = self.scheduler.add_noise(pixel_values, noise, steps)
        labels = class_labels if self.unet.config.num_class_embeds else None
        predicted = self.unet(noisy, steps, class_labels=labels).sample
        return {"loss": torch.nn.functional.mse_loss(predicted, noise)}


@torch.no_grad()
def sample(unet, scheduler, labels: list[int] | None, count: int, steps: int, seed: int) -> np.ndarray:
    """``count`` images from noise in ``steps`` DDIM steps, of class ``labels[i]`` each; [N, C, S, S] in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    size, channels = unet.config.sample_size, unet.config.in_channels
    images = torch.randn((count, channels, size, size), generator=generator)
    scheduler.set_timesteps(steps)
    classes = torch.tensor(labels) if labels is not None and unet.config.num_class_embeds else None
    for t in scheduler.timesteps:
        predicted = unet(images, t, class_labels=classes).sample
        images = scheduler.step(predicted, t, images, eta=0.0, generator=generator).prev_sample
    return images.clamp(-1, 1).numpy()


def quality(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, unet, scheduler,
            config: DiffusionConfig, seed: int) -> dict[str, float]:
    """Accuracy of a pixel classifier trained on the same data, on held-out real images and on samples."""
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(max_iter=2000).fit(train_x.reshape(len(train_x), -1), train_y)
    out = {"classifier_accuracy_real": float(classifier.score(test_x.reshape(len(test_x), -1), test_y))}
    classes = sorted(set(train_y.tolist()))
    wanted = [classes[i % len(classes)] for i in range(config.quality_samples)]
    started = time.perf_counter()
    images = sample(unet, scheduler, wanted, config.quality_samples, config.sample_steps, seed)
    elapsed = time.perf_counter() - started
    out["classifier_accuracy_samples"] = float(classifier.score(images.reshape(len(images), -1), wanted))
    out["samples_per_second"] = config.quality_samples / elapsed
    out["quality_samples"] = config.quality_samples
    return out


def train(context: RecipeContext) -> Outcome | None:
    from diffusers import DDIMScheduler, DDPMScheduler

    prepare(context)
    config, spec = context.config, context.spec
    assert isinstance(config, DiffusionConfig)
    chosen = method(spec.method)
    records = context.train_records
    channels = channels_of(records[0]["image"])
    names = sorted({r["label"] for r in records if r["label"]}, key=lambda s: (len(s), s))
    index = {name: i for i, name in enumerate(names)}
    pixels = np.stack([to_array(r["image"], config.image_size, channels) for r in records])
    labels = np.array([index.get(r["label"], 0) for r in records])
    order = list(range(len(records)))
    random.Random(spec.seed).shuffle(order)
    held = order[:max(1, len(order) // 10)]  # real images the quality classifier is checked on
    kept = order[len(held):]
    train_set = Dataset.from_dict({"pixel_values": pixels[kept].tolist(), "class_labels": labels[kept].tolist()})
    train_set.set_format("torch")
    unet = build_unet(config, channels, len(names))
    noise = DDPMScheduler(num_train_timesteps=config.train_timesteps)
    objective = NoisePrediction(unet, noise)
    h = context.hyperparameters
    reporter = report_on_main(context.reporter)
    callback = JobCallback(reporter, tokens_per_step=float(h.batch_size or 1))  # images per step
    from transformers import Trainer

    trainer = quiet(Trainer(model=objective, args=training_arguments(context, evaluate=False), train_dataset=train_set,
                            callbacks=[callback]))
    trainer.train(resume_from_checkpoint=context.last_checkpoint())
    if callback.stopped is not None:
        return None
    unet.eval()
    ddim = DDIMScheduler.from_config(noise.config)
    metrics = {**final_metrics(callback, trainer), "images": len(kept), "classes": len(names),
               "parameters": sum(p.numel() for p in unet.parameters())}
    if config.quality_samples and len(names) > 1:
        metrics.update(quality(pixels[kept], labels[kept], pixels[held], labels[held], unet, ddim, config, spec.seed))
        reporter.message(Level.INFO, f"Quality: a pixel classifier labels {metrics['classifier_accuracy_samples']:.1%} "
                                     f"of {config.quality_samples} samples as the class asked for (real held-out images: "
                                     f"{metrics['classifier_accuracy_real']:.1%}); {metrics['samples_per_second']:.1f} "
                                     f"samples/s with {config.sample_steps} DDIM steps")
    output = context.output_dir
    if is_main():
        output.mkdir(parents=True, exist_ok=True)
        unet.save_pretrained(str(output / "unet"))
        ddim.save_pretrained(str(output / "scheduler"))
        (output / MANIFEST).write_text(json.dumps({
            "labels": names, "image_size": config.image_size, "channels": channels,
            "sample_steps": config.sample_steps, "conditional": bool(config.conditional and names)}, indent=2))
        grid = sample(unet, ddim, [i % max(1, len(names)) for i in range(len(names) or 1)], len(names) or 1,
                      config.sample_steps, spec.seed)
        (output / "samples.png").write_bytes(to_png(np.concatenate(list(grid), axis=-1)))
    return Outcome(chosen.kind, chosen.serving, chosen.artifact_format, str(output), metrics,
                   metrics["trained_tokens"])
