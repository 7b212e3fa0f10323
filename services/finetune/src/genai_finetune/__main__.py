"""Composition root: settings once, then one of three roles.

* ``python -m genai_finetune``: the gRPC server, with its job runner (worker processes, or Ray) and the
  monitor that registers and serves finished jobs' results;
* ``python -m genai_finetune worker``: a worker process (the server's runner starts these);
* ``python -m genai_finetune run-spec <spec.json>``: one run on a Ray cluster (the Ray runner submits it).
"""

from __future__ import annotations

import os

# Before torch loads: idle OpenMP threads sleep instead of spinning on cores shared with the other services.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import asyncio  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

from genai_core.deferred import Deferred  # noqa: E402
from genai_core.downstream import Downstream  # noqa: E402
from genai_core.logs import setup_logging  # noqa: E402
from genai_core.server import run_service  # noqa: E402

from genai_finetune.artifacts import Artifacts  # noqa: E402
from genai_finetune.basemodels import BaseModels  # noqa: E402
from genai_finetune.clients import InferenceModelServer, TokenizerServiceFiles  # noqa: E402
from genai_finetune.datafiles import Datasets  # noqa: E402
from genai_finetune.jobs import Jobs  # noqa: E402
from genai_finetune.monitor import Monitor  # noqa: E402
from genai_finetune.planning import Planner  # noqa: E402
from genai_finetune.runners import LocalRunner, Runner  # noqa: E402
from genai_finetune.servicer import Finetune, service_spec  # noqa: E402
from genai_finetune.settings import PREFIX, FinetuneSettings, RunnerKind, Settings  # noqa: E402
from genai_finetune.store import Store  # noqa: E402
from genai_finetune.tokenization import Tokenizers  # noqa: E402
from genai_finetune.types import ServiceInfo  # noqa: E402
from genai_finetune.worker import Worker  # noqa: E402

# What a Ray job's process needs besides the cluster's own environment.
RAY_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE",
           "TOKENIZERS_PARALLELISM": "false"}


def _stores(s: FinetuneSettings) -> tuple[Store, BaseModels, Tokenizers, Datasets]:
    store = Store(s.data_dir / "finetune.db")
    base_models = BaseModels(s.default_base_model, s.cache_dir, s.extra_base_models())
    tokenizers = Tokenizers()
    datasets = Datasets(store, s.data_dir / "files", s.imports_dir, base_models, tokenizers,
                        max_bytes=s.max_dataset_bytes, max_records=s.max_dataset_records)
    return store, base_models, tokenizers, datasets


def _runner(s: FinetuneSettings, store: Store, datasets: Datasets, base_models: BaseModels) -> Runner:
    def local() -> Runner:
        return LocalRunner(store, s.workers, [sys.executable, "-m", "genai_finetune"], dict(os.environ))

    def ray() -> Runner:
        from genai_finetune.ray_runner import RayRunner

        return RayRunner(store, datasets, base_models, address=s.ray_address, python=s.ray_python,
                         jobs_dir=s.data_dir / "jobs", threads=s.threads, concurrency=s.workers,
                         lease_seconds=s.lease_seconds, max_attempts=s.max_attempts, poll_seconds=s.poll_seconds,
                         env=RAY_ENV)

    return {RunnerKind.LOCAL: local, RunnerKind.RAY: ray}[s.runner]()


def _memory_limit(s: FinetuneSettings) -> int:
    import psutil

    return s.max_train_memory_bytes or int(0.8 * psutil.virtual_memory().total)


def serve(settings: Settings) -> None:
    s = settings.finetune
    finetune: Deferred[Finetune] = Deferred("fine-tune store")
    opened: dict[str, object] = {}

    async def ready() -> None:
        store, base_models, tokenizers, datasets = await asyncio.to_thread(_stores, s)
        opened["store"] = store
        await asyncio.to_thread(base_models.get, s.default_base_model)  # converted once, then cached
        downstream = opened["downstream"] = Downstream(settings.downstream, caller_prefix=PREFIX)
        artifacts = Artifacts(store, InferenceModelServer(downstream), base_models, root=s.artifacts_dir,
                              jobs_dir=s.data_dir / "jobs", dataset_sha256=lambda d: datasets.get(d).sha256)
        runner = opened["runner"] = _runner(s, store, datasets, base_models)
        await runner.start()
        monitor = opened["monitor"] = Monitor(artifacts, poll_seconds=s.poll_seconds,
                                              reconcile_seconds=s.reconcile_seconds)
        monitor.start()
        engine = ", ".join(f"{name} {version(name)}" for name in ("transformers", "peft", "trl", "torch"))
        info = ServiceInfo(engine, base_models.ids, runner.name, s.workers, s.max_dataset_bytes, s.max_dataset_records)
        planner = Planner(datasets, TokenizerServiceFiles(downstream, asyncio.get_running_loop()),
                          data_dir=s.data_dir, memory_limit=_memory_limit(s), artifacts=store.get_artifact)
        finetune.set(Finetune(datasets, Jobs(store, datasets, base_models, tokenizers, planner), artifacts, info,
                              s.poll_seconds))

    async def close() -> None:
        for name in ("monitor", "runner"):
            if name in opened:
                await opened[name].stop()  # type: ignore[attr-defined]
        if "downstream" in opened:
            await opened["downstream"].close()  # type: ignore[attr-defined]
        if "store" in opened:
            opened["store"].close()  # type: ignore[attr-defined]

    asyncio.run(run_service(settings.server, "finetune", [service_spec(finetune)], ready=ready, close=close))


def work(settings: Settings) -> None:
    """A worker process: train queued jobs until SIGTERM, or until the supervisor that started it is gone."""
    s = settings.finetune
    setup_logging("finetune-worker", settings.server.log_level)
    store, base_models, _, datasets = _stores(s)
    worker = Worker(store, datasets, base_models, jobs_dir=s.data_dir / "jobs",
                    worker_id=s.worker_id or f"worker-{uuid.uuid4().hex[:8]}", threads=s.threads,
                    lease_seconds=s.lease_seconds, max_attempts=s.max_attempts, poll_seconds=s.poll_seconds)
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stopping.set())
    worker.run(alive=lambda: not s.supervisor_pid or os.getppid() == s.supervisor_pid)
    store.close()


def main(argv: list[str]) -> int:
    settings = Settings.from_env(os.environ)
    role = argv[1] if len(argv) > 1 else "serve"
    if role == "worker":
        work(settings)
    elif role == "run-spec" and len(argv) == 3:
        from genai_finetune.ray_runner import run_spec

        setup_logging("finetune-ray-job", settings.server.log_level)
        return run_spec(Path(argv[2]))
    elif role == "serve":
        serve(settings)
    else:
        sys.stderr.write("usage: python -m genai_finetune [worker | run-spec <spec.json>]\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
