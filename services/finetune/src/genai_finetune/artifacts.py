"""The artifact registry: a trained job's output becomes an artifact (files moved under ``artifacts/<id>``
with a manifest: base model and revision, method and settings, metrics, dataset hash) that the inference
service loads at once, before the job is marked succeeded, so ``fine_tuned_model`` answers the moment the
job says it is done.

How an artifact is served is a registry (``SERVING``): LoRA adapters share the base model's batches
(LoadAdapter), full weights and prompt/prefix-tuning adapters are models of their own (LoadModel), reward
models are not served by the inference service (the evaluation service loads them from ``path``).

A job and its artifact are written in one transaction; when the inference service cannot take the model
(down, or restarted later and so without it), the artifact stays registered and ``reconcile`` loads it
when the service is back. Deleting unloads first, then removes the row, then the files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from pathlib import Path

from genai_core.errors import GenAIError, NotFound, Unavailable

from genai_finetune.basemodels import BaseModels
from genai_finetune.jobs import model_name
from genai_finetune.ports import ModelServer
from genai_finetune.store import Store
from genai_finetune.types import Artifact, Job, JobError, JobState, Level, Outcome, Page, Serving

logger = logging.getLogger(__name__)

MANIFEST = "artifact.json"

Load = Callable[[ModelServer, Artifact], Awaitable[None]]
Unload = Callable[[ModelServer, str], Awaitable[None]]

SERVING: dict[Serving, tuple[Load, Unload]] = {
    Serving.ADAPTER: (lambda server, a: server.load_adapter(a), lambda server, name: server.unload_adapter(name)),
    Serving.MODEL: (lambda server, a: server.load_model(a), lambda server, name: server.unload_model(name)),
    Serving.EMBEDDING: (lambda server, a: server.load_encoder(a), lambda server, name: server.unload_encoder(name)),
    Serving.RERANKER: (lambda server, a: server.load_encoder(a), lambda server, name: server.unload_encoder(name)),
}


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Artifacts:
    def __init__(self, store: Store, server: ModelServer, base_models: BaseModels, *, root: Path, jobs_dir: Path,
                 dataset_sha256: Callable[[str], str]) -> None:
        self._store = store
        self._server = server
        self._base_models = base_models
        self._root = root
        self._jobs_dir = jobs_dir
        self._dataset_sha256 = dataset_sha256

    # -- registering ---------------------------------------------------------------------------------

    def _artifact(self, job: Job, outcome: Outcome) -> Artifact:
        artifact_id = f"ftart-{uuid.uuid4().hex[:24]}"
        target = self._root / artifact_id
        self._root.mkdir(parents=True, exist_ok=True)
        # A rename when the work dir and the artifacts share a filesystem; a copy when artifacts are a volume of
        # their own (deploy/: shared with the inference pods).
        shutil.move(outcome.path, target)
        base = self._base_models.get(job.base_model)
        artifact = Artifact(
            id=artifact_id, kind=outcome.kind, job_id=job.id, method=job.method, base_model=job.base_model,
            base_model_revision=base.revision, dataset_sha256=self._dataset_sha256(job.training_dataset_id),
            path=str(target.resolve()), format=outcome.format, size_bytes=directory_size(target),
            model_id=model_name(job.base_model, job.suffix, job.id), serving=outcome.serving, served=False,
            metrics=outcome.metrics,
            config={"method_config": job.method_config, "hyperparameters": asdict(job.hyperparameters),
                    "seed": job.seed},
            created_at=time.time(),
        )
        manifest = {k: v.value if hasattr(v, "value") else v for k, v in asdict(artifact).items()}
        (target / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return artifact

    async def _serve(self, artifact: Artifact) -> tuple[bool, str]:
        """Load into the inference service; (served, why not)."""
        if artifact.serving is Serving.NONE:
            return False, ""
        load, _ = SERVING[artifact.serving]
        try:
            await load(self._server, artifact)
        except GenAIError as exc:
            return False, exc.message
        return True, ""

    async def finalize(self, job: Job, outcome: Outcome) -> Job | None:
        """Register a trained job's output, serve it, and succeed the job (in that order)."""
        if not Path(outcome.path).is_dir():  # a crash between the move and the commit: nothing to register
            message = "the training output is missing; run the job again"
            await asyncio.to_thread(self._store.transition, job.id, (JobState.RUNNING,), JobState.FAILED, message,
                                    level=Level.ERROR, error=JobError("INTERNAL", message, "OUTPUT_MISSING"))
            return None
        artifact = await asyncio.to_thread(self._artifact, job, outcome)
        served, why = await self._serve(artifact)
        artifact = replace(artifact, served=served)
        if why:
            await asyncio.to_thread(self._store.add_event, job.id, Level.WARNING,
                                    f"The inference service could not load the model yet ({why}); it is registered "
                                    "and will be loaded when the inference service can take it")
        message = f"New fine-tuned model created: {artifact.model_id}. The job has successfully completed"
        done = await asyncio.to_thread(self._store.finish_with_artifact, job.id, artifact, message)
        if done is None:  # cancelled meanwhile (cannot happen once trained, but never leave half of it)
            await self._unload(artifact)
            shutil.rmtree(artifact.path, ignore_errors=True)
            return None
        shutil.rmtree(self._jobs_dir / job.id, ignore_errors=True)
        return done

    async def finalize_trained(self) -> int:
        trained = await asyncio.to_thread(self._store.trained)
        for job, outcome in trained:
            await self.finalize(job, outcome)
        return len(trained)

    # -- serving ---------------------------------------------------------------------------------------

    async def _unload(self, artifact: Artifact) -> None:
        if artifact.serving is Serving.NONE:
            return
        _, unload = SERVING[artifact.serving]
        try:
            await unload(self._server, artifact.model_id)
        except NotFound:
            pass

    async def reconcile(self) -> int:
        """Load every registered artifact the inference service does not serve (it restarted, or was down when
        the job finished); returns how many were loaded."""
        try:
            served = await self._server.served()
        except Unavailable:
            return 0
        loaded = 0
        for artifact in await asyncio.to_thread(self._store.all_artifacts):
            if artifact.serving is Serving.NONE:
                continue
            present = artifact.model_id in served
            if not present:
                present, why = await self._serve(artifact)
                if present:
                    loaded += 1
                    logger.info("loaded %s (%s) into the inference service", artifact.model_id, artifact.id)
                elif why:
                    logger.warning("could not load %s: %s", artifact.model_id, why)
            if present != artifact.served:
                await asyncio.to_thread(self._store.set_served, artifact.id, present)
        return loaded

    # -- the API ---------------------------------------------------------------------------------------

    def get(self, name: str) -> Artifact:
        artifact = self._store.get_artifact(name) if name else None
        if artifact is None:
            raise NotFound(f"no artifact or fine-tuned model '{name}'", resource_type="artifact", resource_name=name)
        return artifact

    def list(self, after: str, limit: int, job_id: str = "") -> Page:
        return self._store.list_artifacts(after, limit, job_id)

    async def delete(self, name: str) -> Artifact:
        artifact = await asyncio.to_thread(self.get, name)
        await self._unload(artifact)  # an Unavailable inference service stops the deletion here: nothing half-done
        deleted = await asyncio.to_thread(self._store.delete_artifact, artifact.id)
        if deleted is None:
            raise NotFound(f"artifact '{name}' was deleted meanwhile", resource_type="artifact", resource_name=name)
        await asyncio.to_thread(shutil.rmtree, artifact.path, True)
        return deleted

