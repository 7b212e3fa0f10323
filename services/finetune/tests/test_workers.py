"""Worker processes under the supervisor: a worker killed with SIGKILL mid-job is restarted and its job resumes
from the last checkpoint (optimizer, scheduler, RNG and data position included): the adapter it ends with is
the one an uninterrupted run of the same job produces. SIGTERM checkpoints and hands the job over."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
import torch
from genai_finetune.jobs import JobRequest
from genai_finetune.runners import LocalRunner
from genai_finetune.testing import FACTS, process_env, wait_until
from genai_finetune.types import Hyperparameters, JobState
from genai_finetune.worker import Worker
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

COMMAND = [sys.executable, "-m", "genai_finetune"]


def _request(dataset_id: str) -> JobRequest:
    # 32 steps of 2 examples, a checkpoint every 6: long enough to kill the worker in the middle.
    return JobRequest(base_model="tiny", training_dataset_id=dataset_id, method_config={"rank": 4}, seed=11,
                      hyperparameters=Hyperparameters(n_epochs=8, batch_size=2, checkpoint_steps=6))


def _adapter(store, job_id: str, data_dir) -> dict[str, torch.Tensor]:
    job = store.get_job(job_id)
    assert job.state is JobState.RUNNING  # trained, not yet registered (no monitor runs in these tests)
    return load_file(str(data_dir / "jobs" / job_id / "output" / "adapter_model.safetensors"))


async def test_sigkill_mid_job_resumes_from_the_last_checkpoint(jobs, upload, store, datasets, base_models, data_dir,
                                                                cache_dir, tiny_dir):
    dataset = upload(FACTS)
    # the reference: the same job, uninterrupted, in this process
    reference = jobs.create(_request(dataset.id))
    worker = Worker(store, datasets, base_models, jobs_dir=data_dir / "jobs", worker_id="reference", threads=2,
                    lease_seconds=30, max_attempts=3, poll_seconds=0.2)
    assert await asyncio.to_thread(worker.run_one)
    expected = _adapter(store, reference.id, data_dir)

    job = jobs.create(_request(dataset.id))
    runner = LocalRunner(store, 1, COMMAND, process_env(data_dir, cache_dir, f"tiny={tiny_dir}"), restart_delay=0.2)
    await runner.start()
    try:
        await wait_until(lambda: any(c.step >= 12 for c in store.list_checkpoints(job.id, None, 50).items), 120,
                    "a checkpoint at step 12")
        victim = runner.pids[0]
        os.kill(victim, signal.SIGKILL)
        await wait_until(lambda: _trained(store, job.id), 180,
                    "the resumed job to finish training")
    finally:
        await runner.stop()
    assert victim not in runner.pids and runner.restarts == 1
    messages = [e.message for e in store.events_after(job.id, 0)]
    assert "The worker stopped; a new worker resumes the job from its last checkpoint" in messages
    resumed = [m for m in messages if m.startswith("Resumed from the checkpoint at step ")]
    assert resumed and int(resumed[0].rsplit(" ", 1)[1]) >= 12
    assert store.get_job(job.id).attempts == 2
    steps = [e.metrics.step for e in store.events_after(job.id, 0) if e.metrics]
    assert steps[-1] == 32 and sorted(set(steps)) == list(range(1, 33))  # every step done, some of them twice
    got = _adapter(store, job.id, data_dir)
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def _trained(store, job_id: str) -> bool:
    return any(j.id == job_id for j, _ in store.trained())


async def test_sigterm_checkpoints_and_the_next_worker_resumes(jobs, upload, store, data_dir, cache_dir, tiny_dir):
    job = jobs.create(_request(upload(FACTS).id))
    env = process_env(data_dir, cache_dir, f"tiny={tiny_dir}")
    runner = LocalRunner(store, 1, COMMAND, env, restart_delay=0.2)
    await runner.start()
    try:
        await wait_until(lambda: store.get_job(job.id).progress.step >= 3, 120, "training to start")
    finally:
        await runner.stop()  # SIGTERM: save at the end of the step, let go
    stopped = store.get_job(job.id)
    assert stopped.state is JobState.RUNNING and stopped.attempts == 0  # not a failure: the attempt is given back
    saved = max(c.step for c in store.list_checkpoints(job.id, None, 50).items)
    assert saved >= 3
    again = LocalRunner(store, 1, COMMAND, env, restart_delay=0.2)
    await again.start()
    try:
        await wait_until(lambda: _trained(store, job.id), 180, "the job to finish after the restart")
    finally:
        await again.stop()
    messages = [e.message for e in store.events_after(job.id, 0)]
    assert f"Resumed from the checkpoint at step {saved}" in messages


async def test_pause_and_cancel_reach_a_running_worker(jobs, upload, store, data_dir, cache_dir, tiny_dir):
    dataset = upload(FACTS)
    paused = jobs.create(_request(dataset.id))
    runner = LocalRunner(store, 1, COMMAND, process_env(data_dir, cache_dir, f"tiny={tiny_dir}"), restart_delay=0.2)
    await runner.start()
    try:
        await wait_until(lambda: store.get_job(paused.id).progress.step >= 2, 120, "training to start")
        assert jobs.pause(paused.id).state is JobState.PAUSED
        await wait_until(lambda: not store.holder(paused.id), 60, "the worker to save and let go")
        step = store.get_job(paused.id).progress.step
        assert max(c.step for c in store.list_checkpoints(paused.id, None, 50).items) == step
        cancelled = jobs.create(_request(dataset.id))  # the free worker takes the next job
        await wait_until(lambda: store.get_job(cancelled.id).progress.step >= 2, 120, "the second job to start")
        assert jobs.cancel(cancelled.id).state is JobState.CANCELLED
        await wait_until(lambda: not store.holder(cancelled.id), 60, "the worker to stop the cancelled job")
        assert not (data_dir / "jobs" / cancelled.id).exists()  # its checkpoints are gone
        jobs.resume(paused.id)
        await wait_until(lambda: _trained(store, paused.id), 180, "the resumed job to finish")
    finally:
        await runner.stop()
    messages = [e.message for e in store.events_after(paused.id, 0)]
    assert f"Resumed from the checkpoint at step {step}" in messages
