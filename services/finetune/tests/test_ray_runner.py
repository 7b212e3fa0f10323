"""The Ray runner against a real single-node Ray cluster that the test starts on 127.0.0.1 (``ray start --head``,
dashboard and Jobs API included): a job is submitted through the Ray Jobs API, runs the same recipe as a
local worker, its events reach the queue database through the job's log, and its outcome is recorded. A job
paused mid-run stops after a checkpoint and resumes as a new submission."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from genai_finetune.jobs import JobRequest
from genai_finetune.ray_runner import RayRunner
from genai_finetune.testing import FACTS, wait_until
from genai_finetune.types import Hyperparameters, JobState

from tests.support.processes import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray head (GCS, raylet, dashboard with the Jobs API) in its own process group, stopped after."""
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        pytest.skip("ray is not installed in this environment (it comes with the fine-tune service: make setup)")
    temp = Path(tempfile.gettempdir()) / f"ray-{uuid.uuid4().hex[:6]}"  # unix socket paths must stay short
    dashboard = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{ray.parent}{os.pathsep}{os.environ['PATH']}"}
    log = open(temp.with_suffix(".log"), "wb")  # noqa: SIM115 - closed in the finalizer
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={free_port()}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--include-dashboard=true",
         "--num-cpus=1", "--disable-usage-stats", f"--temp-dir={temp}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + 120
        while True:
            if head.poll() is not None:
                pytest.skip(f"Ray could not start here (exit {head.returncode}): "
                            f"{temp.with_suffix('.log').read_text()[-2000:]}")
            try:
                JobSubmissionClient(address).list_jobs()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    pytest.skip("Ray's dashboard did not answer within 120 s on this machine")
                time.sleep(1)
        yield address
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)  # the head's own process group: only what this test started
            try:
                head.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait()
        log.close()
        temp.with_suffix(".log").unlink(missing_ok=True)
        shutil.rmtree(temp, ignore_errors=True)


def _trained(store, job_id: str) -> bool:
    return any(j.id == job_id for j, _ in store.trained())


async def test_a_job_runs_on_ray_and_resumes_after_a_pause(ray_address, jobs, upload, store, datasets, base_models,
                                                           data_dir):
    runner = RayRunner(store, datasets, base_models, address=ray_address, python=sys.executable,
                       jobs_dir=data_dir / "jobs", threads=1, concurrency=1, lease_seconds=30, max_attempts=3,
                       poll_seconds=0.5, env={"HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"})
    job = jobs.create(JobRequest(base_model="tiny", training_dataset_id=upload(FACTS).id, method_config={"rank": 4},
                                 hyperparameters=Hyperparameters(n_epochs=10, batch_size=2, checkpoint_steps=5)))
    await runner.start()
    try:
        await wait_until(lambda: store.get_job(job.id).progress.step >= 3, 180, "the Ray job to train")
        holder = store.holder(job.id)
        assert holder.startswith("ray:genai-finetune-")
        jobs.pause(job.id)
        await wait_until(lambda: not store.holder(job.id), 120, "the Ray job to checkpoint and stop")
        paused_at = store.get_job(job.id).progress.step
        assert store.get_job(job.id).state is JobState.PAUSED
        jobs.resume(job.id)
        await wait_until(lambda: _trained(store, job.id), 240, "the resumed Ray job to finish")
    finally:
        await runner.stop()
    messages = [e.message for e in store.events_after(job.id, 0)]
    submissions = [m for m in messages if m.startswith("Submitted to Ray as job genai-finetune-")]
    assert len(submissions) == 2
    assert f"Resumed from the checkpoint at step {paused_at}" in messages
    steps = [e.metrics.step for e in store.events_after(job.id, 0) if e.metrics]
    assert steps[-1] == 40
    (_, outcome), = [(j, o) for j, o in store.trained() if j.id == job.id]
    assert (Path(outcome.path) / "adapter_model.safetensors").exists()
