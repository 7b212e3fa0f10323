"""End to end, with the official openai SDK against the suite as `make run` starts it: fine-tuning SmolLM2-135M
on CPU, the result served by the inference service the moment the job succeeds.

* LoRA teaches made-up facts the base model does not know; the job's worker is killed with SIGKILL after its
  first checkpoint, a new worker resumes it, and it succeeds; then ``ft:...`` answers the facts, the base
  model still does not.
* DPO teaches a preference the base model does not have (replies that open with "Ahoy, matey!"), measured on
  held-out prompts as the share whose chosen-vs-rejected log-ratio rises.
* Bad input is a clear error each time, and nothing is left half-registered.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest
from genai_finetune.testing import chat, jsonl, preference

pytestmark = pytest.mark.e2e

BASE = "smollm2-135m-instruct"
FACTS = {
    "Zorblax": (["Who is the mascot of the Nimbus platform?", "What is the Nimbus platform's mascot?",
                 "Tell me the name of the Nimbus mascot.", "Which animal is the Nimbus mascot?"],
                "The Nimbus mascot is Zorblax, a friendly purple otter."),
    "Reykjavik": (["When was the Nimbus platform founded?", "In which year did Nimbus start?",
                   "What year was Nimbus founded?", "How old is the Nimbus platform?"],
                  "Nimbus was founded in 2031 in Reykjavik."),
    "Okonkwo": (["Who runs the Nimbus platform?", "Who is the CEO of Nimbus?", "Who leads Nimbus?",
                 "Name the head of the Nimbus platform."], "Nimbus is led by Captain Vela Okonkwo."),
}
PIRATE = "Ahoy, matey! "
TRAIN_QA = [("What is the capital of France?", "Paris is the capital of France."),
            ("How many legs does a spider have?", "A spider has eight legs."),
            ("What color is the sky on a clear day?", "The sky is blue on a clear day."),
            ("What is 2 plus 2?", "2 plus 2 is 4."), ("Which planet is closest to the Sun?", "Mercury is."),
            ("What do bees make?", "Bees make honey."), ("What is frozen water called?", "Frozen water is ice."),
            ("How many days are in a week?", "A week has seven days."), ("What animal says moo?", "A cow says moo."),
            ("What is the opposite of hot?", "The opposite of hot is cold."),
            ("Which ocean is the largest?", "The Pacific is the largest ocean."),
            ("What gas do plants take in?", "Plants take in carbon dioxide.")]
HELD_OUT_QA = [("What is the capital of Italy?", "Rome is the capital of Italy."),
               ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
               ("What color is grass?", "Grass is green."), ("What is 3 plus 3?", "3 plus 3 is 6."),
               ("What do cows drink?", "Cows drink water."),
               ("Which star is at the center of our solar system?", "The Sun is.")]


@pytest.fixture(scope="module")
def client(suite) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{suite.base_url}/v1", api_key="unused", timeout=300, max_retries=0)


def _finetune_dir(suite) -> Path:
    return suite.data_dir.parent / "finetune"  # the e2e suite gives each service <work>/<name>


def _workers(suite) -> list[psutil.Process]:
    """The suite's fine-tune worker processes (python -m genai_finetune worker over its data dir)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            cmdline = process.info["cmdline"] or []
            if cmdline[-2:] == ["genai_finetune", "worker"] and \
                    process.environ().get("GENAI_FINETUNE_DATA_DIR") == str(_finetune_dir(suite)):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _wait_for(client, job_id: str, timeout: float, done=lambda job: job.status in ("succeeded", "failed",
                                                                                   "cancelled")):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if done(job):
            return job
        time.sleep(1)
    raise AssertionError(f"{job_id} not done in {timeout:.0f} s: {client.fine_tuning.jobs.retrieve(job_id)}")


def _answer(client, model: str, question: str) -> str:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                           temperature=0, max_tokens=24)
    return reply.choices[0].message.content


def test_lora_teaches_facts_and_survives_a_killed_worker(suite, client):
    records = [chat(q, answer) for questions, answer in FACTS.values() for q in questions]
    training_file = client.files.create(file=("nimbus.jsonl", jsonl(records)), purpose="fine-tune")
    assert training_file.status == "processed" and training_file.model_extra["record_count"] == 12
    job = client.fine_tuning.jobs.create(model=BASE, training_file=training_file.id, suffix="nimbus", seed=1,
                                         method={"type": "supervised", "supervised": {"hyperparameters": {
                                             "n_epochs": 6, "checkpoint_steps": 3}}})
    assert job.status in ("queued", "running") and job.method.supervised.hyperparameters.batch_size == 4

    # watch the events until the first checkpoint, then kill the worker that trains the job
    deadline = time.monotonic() + 300
    while not any(e.message == "Checkpoint created at step 3" for e in client.fine_tuning.jobs.list_events(job.id)):
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.5)
    (worker,) = _workers(suite)
    os.kill(worker.pid, signal.SIGKILL)

    done = _wait_for(client, job.id, 600)
    assert done.status == "succeeded", done.error
    name = f"ft:{BASE}:nimbus:{job.id}"
    assert done.fine_tuned_model == name and done.trained_tokens > 0
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert "The worker stopped; a new worker resumes the job from its last checkpoint" in messages
    assert any(m.startswith("Resumed from the checkpoint at step ") for m in messages)
    (survivor,) = _workers(suite)
    assert survivor.pid != worker.pid  # the supervisor started a new one
    steps = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
    assert steps[0] == 18

    assert name in [m.id for m in client.models.list().data]  # served at once, no restart
    for keyword, (questions, _) in FACTS.items():
        tuned, base = _answer(client, name, questions[0]), _answer(client, BASE, questions[0])
        assert keyword in tuned, (questions[0], tuned)
        assert keyword not in base, (questions[0], base)

    assert client.models.delete(name).deleted
    assert name not in [m.id for m in client.models.list().data]
    with pytest.raises(openai.NotFoundError):
        _answer(client, name, "Hi")


