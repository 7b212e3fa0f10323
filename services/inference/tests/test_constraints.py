"""Structured output: every kind of constraint yields text that parses, under random logits and a real model."""

from __future__ import annotations

import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:
    import genai_inference  # noqa: F401
except ImportError:  # the package is not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from genai_core.errors import InvalidArgument  # noqa: E402
from genai_inference.constraints import (  # noqa: E402
    ConstraintCompiler,
    Matcher,
    parse_tool_calls,
    tool_prompt,
)
from genai_inference.types import Constraint, ConstraintKind, ToolCallSpec, ToolSpec  # noqa: E402

VOCAB = 49152
MAX_TOKENS = 200


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 24},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "role", "tags", "address"],
    "additionalProperties": False,
}

WEATHER = ToolSpec(
    "get_weather",
    "Current weather of a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
ADD = ToolSpec(
    "add",
    "Add two integers.",
    {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "minimum": -999, "maximum": 999},
            "b": {"type": "integer", "minimum": -999, "maximum": 999},
        },
        "required": ["a", "b"],
        "additionalProperties": False,
    },
)
TOOLS = (WEATHER, ADD)
PARAMS = {t.name: t.parameters for t in TOOLS}


# -- fixtures (session scope: the tokenizer and the compiler are built once) ------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The vectors here are small: torch's thread pool only adds contention on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tokenizer(source):  # conftest's ModelSource: converts the GGUF once on a fresh machine
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source.directory))


@pytest.fixture(scope="session")
def compiler(tokenizer) -> ConstraintCompiler:
    return ConstraintCompiler(tokenizer, VOCAB)


@pytest.fixture(scope="session")
def closer_bias(tokenizer) -> torch.Tensor:
    """+6 on tokens made only of closing punctuation, so random walks through open-ended JSON end quickly."""
    bias = torch.zeros(VOCAB)
    for tid in range(len(tokenizer)):
        text = tokenizer.decode([tid])
        if text and set(text) <= set('"}]'):
            bias[tid] = 6.0
    return bias


def sample(
    tokenizer, matcher: Matcher, seed: int, *, bias: torch.Tensor | None = None, max_tokens: int = MAX_TOKENS
) -> tuple[str, bool]:
    """Random logits (a seeded torch generator) + the mask + sampling (Gumbel-max, i.e. softmax sampling),
    until EOS is chosen, the matcher terminates or max_tokens.

    Checks at every step that EOS survives the mask exactly when the matcher is complete.
    Returns (text, ended): ended is True when EOS was chosen or the matcher terminated.
    """
    eos = tokenizer.eos_token_id
    gen = torch.Generator().manual_seed(seed)
    noise = np.random.default_rng(seed)
    extra = None if bias is None else bias.numpy()
    ids: list[int] = []
    for _ in range(max_tokens):
        logits = torch.randn(VOCAB, generator=gen) * 3
        if extra is not None:
            logits.numpy()[:] += extra
        matcher.mask_logits(logits)
        arr = logits.numpy()
        assert bool(np.isfinite(arr[eos])) == matcher.is_complete()
        token = int(np.argmax(arr + noise.gumbel(size=VOCAB)))
        assert np.isfinite(arr[token])
        if token == eos:
            return tokenizer.decode(ids), True
        matcher.accept(token)
        ids.append(token)
        if matcher.is_terminated():
            assert matcher.is_complete()
            return tokenizer.decode(ids), True
    return tokenizer.decode(ids), False


def feed(tokenizer, matcher: Matcher, text: str) -> None:
    for tid in tokenizer.encode(text, add_special_tokens=False):
        matcher.accept(tid)


SEEDS = range(5)


# -- each kind parses ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_json_schema_output_validates(tokenizer, compiler, seed):
    matcher = compiler.compile(Constraint(ConstraintKind.JSON_SCHEMA, PERSON)).matcher()
    text, ended = sample(tokenizer, matcher, seed)
    assert ended, text
    jsonschema.validate(json.loads(text), PERSON)


@pytest.mark.parametrize("seed", SEEDS)
def test_json_object_output_is_an_object(tokenizer, compiler, closer_bias, seed):
    matcher = compiler.compile(Constraint(ConstraintKind.JSON_OBJECT, None)).matcher()
    text, ended = sample(tokenizer, matcher, seed, bias=closer_bias)
    assert ended, text
    assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("pattern", [r"[A-Z][a-z]{2,8}-[0-9]{3}", r"\d{4}-\d{2}-\d{2}", r"(yes|no|maybe)!?"])
