"""genai_tokenizer.model.Tokenizer on the real built-ins: encode, count, decode, chat, limits."""

from __future__ import annotations

import re

import pytest
from genai_core.errors import ErrorCode, FailedPrecondition, InvalidArgument
from genai_tokenizer.model import Kind, Source

CLS, SEP, PAD = 101, 102, 0
HELLO, WORLD = 7592, 2088


def _violation(error: InvalidArgument) -> str:
    (violation,) = error.field_violations
    return violation.field


# -- info ----------------------------------------------------------------------------------------


def test_builtin_info(smollm2, minilm):
    assert smollm2.info.kind is Kind.BPE
    assert minilm.info.kind is Kind.WORDPIECE
    assert smollm2.info.vocab_size == 49152
    assert minilm.info.vocab_size == 30522
    for tok in (smollm2, minilm):
        assert tok.info.source is Source.BUILTIN
        assert re.fullmatch(r"[0-9a-f]{64}", tok.info.revision)
        assert tok.info.max_batch_size == 16 and tok.info.max_input_chars == 5000
    assert smollm2.info.has_chat_template is True
    assert minilm.info.has_chat_template is False
    assert smollm2.info.max_length == 8192  # read from the GGUF's context length
    assert minilm.info.max_length == 512
    assert smollm2.info.model == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_special_tokens_have_roles_and_ids(smollm2, minilm):
    mini = {(s.role, s.content, s.id) for s in minilm.info.special_tokens}
    assert {("cls", "[CLS]", CLS), ("sep", "[SEP]", SEP), ("pad", "[PAD]", PAD), ("unk", "[UNK]", 100)} <= mini
    smol = {s.role: s for s in smollm2.info.special_tokens if s.role != "additional"}
    assert (smol["bos"].content, smol["bos"].id) == ("<|im_start|>", 1)
    assert (smol["eos"].content, smol["eos"].id) == ("<|im_end|>", 2)
    for s in smollm2.info.special_tokens:
        assert smollm2.hf.convert_ids_to_tokens(s.id) == s.content


# -- encode --------------------------------------------------------------------------------------


def test_encode_wordpiece_with_specials_tokens_and_offsets(minilm):
    (enc,) = minilm.encode(["Hello world"], return_tokens=True, return_offsets=True)
    assert enc.ids == [CLS, HELLO, WORLD, SEP]  # no padding to the tokenizer.json's fixed 128
    assert enc.tokens == ["[CLS]", "hello", "world", "[SEP]"]
    assert enc.offsets == [(0, 0), (0, 5), (6, 11), (0, 0)]
    assert enc.special_flags == [True, False, False, True]


def test_offsets_slice_back_to_each_token(minilm):
    text = "Tokenization of unbelievably long words, naïvely."
    (enc,) = minilm.encode([text], return_tokens=True, return_offsets=True)
    assert any(t.startswith("##") for t in enc.tokens), "the text should split into word pieces"
    for token, (start, end), special in zip(enc.tokens, enc.offsets, enc.special_flags, strict=True):
        if special:
            assert (start, end) == (0, 0)
            continue
        piece = text[start:end].lower()
        assert piece.replace("ï", "i") == token.removeprefix("##"), (token, piece)


def test_encode_bpe_offsets_cover_the_text(smollm2):
    text = "Hello, world! ünïcode 東京"
    (enc,) = smollm2.encode([text], return_tokens=True, return_offsets=True)
    assert len(enc.ids) == len(enc.tokens) == len(enc.offsets) == len(enc.special_flags)
    assert not any(enc.special_flags)  # SmolLM2 adds no BOS of its own
    # No gaps between tokens (a multi-byte character may be shared), and together they span the text.
    assert enc.offsets[0][0] == 0 and enc.offsets[-1][1] == len(text)
    for (_, end), (start, _) in zip(enc.offsets, enc.offsets[1:], strict=False):
        assert start <= end


