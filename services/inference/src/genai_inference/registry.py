"""The models this server runs: the default model (with its LoRA adapters) and the models loaded beside it
at run time (LoadModel: fine-tuned full weights, or prompt/prefix-tuning adapters, each with its own
scheduler), plus public names for adapters (fine-tuned adapters are named ``ft:<base>:<suffix>:<job>``,
which the ``base:adapter`` syntax cannot carry).

Requests name a model; ``route`` finds the ``Inference`` that runs it and the name that ``Inference``
knows it by. Artifacts of the fine-tune service are found by id under ``artifacts_dir``.

    >>> # inference, name = registry.route("ft:smollm2-135m-instruct:support:ftjob-1a2b")
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from genai_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted

from genai_inference.generation import Inference
from genai_inference.images import ImageModel, is_image_model
from genai_inference.metrics import InferenceMetrics
from genai_inference.settings import EngineName, InferenceSettings
from genai_inference.types import ModelInfo

# Builds the Inference of a loaded model: (model id, its directory, the Inference of the base it runs on).
ModelFactory = Callable[[str, Path, Inference], Awaitable[Inference]]

_ARTIFACT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class _Alias:
    inference: Inference
    adapter: str  # the name the Inference knows the adapter by


def _internal_name(public: str) -> str:
    """An adapter name without ':' for a public name that has some."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", public)