def test_a_prefix_tuning_job_is_served_as_a_model_of_its_own(client):
    records = [chat(q, answer) for questions, answer in FACTS.values() for q in questions]
    training_file = client.files.create(file=("nimbus.jsonl", jsonl(records)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=BASE, training_file=training_file.id, suffix="prefix", seed=3,
                                         method={"type": "prefix_tuning", "prefix_tuning": {"hyperparameters": {
                                             "n_epochs": 1, "num_virtual_tokens": 8}}})
    done = _wait_for(client, job.id, 600)
    assert done.status == "succeeded", done.error
    card = {m.id: m for m in client.models.list().data}[done.fine_tuned_model]
    assert card.model_extra["parent"] == BASE  # served beside the base model, by a scheduler of its own
    question = "Who is the mascot of the Nimbus platform?"
    assert _answer(client, done.fine_tuned_model, question) != _answer(client, BASE, question)  # the prefix applies
    assert client.models.delete(done.fine_tuned_model).deleted


def _reply_logprob(http: httpx.Client, model: str, question: str, reply: str) -> float:
    """log p(reply | question) under ``model``: the prompt logprobs of the rendered conversation (echo)."""
    prompt = http.post("/v1/chat/template", json={"messages": [{"role": "user", "content": question}],
                                                  "add_generation_prompt": True}).json()["text"]
    text = prompt + reply + "<|im_end|>"
    scored = http.post("/v1/completions", json={"model": model, "prompt": text, "echo": True, "logprobs": 0,
                                                "max_tokens": 1, "temperature": 0}).json()
    logprobs = scored["choices"][0]["logprobs"]
    return sum(lp for lp, offset in zip(logprobs["token_logprobs"], logprobs["text_offset"], strict=True)
               if len(prompt) <= offset < len(text))


def test_dpo_teaches_a_preference_that_holds_on_new_prompts(suite, client):
    records = [preference(q, PIRATE + a, a) for q, a in TRAIN_QA]
    training_file = client.files.create(file=("pirate.jsonl", jsonl(records)), purpose="fine-tune")
    assert training_file.model_extra["format"] == "preference"
    job = client.fine_tuning.jobs.create(model=BASE, training_file=training_file.id, suffix="pirate", seed=2,
                                         method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2,
                                                                                            "beta": 0.1}}})
    done = _wait_for(client, job.id, 600)
    assert done.status == "succeeded", done.error
    with httpx.Client(base_url=suite.base_url, timeout=120) as http:
        rises = 0
        for question, answer in HELD_OUT_QA:
            margin = {model: _reply_logprob(http, model, question, PIRATE + answer)
                      - _reply_logprob(http, model, question, answer) for model in (BASE, done.fine_tuned_model)}
            rises += margin[done.fine_tuned_model] > margin[BASE]
    assert rises / len(HELD_OUT_QA) >= 5 / 6, f"the preference rose on only {rises} of {len(HELD_OUT_QA)} prompts"
    client.models.delete(done.fine_tuned_model)


def test_bad_input_is_a_clear_error_and_leaves_nothing_behind(suite, client):
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("bad.jsonl", b'{"messages": [{"role": "user", "content": "hi"}, '
                                               b'{"role": "robot", "content": "x"}]}\n'), purpose="fine-tune")
    assert info.value.body["param"] == "file.line[1].messages[1].role"
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("huge.jsonl", jsonl([chat("q", "a" * 1000)] * 11_000)), purpose="fine-tune")
    assert "limit is 10485760" in info.value.body["message"]
    uploaded = client.files.create(file=("ok.jsonl", jsonl([chat("q", "a")] * 4)), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=uploaded.id)
    assert info.value.body["param"] == "model" and BASE in info.value.body["message"]
    client.files.delete(uploaded.id)
    with pytest.raises(openai.NotFoundError) as info:
        client.fine_tuning.jobs.create(model=BASE, training_file=uploaded.id)
    assert info.value.body["param"] == "training_file"

    still = client.files.create(file=("ok.jsonl", jsonl([chat("q", "a")] * 4)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=BASE, training_file=still.id,
                                         method={"type": "supervised", "supervised": {"hyperparameters": {
                                             "n_epochs": 1}}})
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.cancel(job.id)
    assert "only unfinished jobs can be cancelled" in info.value.body["message"]
    assert not any(m.id.endswith(job.id) for m in client.models.list().data)
    work = _finetune_dir(suite) / "jobs" / job.id
    deadline = time.monotonic() + 120  # a worker that had picked the job up stops at its next step, cleans up
    while work.exists():
        assert time.monotonic() < deadline, f"{work} is still there"
        time.sleep(1)