def test_without_special_tokens(minilm):
    (enc,) = minilm.encode(["Hello world"], add_special_tokens=False, return_tokens=True)
    assert enc.ids == [HELLO, WORLD]
    assert enc.tokens == ["hello", "world"]
    assert enc.special_flags == [False, False]


def test_tokens_and_offsets_only_when_asked(minilm):
    (enc,) = minilm.encode(["Hello world"])
    assert enc.tokens == [] and enc.offsets == []
    assert len(enc.ids) == 4


def test_batch_keeps_order_and_does_not_pad_or_truncate(minilm):
    long_text = " ".join(["word"] * 300)
    a, b, c = minilm.encode(["Hello world", long_text, ""])
    assert a.ids == [CLS, HELLO, WORLD, SEP]
    assert len(b.ids) == 302  # not truncated to the tokenizer.json's 128
    assert c.ids == [CLS, SEP]


def test_count_matches_encode(smollm2, minilm):
    texts = ["Hello world", "A somewhat longer sentence, with punctuation!", ""]
    for tok in (smollm2, minilm):
        for special in (True, False):
            counts = tok.count(texts, add_special_tokens=special)
            assert counts == [len(e.ids) for e in tok.encode(texts, add_special_tokens=special)]
    assert minilm.count(["Hello world"]) == [4]
    assert minilm.count(["Hello world"], add_special_tokens=False) == [2]


def test_special_text_is_recognised(smollm2):
    (enc,) = smollm2.encode(["<|im_start|>user"], add_special_tokens=False)
    assert enc.ids[0] == 1 and enc.special_flags[0] is True
    assert not any(enc.special_flags[1:])


# -- limits --------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["encode", "count"])
def test_empty_batch(minilm, op):
    with pytest.raises(InvalidArgument) as info:
        getattr(minilm, op)([])
    assert _violation(info.value) == "texts"
    assert "at least one" in info.value.message


@pytest.mark.parametrize("op", ["encode", "count"])
def test_too_many_texts(minilm, op):
    with pytest.raises(InvalidArgument) as info:
        getattr(minilm, op)(["x"] * 17)
    assert _violation(info.value) == "texts"
    assert "17" in info.value.message and "16" in info.value.message


@pytest.mark.parametrize("op", ["encode", "count"])
def test_over_long_text_names_its_index(minilm, op):
    with pytest.raises(InvalidArgument) as info:
        getattr(minilm, op)(["fine", "x" * 5000, "y" * 5001])
    assert _violation(info.value) == "texts[2]"
    assert "5001" in info.value.message


def test_limits_are_inclusive(minilm):
    assert len(minilm.count(["x"] * 16)) == 16
    assert minilm.count(["a " * 2500], add_special_tokens=False) == [2500]


# -- decode --------------------------------------------------------------------------------------


def test_decode_round_trips(smollm2, minilm):
    text = "Hello, world! ünïcode 東京 and some code: x = f(y) + 1"
    ids = smollm2.encode([text], add_special_tokens=False)[0].ids
    assert smollm2.decode([ids]) == [text]
    ids = minilm.encode(["Hello world"])[0].ids
    assert minilm.decode([ids], skip_special_tokens=True) == ["hello world"]
    assert minilm.decode([ids], skip_special_tokens=False) == ["[CLS] hello world [SEP]"]


def test_decode_batch_keeps_order(minilm):
    assert minilm.decode([[HELLO], [WORLD], []], skip_special_tokens=True) == ["hello", "world", ""]


def test_decode_out_of_range_id_names_its_position(minilm):
    with pytest.raises(InvalidArgument) as info:
        minilm.decode([[HELLO, WORLD], [HELLO, 30522]])
    assert _violation(info.value) == "sequences[1].ids[1]"
    assert "30522" in info.value.message and "all-minilm-l6-v2" in info.value.message
    assert minilm.decode([[30521]])  # the last id is fine


def test_decode_empty_and_too_many(minilm):
    with pytest.raises(InvalidArgument) as info:
        minilm.decode([])
    assert _violation(info.value) == "sequences"
    with pytest.raises(InvalidArgument) as info:
        minilm.decode([[HELLO]] * 17)
    assert _violation(info.value) == "sequences"


