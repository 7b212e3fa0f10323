"""Jobs as resources: what creation checks (each a clear error, nothing stored), the method registry and
"auto" hyperparameters, cancel/pause/resume rules, and the queue's leases and hand-over."""

from __future__ import annotations

import time

import pytest
from genai_core.errors import FailedPrecondition, InvalidArgument, NotFound
from genai_finetune.hyperparameters import resolve
from genai_finetune.jobs import JobRequest
from genai_finetune.methods import METHODS, method
from genai_finetune.testing import FACTS, PREFERENCES, chat
from genai_finetune.types import Hyperparameters, JobState, Level, Metrics


def _fields(exc) -> list[str]:
    return [v.field for v in exc.field_violations]


def test_registry_configs_reject_unknown_and_bad_settings():
    assert METHODS["lora"].build_config({"rank": 4, "target_modules": "q_proj"}).target_modules == ("q_proj",)
    with pytest.raises(InvalidArgument) as info:
        METHODS["lora"].build_config({"rnak": 4})
    assert _fields(info.value) == ["method_config.rnak"] and "takes alpha, dropout, rank" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        METHODS["dpo"].build_config({"beta": -1, "rank": "eight"})
    assert _fields(info.value) == ["method_config.rank"]
    with pytest.raises(InvalidArgument) as info:
        METHODS["dpo"].build_config({"beta": -1})
    assert _fields(info.value) == ["method_config.beta"]
    assert method("supervised").name == "lora" and method("").name == "lora" and method("dpo").name == "dpo"
    with pytest.raises(InvalidArgument) as info:
        method("rlhf")
    assert "prefix_tuning" in info.value.message


def test_auto_hyperparameters_resolve_from_the_method_and_the_data():
    lora = METHODS["lora"]
    h = resolve(Hyperparameters(), lora, examples=10, context_length=8192)
    assert (h.n_epochs, h.batch_size, h.learning_rate, h.max_seq_length, h.lr_scheduler) == (3, 4, 1e-3, 1024, "linear")
    assert h.checkpoint_steps == 3 and h.eval_steps == 3  # 9 steps, a checkpoint every quarter
    assert resolve(Hyperparameters(), lora, examples=2, context_length=512).batch_size == 2
    h = resolve(Hyperparameters(learning_rate_multiplier=0.5, n_epochs=1, max_steps=2), METHODS["dpo"],
                examples=8, context_length=8192)
    assert h.learning_rate == pytest.approx(2.5e-4) and h.max_steps == 2
    with pytest.raises(InvalidArgument) as info:
        resolve(Hyperparameters(n_epochs=0, max_seq_length=99999, lr_scheduler="fancy"), lora, examples=4,
                context_length=8192)
    assert _fields(info.value) == ["hyperparameters.n_epochs", "hyperparameters.max_seq_length",
                                   "hyperparameters.lr_scheduler"]
    with pytest.raises(InvalidArgument) as info:
        resolve(Hyperparameters(batch_size=4, gradient_accumulation_steps=3), lora, examples=4, context_length=512)
    assert _fields(info.value) == ["hyperparameters.gradient_accumulation_steps"]


def test_create_resolves_and_queues_with_openai_style_events(jobs, upload, store):
    dataset = upload(FACTS)
    job = jobs.create(JobRequest(base_model="tiny", training_dataset_id=dataset.id, suffix="facts",
                                 method_config={"rank": 4}, metadata={"team": "a"}, seed=7))
    assert job.state is JobState.QUEUED and job.method == "lora" and job.seed == 7
    assert job.method_config["rank"] == 4 and job.method_config["alpha"] == 16
    assert job.hyperparameters.batch_size == 4 and job.hyperparameters.n_epochs == 3
    events = store.events_after(job.id, 0)
    assert [e.state for e in events] == [JobState.VALIDATING_FILES, JobState.QUEUED]
    assert events[1].message.startswith("Files validated: 8 examples")
    assert job.last_sequence == 2


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        ({"base_model": "gpt-4o"}, InvalidArgument, "base_model"),
        ({"training_dataset_id": "file-gone"}, NotFound, "training_dataset_id"),
        ({"validation_dataset_id": "file-gone"}, NotFound, "validation_dataset_id"),
        ({"method": "dpo"}, InvalidArgument, "training_dataset_id"),
        ({"method": "telepathy"}, InvalidArgument, "method"),
        ({"suffix": "Not OK!"}, InvalidArgument, "suffix"),
        ({"suffix": "ok\n"}, InvalidArgument, "suffix"),  # `$` alone would let a trailing newline through
        ({"suffix": "x" * 41}, InvalidArgument, "suffix"),
        ({"seed": 2**64 - 1}, InvalidArgument, "seed"),  # a uint64 the store's signed integers cannot hold
        ({"method_config": {"rank": float("inf")}}, InvalidArgument, "method_config.rank"),  # was int(inf): 500
        ({"method_config": {"rank": float("nan")}}, InvalidArgument, "method_config.rank"),
        ({"method_config": {"dropout": float("inf")}}, InvalidArgument, "method_config.dropout"),
        ({"method_config": {"rank": 0}}, InvalidArgument, "method_config.rank"),
        ({"hyperparameters": Hyperparameters(batch_size=1000)}, InvalidArgument, "hyperparameters.batch_size"),
    ],
)
def test_bad_requests_are_clear_errors_and_store_nothing(jobs, upload, store, change, error, field):
    dataset = upload(FACTS)
    request = JobRequest(base_model="tiny", training_dataset_id=dataset.id)
    with pytest.raises(error) as info:
        jobs.create(JobRequest(**{**request.__dict__, **change}))
    assert _fields(info.value) == [field]
    assert store.list_jobs("", 10).items == []