class ModelRegistry:
    def __init__(self, default: Inference, factory: ModelFactory, *, artifacts_dir: Path, max_models: int) -> None:
        self.default = default
        self._factory = factory
        self._artifacts_dir = artifacts_dir
        self._max_models = max_models
        self._models: dict[str, Inference] = {}
        self._images: dict[str, ImageModel] = {}  # image models (diffusion): GenerateImages only
        self._aliases: dict[str, _Alias] = {}
        self._lock = threading.Lock()  # load/unload vs routing from other threads

    @classmethod
    def around(cls, default: Inference, metrics: InferenceMetrics | None = None) -> ModelRegistry:
        """The registry of a server whose default model is ``default``, with its settings' limits."""
        s = default.settings
        return cls(default, model_factory(s, metrics), artifacts_dir=s.artifacts_dir, max_models=s.max_loaded_models)

    # -- routing -------------------------------------------------------------------------------------

    def route(self, name: str) -> tuple[Inference, str]:
        """The Inference that runs ``name`` and the model name to give it."""
        name = name.strip()
        if name in self._images:
            raise FailedPrecondition(f"'{name}' is an image model: it draws images with GenerateImages (POST "
                                     "/v1/images/generations), not text", reason="WRONG_MODEL_KIND",
                                     resource_type="model", resource_name=name)
        if name in self._models:
            return self._models[name], name
        alias = self._aliases.get(name)
        if alias is not None:
            return alias.inference, f"{alias.inference.base.id}:{alias.adapter}"
        return self.default, name  # the default model, its adapters, base:adapter, or NotFound from it

    def public_name(self, resolved: str) -> str:
        """A response's model name (``base:adapter``) as the client named it."""
        for public, alias in self._aliases.items():
            if resolved == f"{alias.inference.base.id}:{alias.adapter}":
                return public
        return resolved

    def _public(self, info: ModelInfo) -> ModelInfo:
        return replace(info, id=self.public_name(info.id)) if info.is_adapter else info

    def models(self) -> list[ModelInfo]:
        """Base models first (the default, then the loaded ones), then adapters, each group by id."""
        infos = [m for inference in [self.default, *self._models.values()] for m in inference.models()]
        bases = [m for m in infos if not m.is_adapter or m.id in self._models]
        adapters = sorted((self._public(m) for m in infos if m.is_adapter and m.id not in self._models),
                          key=lambda m: m.id)
        images = [self._image_info(m) for m in self._images.values()]
        return [bases[0], *sorted([*bases[1:], *images], key=lambda m: m.id), *adapters]

    def _image_info(self, model: ImageModel) -> ModelInfo:
        return ModelInfo(id=model.id, revision=model.revision, engine="diffusers", context_length=0, max_new_tokens=0,
                         vocab_size=0, has_chat_template=False, source=str(model.directory))

    def image_model(self, name: str) -> ImageModel:
        """The image model ``name``; FailedPrecondition for a text model, NotFound for an unknown name."""
        found = self._images.get(name.strip())
        if found is not None:
            return found
        try:
            self.get_model(name)
        except NotFound:
            raise NotFound(f"no image model '{name}'; load one with LoadModel (a fine-tune diffusion artifact)",
                           resource_type="model", resource_name=name) from None
        raise FailedPrecondition(f"'{name}' is a text model: it writes text (completions, chat), not images",
                                 reason="WRONG_MODEL_KIND", resource_type="model", resource_name=name)

    def cancel(self, request_id: str) -> bool:
        return any(inference.cancel(request_id) for inference in [self.default, *self._models.values()])

    def get_model(self, name: str) -> ModelInfo:
        if name.strip() in self._images:
            return self._image_info(self._images[name.strip()])
        inference, resolved = self.route(name)
        return self._public(inference.get_model(resolved))

    # -- sources ---------------------------------------------------------------------------------------

    def _artifact(self, artifact_id: str) -> Path:
        if not _ARTIFACT_ID.match(artifact_id):
            raise InvalidArgument.for_field("artifact_id", f"'{artifact_id}' is not an artifact id")
        location = self._artifacts_dir / artifact_id
        if not location.is_dir():
            raise NotFound(f"artifact '{artifact_id}' is not under {self._artifacts_dir} (GENAI_INFERENCE_ARTIFACTS_DIR "
                           "must name the fine-tune service's artifacts directory)",
                           resource_type="artifact", resource_name=artifact_id)
        return location

    def _base(self, base_model: str) -> Inference:
        if not base_model or base_model == self.default.base.id:
            return self.default
        if base_model in self._models:
            return self._models[base_model]
        raise InvalidArgument.for_field("base_model", f"'{base_model}' is not served here; use '{self.default.base.id}'")

    def _check_free(self, name: str, field: str) -> None:
        taken = name in self._models or name in self._images or name in self._aliases or name == self.default.base.id
        if not taken:
            try:
                self.default.resolve(name)
                taken = True
            except NotFound:
                pass
        if taken:
            raise AlreadyExists(f"{field} '{name}' is served already; unload it first", resource_type="model",
                                resource_name=name)

    # -- adapters --------------------------------------------------------------------------------------

    def load_adapter(self, name: str, base_model: str, *, path: str = "", artifact_id: str = "") -> ModelInfo:
        """A LoRA adapter beside its base model; a name with ':' (``ft:...``) is kept as a public alias."""
        inference = self._base(base_model)
        if artifact_id:
            location = self._artifact(artifact_id)
            name = name or artifact_id
        else:
            location = None
        if ":" not in name:
            info = inference.load_adapter(name, path, root=location)
            return self._public(info)
        self._check_free(name, "adapter_name")
        internal = _internal_name(name)
        info = inference.load_adapter(internal, path, root=location)
        with self._lock:
            self._aliases[name] = _Alias(inference, internal)
        return self._public(info)

    def unload_adapter(self, name: str) -> ModelInfo:
        alias = self._aliases.get(name)
        if alias is None:
            inference, resolved = self.route(name)
            return inference.unload_adapter(resolved)
        info = self._public(alias.inference.unload_adapter(alias.adapter))
        with self._lock:
            del self._aliases[name]
        return info

    # -- models ----------------------------------------------------------------------------------------

    async def load_model(self, model_id: str, base_model: str, *, path: str = "", artifact_id: str = "") -> ModelInfo:
        if not model_id:
            raise InvalidArgument.for_field("model_id", "name the model, such as ft:<base>:<suffix>:<job>")
        self._check_free(model_id, "model_id")
        if len(self._models) + len(self._images) >= self._max_models:
            raise ResourceExhausted(f"{self._max_models} models are loaded beside the default one; unload one first "
                                    "(GENAI_INFERENCE_MAX_LOADED_MODELS)")
        if artifact_id:
            location = self._artifact(artifact_id)
        else:
            root = self.default.settings.adapters_dir.resolve()
            location = (root / path).resolve()
            if not path or not location.is_relative_to(root) or not location.is_dir():
                raise InvalidArgument.for_field("path", f"'{path}' is not a directory under {root}")
        if is_image_model(location):
            image = await asyncio.to_thread(ImageModel, model_id, location, threads=self.default.settings.threads)
            with self._lock:
                self._images[model_id] = image
            return self._image_info(image)
        inference = await self._factory(model_id, location, self._base(base_model))
        with self._lock:
            self._models[model_id] = inference
        return inference.base

    async def unload_model(self, model_id: str) -> ModelInfo:
        if model_id in self._images:
            with self._lock:
                image = self._images.pop(model_id)
            return self._image_info(image)
        inference = self._models.get(model_id)
        if inference is None:
            if model_id == self.default.base.id:
                raise FailedPrecondition("the default model cannot be unloaded", reason="DEFAULT_MODEL")
            raise NotFound(f"model '{model_id}' was not loaded with LoadModel", resource_type="model",
                           resource_name=model_id)
        with self._lock:
            del self._models[model_id]
        await inference.backend.close()  # stops its scheduler and frees the weights
        return inference.base

    async def close(self) -> None:
        await asyncio.gather(*(m.backend.close() for m in self._models.values()))
        self._models.clear()