def test_regex_output_fullmatches(tokenizer, compiler, pattern, seed):
    matcher = compiler.compile(Constraint(ConstraintKind.REGEX, pattern)).matcher()
    text, ended = sample(tokenizer, matcher, seed)
    assert ended, text
    assert re.fullmatch(pattern, text, re.ASCII), text  # \\d means [0-9]


@pytest.mark.parametrize("seed", SEEDS)
def test_choices_output_is_one_of_them(tokenizer, compiler, seed):
    choices = ("yes", "yes, please", "no", 'say "hi"\\n', "émoji 😀")
    matcher = compiler.compile(Constraint(ConstraintKind.CHOICES, choices)).matcher()
    text, ended = sample(tokenizer, matcher, seed)
    assert ended, text
    assert text in choices


def test_every_choice_is_reachable(tokenizer, compiler):
    choices = ("yes", "yes, please", "no", 'say "hi"\\n', "new\nline", "émoji 😀")
    compiled = compiler.compile(Constraint(ConstraintKind.CHOICES, choices))
    for choice in choices:
        matcher = compiled.matcher()
        feed(tokenizer, matcher, choice)
        assert matcher.is_complete(), choice
    matcher = compiled.matcher()
    feed(tokenizer, matcher, "yes")
    assert matcher.is_complete() and not matcher.is_terminated()  # ", please" may follow


LARK = r"""
start: expr
expr: term (OP term){0,3}
term: NUMBER | "(" NUMBER OP NUMBER ")"
OP: "+" | "*"
NUMBER: /[1-9][0-9]{0,2}|0/
"""


@pytest.mark.parametrize("seed", SEEDS)
def test_lark_grammar_output_parses(tokenizer, compiler, seed):
    matcher = compiler.compile(Constraint(ConstraintKind.GRAMMAR_LARK, LARK)).matcher()
    text, ended = sample(tokenizer, matcher, seed)
    assert ended, text
    assert re.fullmatch(r"[0-9()+*]+", text), text
    assert isinstance(eval(text, {"__builtins__": {}}), int)  # a well-formed arithmetic expression


GBNF = r"""
root ::= "(" num ("," num)* ")"
num ::= [0-9] [0-9]?
"""


@pytest.mark.parametrize("seed", SEEDS)
def test_ebnf_grammar_output_parses(tokenizer, compiler, seed):
    matcher = compiler.compile(Constraint(ConstraintKind.GRAMMAR_EBNF, GBNF)).matcher()
    text, ended = sample(tokenizer, matcher, seed)
    assert ended, text
    assert re.fullmatch(r"\([0-9]{1,2}(,[0-9]{1,2})*\)", text), text


# -- EOS and accept ------------------------------------------------------------------------------------------------


def test_eos_is_masked_until_complete(tokenizer, compiler):
    eos = tokenizer.eos_token_id
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    matcher = compiler.compile(Constraint(ConstraintKind.JSON_SCHEMA, schema)).matcher()
    for prefix in ['{"a"', ": 1", "2"]:
        feed(tokenizer, matcher, prefix)
        logits = torch.zeros(VOCAB)
        matcher.mask_logits(logits)
        assert logits[eos] == float("-inf")
        assert not matcher.is_complete()
    feed(tokenizer, matcher, "}")
    logits = torch.zeros(VOCAB)
    matcher.mask_logits(logits)
    assert matcher.is_complete() and matcher.is_terminated()
    assert torch.isfinite(logits).nonzero().flatten().tolist() == [eos]  # only EOS may follow
    matcher.accept(eos)


def test_accept_rejects_a_disallowed_token_without_breaking_the_state(tokenizer, compiler):
    matcher = compiler.compile(Constraint(ConstraintKind.REGEX, "[0-9]+")).matcher()
    letter = tokenizer.encode("a", add_special_tokens=False)[0]
    with pytest.raises(ValueError, match="not allowed"):
        matcher.accept(letter)
    logits = torch.zeros(VOCAB)
    matcher.mask_logits(logits)
    with pytest.raises(ValueError):
        matcher.accept(letter)  # checked against the fresh mask too
    with pytest.raises(ValueError):
        matcher.accept(VOCAB + 5)
    feed(tokenizer, matcher, "42")
    assert matcher.is_complete()


