"""Happy paths of every tokenizer route, over HTTP, against the real tokenizer service."""

from __future__ import annotations

import json

import pytest

HELLO_IDS = [19556, 905]  # "Hello world" with smollm2-135m-instruct (no BOS is added)
DEFAULT = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"


# -- /v1/tokenize ---------------------------------------------------------------------------


async def test_tokenize_single_text_defaults(client):
    r = await client.post("/v1/tokenize", json={"input": "Hello world"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert body["tokenizer"] == DEFAULT
    assert body["request_id"] == r.headers["x-request-id"]
    assert body["data"] == [
        {"index": 0, "ids": HELLO_IDS, "count": 2, "special_flags": [False, False], "tokens": None, "offsets": None}
    ]


async def test_tokenize_offsets_and_tokens(client):
    r = await client.post("/v1/tokenize", json={"input": "Hello world", "return_offsets": True})
    enc = r.json()["data"][0]
    assert enc["ids"] == HELLO_IDS
    assert enc["offsets"] == [[0, 5], [5, 11]]
    assert enc["tokens"] is None

    r = await client.post("/v1/tokenize", json={"input": "Hello world", "return_tokens": True})
    enc = r.json()["data"][0]
    assert enc["tokens"] == ["Hello", "Ġworld"]
    assert enc["offsets"] is None


async def test_tokenize_list_gives_one_entry_per_text(client):
    texts = ["Hello world", "hi", "Hello world"]
    r = await client.post("/v1/tokenize", json={"input": texts})
    assert r.status_code == 200
    data = r.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    assert data[0]["ids"] == data[2]["ids"] == HELLO_IDS
    assert all(d["count"] == len(d["ids"]) for d in data)


@pytest.mark.parametrize("field", ["tokenizer", "model"])
async def test_tokenize_selects_tokenizer_by_tokenizer_or_model(client, field):
    r = await client.post("/v1/tokenize", json={"input": "Hello world", field: MINILM})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tokenizer"] == MINILM
    assert body["data"][0]["ids"] == [101, 7592, 2088, 102]  # [CLS] hello world [SEP]
    assert body["data"][0]["special_flags"] == [True, False, False, True]


async def test_tokenize_without_special_tokens(client):
    r = await client.post("/v1/tokenize", json={"input": "Hello world", "model": MINILM, "add_special_tokens": False})
    assert r.json()["data"][0]["ids"] == [7592, 2088]


# -- /v1/detokenize -------------------------------------------------------------------------


async def test_detokenize_single_sequence(client):
    r = await client.post("/v1/detokenize", json={"ids": HELLO_IDS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert body["tokenizer"] == DEFAULT
    assert body["data"] == [{"index": 0, "text": "Hello world"}]
    assert body["request_id"] == r.headers["x-request-id"]


async def test_detokenize_list_of_sequences(client):
    r = await client.post("/v1/detokenize", json={"ids": [HELLO_IDS, [19556]]})
    assert r.json()["data"] == [{"index": 0, "text": "Hello world"}, {"index": 1, "text": "Hello"}]


async def test_detokenize_skip_special_tokens(client):
    ids = [1, *HELLO_IDS, 2]  # <|im_start|> Hello world <|im_end|>
    kept = await client.post("/v1/detokenize", json={"ids": ids})
    skipped = await client.post("/v1/detokenize", json={"ids": ids, "skip_special_tokens": True})
    assert kept.json()["data"][0]["text"] == "<|im_start|>Hello world<|im_end|>"
    assert skipped.json()["data"][0]["text"] == "Hello world"


async def test_tokenize_detokenize_round_trip_minilm(client):
    enc = await client.post("/v1/tokenize", json={"input": "Hello world", "model": MINILM})
    dec = await client.post(
        "/v1/detokenize", json={"ids": enc.json()["data"][0]["ids"], "model": MINILM, "skip_special_tokens": True}
    )
    assert dec.json()["data"][0]["text"] == "hello world"


# -- /v1/tokens/count -----------------------------------------------------------------------


async def test_count_tokens(client):
    texts = ["Hello world", "hi", "a longer sentence with several words in it"]
    r = await client.post("/v1/tokens/count", json={"input": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tokenizer"] == DEFAULT
    assert body["counts"][0] == 2
    assert len(body["counts"]) == 3
    assert body["total"] == sum(body["counts"])
    assert body["request_id"] == r.headers["x-request-id"]


async def test_count_matches_tokenize(client):
    text = "The quick brown fox jumps over the lazy dog."
    count = await client.post("/v1/tokens/count", json={"input": text, "model": MINILM})
    tok = await client.post("/v1/tokenize", json={"input": text, "model": MINILM})
    assert count.json()["counts"] == [tok.json()["data"][0]["count"]]
    assert count.json()["total"] == tok.json()["data"][0]["count"]


# -- /v1/chat/template ----------------------------------------------------------------------


async def test_chat_template_renders(client):
    r = await client.post("/v1/chat/template", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tokenizer"] == DEFAULT
    assert "<|im_start|>user\nhi<|im_end|>" in body["text"]
    assert body["text"].endswith("<|im_start|>assistant\n")
    assert body["count"] == len(body["ids"]) > 0
    assert body["ids"][0] == 1  # <|im_start|>, placed by the template, not doubled
    assert body["request_id"] == r.headers["x-request-id"]


async def test_chat_template_without_generation_prompt(client):
    r = await client.post(
        "/v1/chat/template",
        json={"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": False},
    )
    assert r.status_code == 200
    assert r.json()["text"].endswith("<|im_start|>user\nhi<|im_end|>\n")


async def test_chat_template_openai_shapes_accepted(client):
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "sunny"},
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    r = await client.post("/v1/chat/template", json={"messages": messages, "tools": tools})
    assert r.status_code == 200, r.text
    text = r.json()["text"]
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")  # content parts joined
    assert "<|im_start|>tool\nsunny<|im_end|>" in text


async def test_chat_template_tool_calls_and_tools_reach_the_template(client):
    """A custom template proves the arguments arrive as an object and tools arrive with their fields."""
    template = (
        "{% for t in tools %}T:{{ t.function.name }}|{{ t.function.parameters.properties.city.type }};{% endfor %}"
        "{% for m in messages %}{% for c in m.tool_calls %}"
        "C:{{ c.id }}|{{ c.function.name }}|{{ c.function.arguments.city }}|{{ c.function.arguments.days }};"
        "{% endfor %}{% endfor %}"
    )
    body = {
        "chat_template": template,
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "a", "function": {"name": "w", "arguments": '{"city": "Oslo", "days": 3}'}},
                    {"id": "b", "function": {"name": "w", "arguments": {"city": "Rome", "days": 1}}},
                ],
            }
        ],
        "tools": [{"function": {"name": "w", "parameters": {"properties": {"city": {"type": "string"}}}}}],
    }
    r = await client.post("/v1/chat/template", json=body)
    assert r.status_code == 200, r.text
    # Struct numbers are doubles: 3 comes back as 3.0.
    assert r.json()["text"] == "T:w|string;C:a|w|Oslo|3;C:b|w|Rome|1;"


async def test_chat_template_custom_template_works_for_minilm(client):
    r = await client.post(
        "/v1/chat/template",
        json={
            "model": MINILM,
            "chat_template": "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}",
            "messages": [{"role": "user", "content": "hello"}],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == "user: hello\n"
    assert body["ids"] == [5310, 1024, 7592]  # user : hello (no [CLS]/[SEP])
    assert body["count"] == 3


# -- /v1/context/pack -----------------------------------------------------------------------

PACK = {
    "question": "What?",
    "chunks": ["a b c", "long text here that is many many words long and so on and so forth and on and on", "x"],
}


async def test_pack_context_greedy_skips_what_does_not_fit(client):
    r = await client.post("/v1/context/pack", json={**PACK, "token_budget": 20})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tokenizer"] == DEFAULT
    assert body["chunk_token_counts"] == [3, 19, 1]
    assert body["fixed_tokens"] == 2
    # available 18: chunk 0 costs 3+1, chunk 1 (19+1) does not fit, chunk 2 costs 1+1.
    assert body["selected_indices"] == [0, 2]
    assert body["used_tokens"] == 2 + 4 + 2
    assert body["remaining_tokens"] == 20 - body["used_tokens"]
    assert body["request_id"] == r.headers["x-request-id"]


async def test_pack_context_prefix_stops_at_first_misfit(client):
    r = await client.post("/v1/context/pack", json={**PACK, "token_budget": 20, "strategy": "prefix"})
    body = r.json()
    assert body["selected_indices"] == [0]
    assert body["used_tokens"] == 6
    assert body["remaining_tokens"] == 14


async def test_pack_context_reserved_and_separator(client):
    r = await client.post(
        "/v1/context/pack", json={**PACK, "token_budget": 30, "reserved_tokens": 5, "separator_tokens": 0}
    )
    body = r.json()
    # available 30-5-2 = 23: 3 + 19 + 1 fits exactly with no separators.
    assert body["selected_indices"] == [0, 1, 2]
    assert body["remaining_tokens"] == 0
    assert body["used_tokens"] == 25


async def test_pack_context_no_chunks_returns_empty_lists(client):
    r = await client.post("/v1/context/pack", json={"token_budget": 10, "question": "What?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["selected_indices"] == [] and body["chunk_token_counts"] == []
    assert body["used_tokens"] == body["fixed_tokens"] == 2
    assert body["remaining_tokens"] == 8


# -- /v1/tokenizers -------------------------------------------------------------------------


async def test_list_tokenizers(client):
    r = await client.get("/v1/tokenizers")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert body["default"] == DEFAULT
    ids = [t["id"] for t in body["data"]]
    assert {DEFAULT, MINILM} <= set(ids)
    assert ids == sorted(ids)
    smol = next(t for t in body["data"] if t["id"] == DEFAULT)
    assert smol["kind"] == "bpe"
    assert smol["source"] == "builtin"
    assert smol["vocab_size"] == 49152
    assert smol["has_chat_template"] is True
    assert smol["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert {"role": "bos", "content": "<|im_start|>", "id": 1} in smol["special_tokens"]
    assert smol["created"] is None


async def test_get_tokenizer_minilm(client):
    r = await client.get(f"/v1/tokenizers/{MINILM}")
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["id"] == MINILM
    assert info["object"] == "tokenizer"
    assert info["kind"] == "wordpiece"
    assert info["source"] == "builtin"
    assert info["vocab_size"] == 30522
    assert info["max_length"] == 512
    assert info["has_chat_template"] is False
    assert info["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert {"role": "cls", "content": "[CLS]", "id": 101} in info["special_tokens"]
    assert len(info["revision"]) == 64
    assert info["max_batch_size"] == 256
    assert info["max_input_chars"] == 1_000_000


CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a journey of a thousand miles begins with a single step",
    "to be or not to be that is the question",
    "all that glitters is not gold",
] * 20


async def test_train_wordpiece_then_use_and_list(client):
    r = await client.post(
        "/v1/tokenizers",
        json={"id": "gw-wordpiece", "kind": "wordpiece", "vocab_size": 200, "texts": CORPUS, "lowercase": True},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    info = body["tokenizer"]
    assert info["id"] == "gw-wordpiece"
    assert info["kind"] == "wordpiece"
    assert info["source"] == "trained"
    assert 0 < info["vocab_size"] <= 200
    assert isinstance(info["created"], int) and info["created"] > 0
    assert {s["content"] for s in info["special_tokens"]} >= {"[CLS]", "[SEP]", "[UNK]"}
    assert body["trained_chars"] == sum(len(t) for t in CORPUS)
    assert body["training_ms"] >= 0
    assert body["request_id"] == r.headers["x-request-id"]

    tok = await client.post("/v1/tokenize", json={"input": "The quick fox", "model": "gw-wordpiece"})
    assert tok.status_code == 200, tok.text
    enc = tok.json()["data"][0]
    assert tok.json()["tokenizer"] == "gw-wordpiece"
    assert enc["special_flags"][0] is True and enc["special_flags"][-1] is True  # [CLS] ... [SEP]
    dec = await client.post(
        "/v1/detokenize", json={"ids": enc["ids"], "model": "gw-wordpiece", "skip_special_tokens": True}
    )
    assert dec.json()["data"][0]["text"] == "the quick fox"

    listed = await client.get("/v1/tokenizers")
    assert "gw-wordpiece" in [t["id"] for t in listed.json()["data"]]
    got = await client.get("/v1/tokenizers/gw-wordpiece")
    assert got.status_code == 200 and got.json()["source"] == "trained"


async def test_train_bpe_from_file_then_use(client):
    # data_dir/corpus/a.txt is written by the data_dir fixture.
    r = await client.post(
        "/v1/tokenizers",
        json={"id": "gw-bpe", "kind": "bpe", "vocab_size": 300, "files": ["corpus/a.txt"], "max_length": 64},
    )
    assert r.status_code == 201, r.text
    info = r.json()["tokenizer"]
    assert info["kind"] == "bpe" and info["source"] == "trained"
    assert info["max_length"] == 64
    assert r.json()["trained_chars"] == len("the quick brown fox jumps over the lazy dog\n") * 50

    tok = await client.post("/v1/tokenize", json={"input": "the lazy dog", "tokenizer": "gw-bpe"})
    assert tok.status_code == 200, tok.text
    ids = tok.json()["data"][0]["ids"]
    assert 0 < len(ids) < len("the lazy dog")  # merges were learned
    dec = await client.post("/v1/detokenize", json={"ids": ids, "tokenizer": "gw-bpe"})
    assert dec.json()["data"][0]["text"] == "the lazy dog"


async def test_train_overwrite_replaces(client):
    body = {"id": "gw-overwrite", "kind": "wordpiece", "vocab_size": 150, "texts": CORPUS}
    first = await client.post("/v1/tokenizers", json=body)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/tokenizers", json={**body, "vocab_size": 180, "overwrite": True})
    assert again.status_code == 201, again.text
    assert again.json()["tokenizer"]["revision"] != first.json()["tokenizer"]["revision"]
