"""TextStream with the real SmolLM2 tokenizer: multi-byte characters, stop sequences, held-back text."""

from __future__ import annotations

import pytest
from genai_inference.textstream import TextStream


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def _run(stream: TextStream, ids: list[int]) -> tuple[list[str], int | None]:
    """Push ids until the stream stops; return the pieces (finish() last) and the index of the stopping token."""
    pieces, stopped_at = [], None
    for i, token in enumerate(ids):
        pieces.append(stream.push(token))
        if stream.stopped_by is not None:
            stopped_at = i
            break
    pieces.append(stream.finish())
    return pieces, stopped_at


@pytest.mark.parametrize(
    "text",
    ["Hi 😀 and 日本語 and 🎉 café!", "こんにちは世界🎉", "emoji at the end 👍🏽", "naïve façade — «quoted» 한국어 🚀"],
)
def test_multibyte_characters_stream_without_replacement_chars(tokenizer, text):
    ids = _ids(tokenizer, text)
    # The text really is split inside characters: some single tokens decode to U+FFFD on their own.
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)
    stream = TextStream(tokenizer)
    pieces, _ = _run(stream, ids)
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == tokenizer.decode(ids) == text
    assert stream.text == text
    assert "" in pieces[:-1]  # a token that ended inside a character was held back


def test_characters_are_emitted_as_soon_as_complete(tokenizer):
    ids = _ids(tokenizer, "Hi 😀 and")  # 'Hi', ' \xf0\x9f', '\x98\x80', ' and'
    stream = TextStream(tokenizer)
    out = [stream.push(i) for i in ids]
    assert out[0] == "Hi"
    assert "".join(out[: ids.index(ids[-1])]) == "Hi 😀"
    assert out[-1] == " and"


def test_stop_sequence_split_across_tokens_is_never_emitted(tokenizer):
    text = "The capital of France is Paris. It is a big city."
    ids = _ids(tokenizer, text)
    stop = "is Par"  # spans the tokens ' is' and ' Paris'
    assert not any(stop in tokenizer.decode([i]) for i in ids)
    stream = TextStream(tokenizer, stops=(stop,))
    pieces, stopped_at = _run(stream, ids)
    assert stream.stopped_by == stop
    assert tokenizer.decode([ids[stopped_at]]) == " Paris"  # the stream ends at the token completing the stop
    assert "".join(pieces) == "The capital of France "
    assert stream.text == "The capital of France "
    assert pieces[-1] == ""  # nothing left after the stop
    assert all("Par" not in p and "is" not in p for p in pieces)


def test_earliest_stop_sequence_wins_and_later_text_is_dropped(tokenizer):
    ids = _ids(tokenizer, "Hello world, how are you?")
    stream = TextStream(tokenizer, stops=("are you", "world"))
    pieces, stopped_at = _run(stream, ids)
    assert stream.stopped_by == "world"
    assert "".join(pieces) == "Hello "
    assert stopped_at == 1


def test_stop_sequence_in_a_single_token(tokenizer):
    ids = _ids(tokenizer, "The capital of France is Paris. It is a big city.")
    stream = TextStream(tokenizer, stops=("Paris",))
    pieces, stopped_at = _run(stream, ids)
    assert "".join(pieces) == "The capital of France is "
    assert tokenizer.decode([ids[stopped_at]]) == " Paris"


def test_possible_stop_prefix_is_held_back_then_flushed_by_finish(tokenizer):
    ids = _ids(tokenizer, "Hello world, how are you?")
    stream = TextStream(tokenizer, stops=("you!!!",))  # "you" could start the stop: held back
    streamed = "".join(stream.push(i) for i in ids)
    assert stream.stopped_by is None
    assert "Hello world, how are you?".startswith(streamed)
    assert len(streamed) < len("Hello world, how are you?")
    rest = stream.finish()
    assert rest
    assert streamed + rest == "Hello world, how are you?"
    assert stream.finish() == ""  # flushed once


def test_without_stops_nothing_is_held_back(tokenizer):
    ids = _ids(tokenizer, "Hello world, how are you?")
    stream = TextStream(tokenizer)
    assert "".join(stream.push(i) for i in ids) == "Hello world, how are you?"
    assert stream.finish() == ""


def test_first_word_keeps_its_leading_space(tokenizer):
    prompt = _ids(tokenizer, "The capital of France is")
    completion = _ids(tokenizer, " Paris.")
    stream = TextStream(tokenizer, prompt_tail=prompt)
    first = stream.push(completion[0])
    assert first == " Paris"
    assert first + stream.push(completion[1]) + stream.finish() == " Paris."


def test_chat_prompt_tail_with_special_tokens(tokenizer, chat_text):
    prompt = _ids(tokenizer, chat_text("Hi"))  # ends with '<|im_start|>assistant\n'
    stream = TextStream(tokenizer, prompt_tail=prompt)
    completion = _ids(tokenizer, "Hello! How can I help?")
    assert "".join(stream.push(i) for i in completion) + stream.finish() == "Hello! How can I help?"


def test_special_tokens_produce_no_text(tokenizer):
    stream = TextStream(tokenizer)
    assert stream.push(_ids(tokenizer, "Hi")[0]) == "Hi"
    assert stream.push(tokenizer.convert_tokens_to_ids("<|im_start|>")) == ""
    assert stream.push(_ids(tokenizer, " there")[0]) == " there"