def test_special_tokens_are_never_allowed_in_free_text(tokenizer, compiler):
    matcher = compiler.compile(Constraint(ConstraintKind.REGEX, r"(.|\n)*")).matcher()
    logits = torch.zeros(VOCAB)
    matcher.mask_logits(logits)
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert logits[im_start] == float("-inf")
    assert torch.isfinite(logits[tokenizer.eos_token_id])


def test_mask_works_for_half_precision_and_wider_logits(tokenizer):
    wide = ConstraintCompiler(tokenizer, VOCAB + 64)
    matcher = wide.compile(Constraint(ConstraintKind.CHOICES, ("yes", "no"))).matcher()
    logits = torch.zeros(VOCAB + 64, dtype=torch.float16)
    matcher.mask_logits(logits)
    allowed = {tokenizer.decode([t]) for t in torch.isfinite(logits).nonzero().flatten().tolist()}
    assert allowed and allowed <= {"y", "ye", "yes", "n", "no"}
    assert torch.isinf(logits[VOCAB:]).all()
    with pytest.raises(ValueError):
        matcher.mask_logits(torch.zeros(VOCAB))  # narrower than the model's vocabulary


# -- invalid constraints -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("constraint", "fragment"),
    [
        (Constraint(ConstraintKind.JSON_SCHEMA, {"type": "nonsense"}), "JSON Schema"),
        (Constraint(ConstraintKind.JSON_SCHEMA, "{not json"), "not valid JSON"),
        (Constraint(ConstraintKind.JSON_SCHEMA, ["a"]), "JSON object"),
        (Constraint(ConstraintKind.REGEX, "("), "regex"),
        (Constraint(ConstraintKind.REGEX, "a(?=b)"), "look-around"),
        (Constraint(ConstraintKind.CHOICES, ()), "non-empty"),
        (Constraint(ConstraintKind.CHOICES, ("a", 3)), "string"),
        (Constraint(ConstraintKind.GRAMMAR_LARK, "start: undefined_rule"), "undefined_rule"),
        (Constraint(ConstraintKind.GRAMMAR_LARK, ""), "Lark"),
        (Constraint(ConstraintKind.GRAMMAR_EBNF, "start: 'a'"), "GBNF"),
        (Constraint(ConstraintKind.TOOL_CALLS, ToolCallSpec(TOOLS, mode="named", name="nope")), "nope"),
        (Constraint(ConstraintKind.TOOL_CALLS, ToolCallSpec((), mode="required")), "at least one tool"),
        (Constraint(ConstraintKind.TOOL_CALLS, ToolCallSpec(TOOLS, mode="sometimes")), "mode"),
        (Constraint(ConstraintKind.TOOL_CALLS, ToolCallSpec((ADD, ADD), mode="required")), "unique"),
        (
            Constraint(ConstraintKind.TOOL_CALLS, ToolCallSpec((ToolSpec("x", "", {"type": 5}),), mode="required")),
            "parameters of tool 'x'",
        ),
        (Constraint(ConstraintKind.TOOL_CALLS, {"tools": []}), "ToolCallSpec"),
    ],
)
def test_invalid_constraint_is_invalid_argument(compiler, constraint, fragment):
    with pytest.raises(InvalidArgument) as info:
        compiler.compile(constraint)
    assert info.value.field_violations[0].field == "constraint"
    assert str(info.value).startswith("constraint: ")
    assert fragment in str(info.value)


# -- tool calls ----------------------------------------------------------------------------------------------------


def check_calls(text: str) -> list[tuple[str, dict]]:
    content, calls = parse_tool_calls(text)
    assert content == "", text
    for name, args in calls:
        jsonschema.validate(args, PARAMS[name])
    return calls


@pytest.mark.parametrize("seed", SEEDS)
def test_tool_calls_required(tokenizer, compiler, seed):
    spec = ToolCallSpec(TOOLS, mode="required")
    matcher = compiler.compile(Constraint(ConstraintKind.TOOL_CALLS, spec)).matcher()
    assert not matcher.is_complete()
    text, _ = sample(tokenizer, matcher, seed, max_tokens=400)
    assert text.startswith("<tool_call>\n{")
    calls = check_calls(text)
    assert calls and {name for name, _ in calls} <= {"get_weather", "add"}