def model_factory(settings: InferenceSettings, metrics: InferenceMetrics | None) -> ModelFactory:
    """Loaded models run on torch, each behind a scheduler of its own (``backends``, as the default model):
    a model directory as it is, a prompt/prefix-tuning adapter on the default model's weights."""

    async def build(model_id: str, location: Path, base: Inference) -> Inference:
        built = await asyncio.to_thread(_built, model_id, location, base)
        await built.backend.start()
        return Inference(built.backend, built.tokenizer, settings)

    def _built(model_id: str, location: Path, base: Inference):
        from genai_inference import backends
        from genai_inference.engines.prompt_learning_engine import PromptLearningEngine, prompt_learning_type
        from genai_inference.engines.seq2seq_engine import Seq2SeqBackend, is_encoder_decoder
        from genai_inference.models import resolve

        torch_settings = replace(settings, engine=EngineName.TORCH)
        quantized = quantized_format(location)
        if quantized.startswith("gguf"):  # a GGUF artifact: dequantized into the cache once, on torch
            return backends.build(replace(torch_settings, model=model_id, model_path=str(location / "model.gguf")),
                                  metrics)
        if quantized.startswith("onnx"):  # quantized ONNX: the onnxruntime engine exports its KV graph once
            return backends.build(replace(settings, engine=EngineName.ONNXRUNTIME, model=model_id,
                                          model_path=str(location), onnx_precision=quantized.removeprefix("onnx-")),
                                  metrics)
        if is_encoder_decoder(location):  # text-to-text: generate() runs it, one request at a time
            source = resolve(model_id, str(location), settings.cache_dir)
            backend = Seq2SeqBackend(model_id, location, source.revision, threads=settings.threads)
            return backends.Built(backend, backend.tokenizer)
        if prompt_learning_type(location):
            if base.base.id != settings.model:
                raise InvalidArgument.for_field("base_model", f"prompt and prefix tuning run on '{settings.model}'")
            return backends.build_scheduled(
                lambda source, s: PromptLearningEngine(source, location, model_id, threads=s.threads),
                torch_settings, metrics)
        if (location / "adapter_config.json").exists():
            raise InvalidArgument.for_field("path", "a LoRA adapter shares its base model's batches: use LoadAdapter")
        if not (location / "config.json").exists():
            raise InvalidArgument.for_field("path", f"'{location.name}' holds neither a model (config.json) nor "
                                                    "a prompt/prefix-tuning adapter")
        return backends.build(replace(torch_settings, model=model_id, model_path=str(location)), metrics)

    return build


def quantized_format(location: Path) -> str:
    """The format of a fine-tune quantization artifact ("gguf-q4_1", "onnx-int8", ...); "" for other models."""
    manifest = location / "genai_quantization.json"
    return json.loads(manifest.read_text()).get("format", "") if manifest.is_file() else ""
