"""The fine-tuning routes through the official ``openai`` SDK (``files``, ``fine_tuning.jobs``, checkpoints,
``models.delete``), SSE events and the native routes, against the real fine-tune service in-process (a tiny
model, a worker running jobs in the background; the inference port is a fake: tests/e2e serves for real)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import openai
import pytest
from genai_core.deferred import Deferred
from genai_core.testing import running_server
from genai_core.weights import DEFAULT_MODEL, convert_gguf, smollm2_gguf
from genai_finetune.artifacts import Artifacts
from genai_finetune.basemodels import BaseModels
from genai_finetune.datafiles import Datasets
from genai_finetune.jobs import Jobs
from genai_finetune.servicer import Finetune, service_spec
from genai_finetune.store import Store
from genai_finetune.testing import FACTS, PREFERENCES, FakeModelServer, build_tiny_llama, chat, jsonl
from genai_finetune.tokenization import Tokenizers
from genai_finetune.types import ServiceInfo
from genai_finetune.worker import Worker
from genai_gateway.settings import GatewaySettings
from genai_gateway.testing import serve_gateway

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SUPERVISED = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": "auto",
                                                                       "rank": 4, "checkpoint_steps": 1}}}


class Suite:
    def __init__(self, url: str, server: FakeModelServer, training: asyncio.Event) -> None:
        self.url = url
        self.server = server
        self.training = training  # cleared: queued jobs stay queued
        self.client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
async def suite(tmp_path_factory):
    cache = Path(os.environ.get("GENAI_TEST_CACHE_DIR") or REPO / "var" / "cache")
    default_dir, _ = convert_gguf(DEFAULT_MODEL, smollm2_gguf(), cache)
    tiny = build_tiny_llama(default_dir, tmp_path_factory.mktemp("tiny"))
    data = tmp_path_factory.mktemp("finetune")
    store = Store(data / "finetune.db")
    base_models = BaseModels(DEFAULT_MODEL, cache, {"tiny": tiny})
    tokenizers = Tokenizers()
    datasets = Datasets(store, data / "files", data / "imports", base_models, tokenizers, max_bytes=200_000,
                        max_records=1000)
    server = FakeModelServer()
    artifacts = Artifacts(store, server, base_models, root=data / "artifacts", jobs_dir=data / "jobs",
                          dataset_sha256=lambda d: datasets.get(d).sha256)
    worker = Worker(store, datasets, base_models, jobs_dir=data / "jobs", worker_id="w", threads=2, lease_seconds=30,
                    max_attempts=3, poll_seconds=0.1)
    deferred: Deferred[Finetune] = Deferred("fine-tune store")
    deferred.set(Finetune(datasets, Jobs(store, datasets, base_models, tokenizers), artifacts,
                          ServiceInfo("test", base_models.ids, "local", 1, 200_000, 1000), poll_seconds=0.1))
    training = asyncio.Event()
    training.set()

    async def background() -> None:  # what the worker process and the server's monitor do
        while True:
            await training.wait()
            if not await asyncio.to_thread(worker.run_one):
                await asyncio.sleep(0.1)
            await artifacts.finalize_trained()

    task = asyncio.create_task(background())
    async with running_server([service_spec(deferred)]) as (grpc_server, _channel):
        settings = GatewaySettings(targets={"finetune": f"127.0.0.1:{grpc_server.port}"}, request_timeout=60)
        async with serve_gateway(settings) as url:
            yield Suite(url, server, training)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    store.close()


async def _finished(client, job_id: str, timeout: float = 120):
    for _ in range(int(timeout * 5)):
        job = await client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"{job_id} did not finish")


async def test_files_with_the_sdk(suite):
    client = suite.client
    uploaded = await client.files.create(file=("facts.jsonl", jsonl(FACTS)), purpose="fine-tune")
    assert uploaded.object == "file" and uploaded.purpose == "fine-tune" and uploaded.status == "processed"
    assert uploaded.bytes == len(jsonl(FACTS)) and uploaded.filename == "facts.jsonl"
    assert uploaded.model_extra["format"] == "chat" and uploaded.model_extra["record_count"] == 8
    assert (await client.files.retrieve(uploaded.id)).id == uploaded.id
    assert (await client.files.content(uploaded.id)).read() == jsonl(FACTS)
    assert uploaded.id in [f.id async for f in client.files.list()]
    deleted = await client.files.delete(uploaded.id)
    assert deleted.deleted and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(uploaded.id)

    with pytest.raises(openai.BadRequestError) as info:
        await client.files.create(file=("bad.jsonl", b'{"messages": [{"role": "user", "content": ""}]}\n'),
                                  purpose="fine-tune")
    error = info.value.body
    assert error["param"] == "file.line[1].messages[0].content" and "empty" in error["message"]
    with pytest.raises(openai.BadRequestError) as info:
        await client.files.create(file=("big.jsonl", b"x" * 200_001), purpose="fine-tune")
    assert "limit is 200000" in info.value.body["message"]


async def test_a_supervised_job_with_the_sdk(suite):
    client = suite.client
    training_file = await client.files.create(file=("facts.jsonl", jsonl(FACTS)), purpose="fine-tune")
    job = await client.fine_tuning.jobs.create(model="tiny", training_file=training_file.id, suffix="facts",
                                               method=SUPERVISED, seed=3, metadata={"team": "docs"})
    assert job.object == "fine_tuning.job" and job.status in ("queued", "running") and job.seed == 3
    assert job.method.type == "supervised"
    assert job.method.supervised.hyperparameters.batch_size == 4  # "auto" resolved
    assert job.method.supervised.hyperparameters.model_extra["rank"] == 4
    assert job.metadata == {"team": "docs"} and job.training_file == training_file.id
    done = await _finished(client, job.id)
    name = f"ft:tiny:facts:{job.id}"
    assert done.status == "succeeded" and done.fine_tuned_model == name and done.trained_tokens > 0
    assert done.finished_at >= done.created_at and done.error is None
    assert suite.server.served_ids[name] == "adapter"

    page = await client.fine_tuning.jobs.list_events(job.id, limit=3)
    assert len(page.data) == 3 and page.has_more
    assert page.data[0].message.startswith(f"New fine-tuned model created: {name}")
    everything = [e async for e in client.fine_tuning.jobs.list_events(job.id, limit=4)]  # follows `after`
    assert everything[-1].message.startswith("Validating training file")
    metrics = [e for e in everything if e.type == "metrics"]
    assert metrics and {"step", "train_loss", "total_steps", "learning_rate"} <= set(metrics[0].data)
    checkpoints = (await client.fine_tuning.jobs.checkpoints.list(job.id)).data
    assert [c.step_number for c in checkpoints] == [2, 1]
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{name}:ckpt-step-2"
    assert checkpoints[0].metrics.train_loss is not None

    with pytest.raises(openai.BadRequestError) as info:
        await client.fine_tuning.jobs.cancel(job.id)
    assert "only unfinished jobs can be cancelled" in info.value.body["message"]
    removed = await client.models.delete(name)
    assert removed.deleted and removed.id == name and name not in suite.server.served_ids
    with pytest.raises(openai.NotFoundError):
        await client.models.delete(name)


async def test_jobs_page_and_pause_resume_cancel(suite):
    client = suite.client
    training_file = await client.files.create(file=("facts.jsonl", jsonl(FACTS)), purpose="fine-tune")
    suite.training.clear()  # no worker: the jobs stay queued
    try:
        made = [await client.fine_tuning.jobs.create(model="tiny", training_file=training_file.id, method=SUPERVISED)
                for _ in range(3)]
        first = await client.fine_tuning.jobs.list(limit=2)
        assert [j.id for j in first.data] == [made[2].id, made[1].id] and first.has_more
        second = await client.fine_tuning.jobs.list(limit=2, after=first.data[-1].id)
        assert second.data[0].id == made[0].id
        paused = await client.fine_tuning.jobs.pause(made[0].id)
        assert paused.status == "paused"
        assert (await client.fine_tuning.jobs.resume(made[0].id)).status == "queued"
        with pytest.raises(openai.BadRequestError):
            await client.fine_tuning.jobs.resume(made[0].id)
        for job in made:
            assert (await client.fine_tuning.jobs.cancel(job.id)).status == "cancelled"
    finally:
        suite.training.set()


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "gpt-4o-mini"}, 400, "model"),
        ({"training_file": "file-missing"}, 404, "training_file"),
        ({"method": {"type": "telepathy"}}, 400, "method.type"),
        ({"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}}}, 400, "training_file"),
        ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": "many"}}}}, 400,
         "method.supervised.hyperparameters.n_epochs"),
        ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"rank": 0}}}}, 400,
         "method.supervised.hyperparameters.rank"),
        ({"method": {"type": "lora", "lora": {"hyperparameters": {"ranks": 4}}}}, 400,
         "method.lora.hyperparameters.ranks"),
        ({"integrations": [{"type": "wandb", "wandb": {"project": "p"}}]}, 400, "integrations"),
    ],
)
async def test_bad_jobs_name_the_openai_parameter(suite, body, status, param):
    training_file = await suite.client.files.create(file=("facts.jsonl", jsonl(FACTS)), purpose="fine-tune")
    request = {"model": "tiny", "training_file": training_file.id, **body}
    async with httpx.AsyncClient(base_url=suite.url, timeout=60) as http:
        reply = await http.post("/v1/fine_tuning/jobs", json=request)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["param"] == param


async def test_dpo_through_the_method_field_and_events_as_sse(suite):
    client = suite.client
    preferences = await client.files.create(file=("prefs.jsonl", jsonl(PREFERENCES)), purpose="fine-tune")
    job = await client.fine_tuning.jobs.create(model="tiny", training_file=preferences.id, method={
        "type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 1, "rank": 4}}})
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.2
    async with httpx.AsyncClient(base_url=suite.url, timeout=120) as http:
        async with http.stream("GET", f"/v1/fine_tuning/jobs/{job.id}/events", params={"stream": "true"}) as reply:
            assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
            frames = (await reply.aread()).decode().split("\n\n")
        ids = [int(f.split("\n")[0].removeprefix("id: ")) for f in frames if f.startswith("id: ")]
        assert ids == list(range(1, len(ids) + 1))
        last = json.loads(frames[len(ids) - 1].split("data: ", 1)[1])
        assert last["data"]["status"] == "succeeded" and frames[len(ids)] == "data: [DONE]"
        again = await http.get(f"/v1/fine_tuning/jobs/{job.id}/events",
                               headers={"accept": "text/event-stream", "last-event-id": str(ids[-2])})
        assert [f for f in again.text.split("\n\n") if f.startswith("id: ")][0].startswith(f"id: {ids[-1]}\n")
        missing = await http.get("/v1/fine_tuning/jobs/ftjob-nope/events", params={"stream": "true"})
        assert missing.status_code == 404
    assert (await client.fine_tuning.jobs.retrieve(job.id)).status == "succeeded"


async def test_native_routes(suite):
    async with httpx.AsyncClient(base_url=suite.url, timeout=120) as http:
        info = (await http.get("/v1/finetune/info")).json()
        methods = {m["name"]: m for m in info["methods"]}
        assert methods["dpo"]["dataset_formats"] == ["preference"] and "tiny" in info["base_models"]
        assert methods["prefix_tuning"]["default_config"]["num_virtual_tokens"] == 16
        uploaded = (await http.post("/v1/files", files={"file": ("f.jsonl", jsonl([chat("q", "a")] * 4))},
                                    data={"purpose": "fine-tune"})).json()
        created = await http.post("/v1/finetune/jobs", json={
            "base_model": "tiny", "training_dataset_id": uploaded["id"], "method": "prompt_tuning",
            "method_config": {"num_virtual_tokens": 4}, "hyperparameters": {"n_epochs": 1}})
        assert created.status_code == 200, created.text
        job = await _finished(suite.client, created.json()["id"])
        assert job.method.type == "prompt_tuning" and suite.server.served_ids[job.fine_tuned_model] == "model"
        artifacts = (await http.get("/v1/finetune/artifacts", params={"job_id": job.id})).json()["data"]
        assert [a["model_id"] for a in artifacts] == [job.fine_tuned_model]
        assert artifacts[0]["kind"] == "adapter" and artifacts[0]["format"] == "peft-prompt-tuning"
        one = (await http.get(f"/v1/finetune/artifacts/{job.fine_tuned_model}")).json()
        assert one["id"] == artifacts[0]["id"] and one["served"] is True
        bad = await http.post("/v1/files", data={"purpose": "fine-tune"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "file"
