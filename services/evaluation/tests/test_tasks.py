"""Task definitions: the shipped YAML loads, malformed YAML is rejected naming the field, prompts follow
lm-eval's rules (few-shot context, trailing spaces moved into the continuation, rolling windows)."""

from __future__ import annotations

import pytest
from genai_core.errors import InvalidArgument
from genai_evaluation import datasets, filters, metrics, prompts
from genai_evaluation.registry import builtin_tasks
from genai_evaluation.taskspec import parse_task
from genai_evaluation.types import OutputType

TINY = """
task: tiny
output_type: multiple_choice
dataset_path: inline
dataset_kwargs:
  docs:
    - {q: "2+2?", choices: ["3", "4", "5"], label: 1}
    - {q: "1+1?", choices: ["2", "3", "4"], label: 0}
    - {q: "3+3?", choices: ["5", "6", "7"], label: 1}
doc_to_text: "Q: {{q}}\\nA:"
doc_to_choice: choices
doc_to_target: label
metric_list: [{metric: acc}, {metric: acc_norm}]
"""


def test_builtin_tasks_load_and_read_their_packaged_data(tmp_path):
    tasks = builtin_tasks()
    assert {"gsm8k", "gsm8k_ppl", "gpqa_diamond", "humaneval"} <= set(tasks)
    gsm8k = datasets.load(tasks["gsm8k"].dataset, tmp_path)
    assert len(gsm8k) == 1319 and gsm8k[0]["final_answer"] == gsm8k[0]["answer"].split("####")[-1].strip()
    gpqa = datasets.load(tasks["gpqa_diamond"].dataset, tmp_path)
    assert len(gpqa) == 198 and all(len(d["choices"]) == 4 for d in gpqa)
    # the right answer is spread over the four positions, the same way on every load
    assert len({d["label"] for d in gpqa}) == 4
    assert [d["label"] for d in gpqa] == [d["label"] for d in datasets.load(tasks["gpqa_diamond"].dataset, tmp_path)]
    humaneval = datasets.load(tasks["humaneval"].dataset, tmp_path)
    assert len(humaneval) == 164 and {"prompt", "test", "entry_point"} <= set(humaneval[0])
    assert tasks["gsm8k"].score_names == ("exact_match,strict-match", "exact_match,flexible-extract")
    assert tasks["humaneval"].score_names == ("pass@1",)


@pytest.mark.parametrize(("change", "field"), [
    (("output_type: multiple_choice", "output_type: multi"), "output_type"),
    (("{metric: acc}", "{metric: accuracy}"), "metric_list[0].metric"),
    (("{metric: acc}", "{metric: exact_match}"), "metric_list[0].metric"),
    (("doc_to_text: \"Q: {{q}}\\nA:\"", "doc_to_text: \"Q: {{q}\""), "doc_to_text"),
    (("doc_to_choice: choices\n", ""), "doc_to_choice"),
    (("dataset_path: inline", "dataset_path: huggingface"), "dataset_path"),
    (("dataset_path: inline", "dataset_path: human-eval"), "dataset_path"),  # built-in only
    (("task: tiny", "task: Tiny Task!"), "task"),
    (("metric_list:", "metrics_list:"), "metrics_list"),
    (("task: tiny", "task: tiny\nfilter_list: [{name: x, filter: [{function: regex, regex_pattern: '('}]}]"),
     "filter_list[0].filter[0].regex_pattern"),
    (("task: tiny", "task: tiny\nnum_fewshot: 100"), "num_fewshot"),
])
def test_malformed_task_yaml_names_the_field(change, field):
    with pytest.raises(InvalidArgument) as caught:
        parse_task(TINY.replace(*change))
    assert caught.value.field_violations[0].field == field, caught.value.message


def test_yaml_syntax_error_says_where():
    with pytest.raises(InvalidArgument) as caught:
        parse_task("task: x\noutput_type: [unclosed\n")
    assert caught.value.field_violations[0].field == "yaml" and "line" in caught.value.message


def test_few_shot_context_follows_lm_eval():
    task = parse_task(TINY.replace("metric_list", "num_fewshot: 2\nmetric_list"))
    docs = datasets.load(task.dataset, None)
    example = prompts.build(task, docs, 0)
    # the first two other documents, each "text + delimiter + target" followed by the few-shot delimiter
    assert example.context == "Q: 1+1?\nA: 2\n\nQ: 3+3?\nA: 6\n\nQ: 2+2?\nA:"
    assert example.choices == ("3", "4", "5") and example.gold == 1 and example.target == "4"
    assert prompts.build(task, docs, 2).context.startswith("Q: 2+2?\nA: 4\n\nQ: 1+1?\nA: 2\n\n")
    override = prompts.build(task, docs, 0, few_shot=0, prompt_template="Question: {{q}} Answer:")
    assert override.context == "Question: 2+2? Answer:"


def test_encoding_moves_trailing_spaces_and_rolling_windows_score_every_token_once():
    assert prompts.move_spaces("Answer: ", "4") == ("Answer:", " 4")
    windows = prompts.rolling_windows(list(range(10, 20)), prefix=1, max_len=4)
    scored = [w[start:] for w, start in windows]
    assert [t for part in scored for t in part] == list(range(10, 20))
    assert windows[0] == ([1, 10, 11, 12, 13], 1)
    assert all(len(w) <= 5 for w, _ in windows)
    bare = prompts.rolling_windows(list(range(10, 20)), prefix=None, max_len=4)
    assert bare[0] == ([10, 11, 12, 13, 14], 1)  # no prefix: the first token is context only
    assert [t for w, start in bare for t in w[start:]] == list(range(11, 20))


def test_filters_and_metrics_as_gsm8k_uses_them():
    task = builtin_tasks()["gsm8k"]
    strict, flexible = task.filters
    response = " She has 3 + 4 = 7 apples.\n#### 7"
    assert filters.apply(strict.steps, [response]) == ["7"]
    assert filters.apply(flexible.steps, ["The answer is 1,234."]) == ["1,234."]
    options = task.metrics[0].options
    assert metrics.exact_match("1,234.", "blah #### 1234", options) == 1.0
    assert metrics.exact_match("[invalid]", "#### 7", options) == 0.0
    assert metrics.pass_at_k(10, 0, 1) == 0.0 and metrics.pass_at_k(10, 10, 1) == 1.0
    assert metrics.pass_at_k(4, 1, 2) == pytest.approx(0.5)


def test_registered_tasks_read_only_inline_or_data_dir_files(tmp_path):
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "mine.jsonl").write_text('{"q": "x?", "choices": ["a", "b"], "label": 0}\n')
    text = TINY.replace("dataset_path: inline", "dataset_path: json").replace(
        TINY[TINY.index("dataset_kwargs"):TINY.index("doc_to_text")], "dataset_kwargs: {data_file: mine.jsonl}\n")
    task = parse_task(text)
    assert datasets.load(task.dataset, tmp_path) == [{"q": "x?", "choices": ["a", "b"], "label": 0}]
    with pytest.raises(InvalidArgument):
        parse_task(text.replace("mine.jsonl", "../../etc/passwd"))
    assert parse_task(TINY).output_type == OutputType.MULTIPLE_CHOICE
