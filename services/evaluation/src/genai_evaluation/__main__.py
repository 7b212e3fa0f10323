"""Composition root: settings once; in ``ready`` open the store, load the task registry, probe the sandbox
and start the run workers (resuming unfinished runs); serve until SIGTERM; ``close`` stops the workers."""

from __future__ import annotations

import asyncio
import os

from genai_core.deferred import Deferred
from genai_core.server import run_service
from opentelemetry import trace

from genai_evaluation.clients import ServiceBackends
from genai_evaluation.registry import TaskRegistry
from genai_evaluation.runner import RunnerSettings
from genai_evaluation.runs import Runs, RunsSettings
from genai_evaluation.sandbox import Sandbox
from genai_evaluation.servicer import service_spec
from genai_evaluation.settings import NAME, SandboxMode, Settings
from genai_evaluation.store import open_store


def main() -> None:
    settings = Settings.from_env(os.environ)
    s = settings.evaluation
    runs: Deferred[Runs] = Deferred("evaluation store")

    def backends() -> ServiceBackends:
        provider = trace.get_tracer_provider()  # run_service installed it before ready() runs
        return ServiceBackends(settings.downstream, tokenizer=s.tokenizer, embedding_model=s.embedding_model,
                               endpoint_timeout=s.endpoint_timeout,
                               tracer_provider=provider if hasattr(provider, "add_span_processor") else None)

    async def ready() -> None:
        store = await asyncio.to_thread(open_store, s.data_dir, s.database_url)
        registry = await asyncio.to_thread(TaskRegistry, store, s.data_dir)
        isolate = {SandboxMode.AUTO: None, SandboxMode.NAMESPACES: True, SandboxMode.RLIMITS: False}[s.sandbox]
        sandbox = Sandbox(isolate=isolate, max_parallel=s.sandbox_parallel)
        if s.sandbox == SandboxMode.NAMESPACES and not await asyncio.to_thread(Sandbox.probe):
            raise RuntimeError("GENAI_EVALUATION_SANDBOX=namespaces, but namespaces do not work here (needs root)")
        await asyncio.to_thread(lambda: sandbox.isolated)  # probe once, off the loop
        manager = Runs(store, registry, backends, sandbox, RunsSettings(
            max_concurrent_runs=s.max_concurrent_runs,
            runner=RunnerSettings(batch_size=s.batch_size, max_inflight=s.max_inflight, data_dir=s.data_dir,
                                  resamples=s.bootstrap_resamples)), tracer_provider=trace.get_tracer_provider())
        manager.start()
        runs.set(manager)

    async def close() -> None:
        try:
            manager = runs.get()
        except Exception:  # noqa: BLE001 - never became ready: nothing to stop
            return
        await manager.stop()
        manager.store.close()

    spec = service_spec(runs, settings.server.max_message_bytes)
    asyncio.run(run_service(settings.server, NAME, [spec], ready=ready, close=close))


if __name__ == "__main__":
    main()