# -- chat templates ------------------------------------------------------------------------------


def test_render_chat_smollm2(smollm2):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a token?"}]
    text, ids = smollm2.render_chat(messages, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert "<|im_start|>user\nWhat is a token?<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert ids == smollm2.encode([text], add_special_tokens=False)[0].ids
    assert ids.count(1) == 3  # one <|im_start|> per turn, none added twice


def test_render_chat_without_generation_prompt(smollm2):
    text, _ = smollm2.render_chat([{"role": "user", "content": "hi"}], add_generation_prompt=False)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n")
    assert "assistant" not in text.split("<|im_start|>user")[-1]
    # The template adds its default system prompt when none is given.
    assert text.startswith("<|im_start|>system\n")


def test_smollm2_template_ignores_tools(smollm2):
    """SmolLM2-135M's own template has no tools section; tools only show with a template that renders them."""
    assert "tools" not in smollm2.hf.chat_template
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {}}}]
    with_tools, _ = smollm2.render_chat([{"role": "user", "content": "hi"}], add_generation_prompt=True, tools=tools)
    without, _ = smollm2.render_chat([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert with_tools == without


TOOL_TEMPLATE = (
    "{% if tools %}Tools:{% for t in tools %} {{ t.function.name }}({{ t.function.parameters.properties | list | join(',') }})"
    "{% endfor %}{{ '\\n' }}{% endif %}"  # transformers' Jinja env trims the newline after a block tag
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def test_custom_template_renders_tools(smollm2):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}},
            },
        }
    ]
    text, ids = smollm2.render_chat(
        [{"role": "user", "content": "Weather in Paris?"}],
        add_generation_prompt=True,
        tools=tools,
        chat_template=TOOL_TEMPLATE,
    )
    assert text == "Tools: get_weather(city,unit)\nuser: Weather in Paris?\nassistant:"
    assert ids == smollm2.encode([text], add_special_tokens=False)[0].ids


def test_no_chat_template_is_a_failed_precondition(minilm):
    with pytest.raises(FailedPrecondition) as info:
        minilm.render_chat([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert info.value.code is ErrorCode.FAILED_PRECONDITION
    assert info.value.reason == "NO_CHAT_TEMPLATE"
    assert "chat_template" in info.value.message


def test_passed_template_works_without_a_builtin_one(minilm):
    text, ids = minilm.render_chat(
        [{"role": "user", "content": "Hello world"}], add_generation_prompt=False, chat_template=TOOL_TEMPLATE
    )
    assert text == "user: Hello world\n"
    assert ids == minilm.encode([text], add_special_tokens=False)[0].ids
    assert PAD not in ids  # no padding sneaks in through the backend either


@pytest.mark.parametrize(
    "template",
    [
        "{% for m in messages %}{{ m.content }",  # syntax error
        "{{ raise_exception('this template refuses') }}",  # the templates' own error helper
        "{{ messages[0].content.no_such.attr }}",  # undefined at render time
    ],
)
def test_broken_template_is_invalid_argument(smollm2, template):
    with pytest.raises(InvalidArgument) as info:
        smollm2.render_chat([{"role": "user", "content": "hi"}], add_generation_prompt=True, chat_template=template)
    assert _violation(info.value) == "chat_template"


def test_messages_are_validated(smollm2):
    with pytest.raises(InvalidArgument) as info:
        smollm2.render_chat([], add_generation_prompt=True)
    assert _violation(info.value) == "messages"
    with pytest.raises(InvalidArgument) as info:
        smollm2.render_chat([{"role": "user", "content": "a"}, {"role": "", "content": "b"}], add_generation_prompt=True)
    assert _violation(info.value) == "messages[1].role"


def test_rendered_prompt_over_the_limit(smollm2):
    with pytest.raises(InvalidArgument) as info:
        smollm2.render_chat([{"role": "user", "content": "x" * 4990}], add_generation_prompt=True)
    assert _violation(info.value) == "messages"