@pytest.mark.parametrize("seed", SEEDS)
def test_tool_calls_required_single(tokenizer, compiler, seed):
    spec = ToolCallSpec(TOOLS, mode="required", parallel=False)
    matcher = compiler.compile(Constraint(ConstraintKind.TOOL_CALLS, spec)).matcher()
    text, ended = sample(tokenizer, matcher, seed)
    assert ended and matcher.is_terminated(), text
    assert len(check_calls(text)) == 1


@pytest.mark.parametrize("seed", SEEDS)
def test_tool_calls_named(tokenizer, compiler, seed):
    spec = ToolCallSpec(TOOLS, mode="named", name="add")
    matcher = compiler.compile(Constraint(ConstraintKind.TOOL_CALLS, spec)).matcher()
    text, ended = sample(tokenizer, matcher, seed)
    assert ended and matcher.is_terminated(), text
    calls = check_calls(text)
    assert [name for name, _ in calls] == ["add"]


def test_tool_calls_auto_allows_free_text(tokenizer, compiler):
    spec = ToolCallSpec(TOOLS, mode="auto")
    matcher = compiler.compile(Constraint(ConstraintKind.TOOL_CALLS, spec)).matcher()
    assert matcher.is_complete()  # an empty answer is fine
    feed(tokenizer, matcher, "The weather is nice today.\n\nAnything else? <b>bold</b>")
    assert matcher.is_complete() and not matcher.is_terminated()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("parallel", [True, False])
def test_tool_calls_auto_constrains_after_the_trigger(tokenizer, compiler, seed, parallel):
    spec = ToolCallSpec(TOOLS, mode="auto", parallel=parallel)
    matcher = compiler.compile(Constraint(ConstraintKind.TOOL_CALLS, spec)).matcher()
    feed(tokenizer, matcher, "Let me check that for you.\n<tool_call>")
    assert not matcher.is_complete()
    logits = torch.zeros(VOCAB)
    matcher.mask_logits(logits)
    allowed = [tokenizer.decode([t]) for t in torch.isfinite(logits).nonzero().flatten().tolist()]
    assert allowed and all(a.startswith("\n") for a in allowed), allowed
    rest, ended = sample(tokenizer, matcher, seed, max_tokens=400)
    if not parallel:
        assert ended and matcher.is_terminated()
    content, calls = parse_tool_calls("Let me check that for you.\n<tool_call>" + rest)
    assert content == "Let me check that for you."
    assert len(calls) >= 1 and (parallel or len(calls) == 1)
    for name, args in calls:
        jsonschema.validate(args, PARAMS[name])


def test_tool_calls_without_parameters(tokenizer, compiler):
    spec = ToolCallSpec((ToolSpec("now", "The time.", {}),), mode="required", parallel=False)
    matcher = compiler.compile(Constraint(ConstraintKind.TOOL_CALLS, spec)).matcher()
    feed(tokenizer, matcher, '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>')
    assert matcher.is_terminated()


# -- parse_tool_calls ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "content", "calls"),
    [
        ("Just text.", "Just text.", []),
        ("", "", []),
        (
            '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>',
            "",
            [("add", {"a": 1, "b": 2})],
        ),
        (
            'Sure!\n<tool_call>  {"name":"add","arguments":{"a":1,"b":2}}  </tool_call>\n'
            '<tool_call>\n\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}\n</tool_call>\nDone.',
            "Sure!\n\n\nDone.",
            [("add", {"a": 1, "b": 2}), ("get_weather", {"city": "Oslo", "unit": "celsius"})],
        ),
        (  # arguments as a JSON string, as some models write them
            '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}</tool_call>',
            "",
            [("add", {"a": 1, "b": 2})],
        ),
        (  # unparsable blocks stay in the content; the good one is taken
            'A <tool_call>{"name": "add", "arguments": {"a": 1,}</tool_call> B '
            '<tool_call>{"arguments": {}}</tool_call> C <tool_call>{"name": "add", "arguments": {}}</tool_call>',
            'A <tool_call>{"name": "add", "arguments": {"a": 1,}</tool_call> B <tool_call>{"arguments": {}}</tool_call> C',
            [("add", {})],
        ),
        (  # two calls in one block, one per line
            '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n{"name": "add", "arguments": {"a": 3, "b": 4}}\n</tool_call>',
            "",
            [("add", {"a": 1, "b": 2}), ("add", {"a": 3, "b": 4})],
        ),
        (  # the closing tag is missing but the JSON is complete
            'Calling.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n',
            "Calling.",
            [("add", {"a": 1, "b": 2})],
        ),
        (  # truncated: kept as text
            '<tool_call>\n{"name": "add", "argu',
            '<tool_call>\n{"name": "add", "argu',
            [],
        ),
    ],
)
def test_parse_tool_calls(text, content, calls):
    assert parse_tool_calls(text) == (content, calls)


