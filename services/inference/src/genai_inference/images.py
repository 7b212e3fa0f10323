"""Image generation with small diffusion models (the fine-tune service's ``diffusion`` method): a diffusers
``UNet2DModel`` and its DDIM scheduler, sampled from noise in a few steps, optionally conditioned on a class
label that the request's prompt names. The artifact's ``genai_image_model.json`` lists the labels, the image
size, the channels and the default number of steps.

An image model answers GenerateImages only; the text RPCs refuse it with a message that names the right route
(and GenerateImages refuses text models the same way), see ``registry``.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from genai_core.errors import InvalidArgument
from genai_core.limits import INFERENCE

MANIFEST = "genai_image_model.json"
MAX_IMAGES = INFERENCE.max_images  # per request
MAX_STEPS = INFERENCE.max_image_steps


def is_image_model(directory: Path) -> bool:
    return (directory / MANIFEST).is_file()


@dataclass(frozen=True)
class Generated:
    images: list[bytes]  # PNG files
    labels: list[str]
    seconds: float


class ImageModel:
    def __init__(self, model_id: str, directory: Path, *, threads: int = 2) -> None:
        import torch
        from diffusers import DDIMScheduler, UNet2DModel

        torch.set_num_threads(threads)
        self._torch = torch
        self.id = model_id
        self.revision = _revision(directory / "unet")
        self.directory = directory
        self.manifest = json.loads((directory / MANIFEST).read_text())
        self.labels: list[str] = list(self.manifest.get("labels") or [])
        self.unet = UNet2DModel.from_pretrained(str(directory / "unet")).eval()
        self.scheduler = DDIMScheduler.from_pretrained(str(directory / "scheduler"))
        self.size = int(self.manifest["image_size"])
        self._lock = threading.Lock()  # the scheduler keeps the timesteps of the run in progress

    def _classes(self, prompt: str, n: int) -> list[int] | None:
        if not self.manifest.get("conditional"):
            return None
        wanted = prompt.strip()
        if wanted not in self.labels:
            raise InvalidArgument.for_field(
                "prompt", f"'{self.id}' draws one of the classes {', '.join(self.labels)}; name one as the prompt")
        return [self.labels.index(wanted)] * n

    def generate(self, prompt: str, *, n: int = 1, size: int = 0, steps: int = 0, seed: int | None = None) -> Generated:
        """``n`` PNG images of the class ``prompt`` names; blocking."""
        if not 1 <= n <= MAX_IMAGES:
            raise InvalidArgument.for_field("n", f"must be between 1 and {MAX_IMAGES}")
        if size and size != self.size:
            raise InvalidArgument.for_field("size", f"'{self.id}' draws {self.size}x{self.size} images only")
        steps = steps or int(self.manifest.get("sample_steps", 25))
        if not 1 <= steps <= MAX_STEPS:
            raise InvalidArgument.for_field("steps", f"must be between 1 and {MAX_STEPS}")
        classes = self._classes(prompt, n)
        torch = self._torch
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(seed if seed is not None else int(time.time_ns() % 2**31))
        channels = self.unet.config.in_channels
        with self._lock, torch.no_grad():
            images = torch.randn((n, channels, self.size, self.size), generator=generator)
            self.scheduler.set_timesteps(steps)
            labels = torch.tensor(classes) if classes is not None else None
            for t in self.scheduler.timesteps:
                predicted = self.unet(images, t, class_labels=labels).sample
                images = self.scheduler.step(predicted, t, images, eta=0.0, generator=generator).prev_sample
        pngs = [_png(image) for image in images.clamp(-1, 1).numpy()]
        names = [self.labels[c] for c in classes] if classes is not None else [""] * n
        return Generated(pngs, names, time.perf_counter() - started)


def _revision(directory: Path) -> str:
    """A sha256 over the UNet's files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    pixels = ((array + 1) * 127.5).round().astype(np.uint8)
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