def test_records_longer_than_the_model_are_named_by_line(jobs, upload, store):
    long_answer = " ".join(["zorblax"] * 600)  # over the tiny model's 512-token context
    dataset = upload([chat("q", "a"), chat("q", "a"), chat("Tell me everything.", long_answer)])
    with pytest.raises(InvalidArgument) as info:
        jobs.create(JobRequest(base_model="tiny", training_dataset_id=dataset.id))
    assert _fields(info.value) == ["training_dataset_id.line[3]"]
    assert "tiny takes at most 512" in info.value.message
    short = jobs.create(JobRequest(base_model="tiny", training_dataset_id=upload([chat("q", "a " * 100)]).id,
                                   hyperparameters=Hyperparameters(max_seq_length=32)))
    assert any("longer than max_seq_length=32" in e.message for e in store.events_after(short.id, 0))


def test_cancel_pause_resume_rules(jobs, upload, store):
    dataset = upload(FACTS)
    job = jobs.create(JobRequest(base_model="tiny", training_dataset_id=dataset.id))
    with pytest.raises(FailedPrecondition) as info:
        jobs.resume(job.id)
    assert "only paused jobs" in info.value.message
    assert jobs.pause(job.id).state is JobState.PAUSED
    assert jobs.resume(job.id).state is JobState.QUEUED
    claimed = store.claim("w1", lease_seconds=30, max_attempts=3)
    assert claimed.id == job.id and claimed.state is JobState.RUNNING
    paused = jobs.pause(job.id)  # a running job pauses at once; its worker saves and lets go
    assert paused.state is JobState.PAUSED
    with pytest.raises(FailedPrecondition) as info:
        jobs.resume(job.id)  # the worker still holds it (saving its checkpoint)
    assert info.value.reason == "JOB_SAVING"
    assert store.heartbeat(job.id, "w1", 30) is JobState.PAUSED
    store.let_go(job.id, "w1")
    assert jobs.resume(job.id).state is JobState.QUEUED
    assert jobs.cancel(job.id).state is JobState.CANCELLED
    with pytest.raises(FailedPrecondition) as info:
        jobs.cancel(job.id)
    assert info.value.reason == "JOB_CANCELLED" and "only unfinished jobs" in info.value.message
    with pytest.raises(NotFound):
        jobs.cancel("ftjob-nope")


def test_queue_leases_hand_a_dead_workers_job_over(jobs, upload, store):
    dataset = upload(FACTS)
    first = jobs.create(JobRequest(base_model="tiny", training_dataset_id=dataset.id))
    second = jobs.create(JobRequest(base_model="tiny", training_dataset_id=dataset.id))
    assert store.claim("w1", 30, 3).id == first.id  # oldest first
    assert store.claim("w2", 30, 3).id == second.id
    assert store.claim("w3", 30, 3) is None  # both held
    assert store.heartbeat(first.id, "w1", 30) is JobState.RUNNING
    assert store.release("w1") == 1  # the supervisor saw w1 die
    taken = store.claim("w3", 30, 3)
    assert taken.id == first.id and taken.attempts == 2
    assert store.heartbeat(first.id, "w1", 30) is None  # w1 lost it
    assert "resumes the job from its last checkpoint" in store.events_after(first.id, 0)[-1].message
    store.let_go(first.id, "w3")  # a graceful stop gives the attempt back
    assert store.get_job(first.id).attempts == 1
    for worker in ("w4", "w5", "w6"):  # a job whose worker keeps dying fails instead of looping
        store.claim(worker, 30, 3)
        store.release(worker)
    assert store.claim("w7", 30, 3) is None
    failed = store.get_job(first.id)
    assert failed.state is JobState.FAILED and "stopped 3 times" in failed.error.message


def test_expired_lease_is_taken_over_without_a_supervisor(jobs, upload, store):
    job = jobs.create(JobRequest(base_model="tiny", training_dataset_id=upload(FACTS).id))
    assert store.claim("w1", 0.2, 3).id == job.id
    assert store.claim("w2", 30, 3) is None
    time.sleep(0.3)
    assert store.claim("w2", 30, 3).id == job.id


def test_events_and_checkpoints_page_newest_first(jobs, upload, store):
    job = jobs.create(JobRequest(base_model="tiny", training_dataset_id=upload(PREFERENCES).id, method="dpo"))
    for step in range(1, 6):
        store.set_progress(job.id, Metrics(step=step, total_steps=5, train_loss=1.0 / step), f"Step {step}/5")
    store.add_event(job.id, Level.WARNING, "careful")
    page = jobs.events(job.id, "", 3)
    assert [e.sequence for e in page.items] == [8, 7, 6] and page.has_more
    page = jobs.events(job.id, page.items[-1].id, 10)
    assert [e.sequence for e in page.items] == [5, 4, 3, 2, 1] and not page.has_more
    assert store.get_job(job.id).progress.step == 5
    for bogus in ("bogus", "ftevent-x-4\u00b2", f"ftevent-x-{2**70}"):  # "4²" passes str.isdigit, not int()
        with pytest.raises(InvalidArgument):
            jobs.events(job.id, bogus, 10)
    with pytest.raises(InvalidArgument):
        jobs.checkpoints(job.id, "ftckpt-x-4\u00b2", 10)
    assert jobs.events_after(job.id, 2**64 - 1) == []  # the stream's uint64 beyond the store's integers
    listed = [j.id for j in jobs.list("", 10).items]
    assert listed == [job.id]