def test_tool_prompt_describes_tools_and_format():
    prompt = tool_prompt(TOOLS)
    assert "<tool_call>" in prompt and "</tool_call>" in prompt
    assert '"arguments"' in prompt
    for tool in TOOLS:
        assert json.dumps(tool.name) in prompt and tool.description in prompt
    assert json.dumps(dict(ADD.parameters)) in prompt


# -- cache and threads ---------------------------------------------------------------------------------------------


def test_compile_cache_returns_the_same_object(compiler):
    a = compiler.compile(
        Constraint(ConstraintKind.JSON_SCHEMA, {"type": "object", "properties": {"x": {"type": "integer"}}})
    )
    b = compiler.compile(
        Constraint(ConstraintKind.JSON_SCHEMA, {"properties": {"x": {"type": "integer"}}, "type": "object"})
    )
    c = compiler.compile(
        Constraint(ConstraintKind.JSON_SCHEMA, {"type": "object", "properties": {"y": {"type": "integer"}}})
    )
    assert a is b
    assert c is not a
    assert compiler.compile(Constraint(ConstraintKind.CHOICES, ("a", "b"))) is compiler.compile(
        Constraint(ConstraintKind.CHOICES, ["a", "b"])
    )
    assert a.matcher() is not a.matcher()


def test_compile_cache_is_lru(tokenizer):
    small = ConstraintCompiler(tokenizer, VOCAB, cache_size=2)
    first = small.compile(Constraint(ConstraintKind.REGEX, "a"))
    small.compile(Constraint(ConstraintKind.REGEX, "b"))
    assert small.compile(Constraint(ConstraintKind.REGEX, "a")) is first  # "a" is now the most recent
    small.compile(Constraint(ConstraintKind.REGEX, "c"))  # evicts "b"
    assert small.cache_len() == 2
    assert small.compile(Constraint(ConstraintKind.REGEX, "a")) is first


def test_compile_and_match_from_threads(tokenizer, compiler):
    constraint = Constraint(ConstraintKind.JSON_SCHEMA, PERSON)

    def run(seed: int) -> tuple[int, str]:
        compiled = compiler.compile(constraint)
        text, _ = sample(tokenizer, compiled.matcher(), seed)
        return id(compiled), text

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(8)))
    assert len({ident for ident, _ in results}) == 1
    for _, text in results:
        jsonschema.validate(json.loads(text), PERSON)


# -- a real model --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_greedy_json(source, tokenizer, compiler):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(source.directory), dtype=torch.float32)
    model.eval()
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    messages = [{"role": "user", "content": "Give a person's name and age as JSON."}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    matcher = compiler.compile(Constraint(ConstraintKind.JSON_SCHEMA, schema)).matcher()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))  # the model is worth threads
    out: list[int] = []
    cache = None
    with torch.no_grad():
        for _ in range(60):
            result = model(input_ids=ids, cache=cache, use_cache=True)
            cache = result.cache
            logits = result.logits[0, -1].float().contiguous()
            matcher.mask_logits(logits)
            token = int(logits.argmax())
            if token == tokenizer.eos_token_id:
                break
            matcher.accept(token)
            out.append(token)
            ids = torch.tensor([[token]])
            if matcher.is_terminated():
                break
    text = tokenizer.decode(out)
    assert matcher.is_complete(), text
    value = json.loads(text)
    jsonschema.validate(value, schema)
    assert value["name"].strip()
