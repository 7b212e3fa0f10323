"""Bad input over HTTP: every route answers the one error envelope, with the HTTP field names."""

from __future__ import annotations

import pytest

MINILM = "all-minilm-l6-v2"
BAD = "invalid_request_error"


# -- unknown tokenizer, every route that takes one ------------------------------------------

UNKNOWN = "no-such-tokenizer"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/tokenize", {"input": "hi", "tokenizer": UNKNOWN}),
        ("/v1/tokenize", {"input": "hi", "model": UNKNOWN}),
        ("/v1/detokenize", {"ids": [1], "tokenizer": UNKNOWN}),
        ("/v1/tokens/count", {"input": "hi", "tokenizer": UNKNOWN}),
        ("/v1/chat/template", {"messages": [{"role": "user", "content": "hi"}], "tokenizer": UNKNOWN}),
        ("/v1/context/pack", {"token_budget": 10, "tokenizer": UNKNOWN}),
    ],
)
async def test_unknown_tokenizer_is_404(client, assert_envelope, path, body):
    r = await client.post(path, json=body)
    error = assert_envelope(r, 404, "not_found_error", "not_found")
    assert UNKNOWN in error["message"]
    assert "smollm2-135m-instruct" in error["message"]  # names the known ones
    assert error["param"] is None
    assert error["trace_id"] == r.headers["x-trace-id"]


async def test_get_unknown_tokenizer_is_404(client, assert_envelope):
    r = await client.get(f"/v1/tokenizers/{UNKNOWN}")
    error = assert_envelope(r, 404, "not_found_error", "not_found")
    assert UNKNOWN in error["message"]


# -- empty / missing / wrongly typed fields -------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/tokenize", "/v1/tokens/count"])
async def test_empty_input_list_is_400_on_input(client, assert_envelope, path):
    r = await client.post(path, json={"input": []})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "input"
    assert error["message"].startswith("input: ")  # the proto name "texts" is renamed in the message too
    assert "texts" not in error["message"]


async def test_too_long_text_names_its_index(client, assert_envelope, registry):
    limit = registry.get().limits.max_input_chars
    r = await client.post("/v1/tokenize", json={"input": ["ok", "x" * (limit + 1)]})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "input[1]"
    assert error["message"].startswith("input[1]: ")


async def test_too_many_texts_is_400(client, assert_envelope, registry):
    limit = registry.get().limits.max_batch_size
    r = await client.post("/v1/tokens/count", json={"input": ["a"] * (limit + 1)})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "input"
    assert str(limit) in error["message"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/tokenize", {}, "input"),
        ("/v1/detokenize", {}, "ids"),
        ("/v1/tokens/count", {"tokenizer": MINILM}, "input"),
        ("/v1/chat/template", {}, "messages"),
        ("/v1/chat/template", {"messages": [{"content": "hi"}]}, "messages[0].role"),
        (
            "/v1/chat/template",
            {"messages": [{"role": "a", "tool_calls": [{"id": "x"}]}]},
            "messages[0].tool_calls[0].function",
        ),
        ("/v1/context/pack", {}, "token_budget"),
        ("/v1/tokenizers", {"kind": "bpe", "vocab_size": 100, "texts": ["a"]}, "id"),
        ("/v1/tokenizers", {"id": "x", "texts": ["a"]}, "vocab_size"),
    ],
)
async def test_missing_field_is_400_naming_it(client, assert_envelope, path, body, param):
    r = await client.post(path, json=body)
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == param
    assert error["message"] == f"{param}: Field required"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/tokenize", {"input": "hi", "return_tokens": "lots"}, "return_tokens"),
        ("/v1/detokenize", {"ids": [1], "skip_special_tokens": [1]}, "skip_special_tokens"),
        ("/v1/chat/template", {"messages": "hi"}, "messages"),
        ("/v1/chat/template", {"messages": [{"role": ""}]}, "messages[0].role"),
        ("/v1/context/pack", {"token_budget": "many"}, "token_budget"),
        ("/v1/context/pack", {"token_budget": 10, "strategy": "best"}, "strategy"),
        ("/v1/context/pack", {"token_budget": 10, "reserved_tokens": -1}, "reserved_tokens"),
        ("/v1/tokenizers", {"id": "x", "vocab_size": 100, "texts": ["a"], "kind": "sentencepiece"}, "kind"),
        ("/v1/tokenize", {"input": "hi", "bogus": 1}, "bogus"),  # extra fields are rejected
    ],
)
async def test_wrong_type_is_400_naming_the_field(client, assert_envelope, path, body, param):
    r = await client.post(path, json=body)
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == param
    assert error["message"].startswith(f"{param}: ")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/tokenize", {"input": 5}, "input"),
        ("/v1/tokens/count", {"input": {"a": 1}}, "input"),
        ("/v1/detokenize", {"ids": [1, "a"]}, "ids"),
        ("/v1/detokenize", {"ids": "1 2"}, "ids"),
    ],
)
async def test_wrong_type_in_union_field_is_400(client, assert_envelope, path, body, field):
    r = await client.post(path, json=body)
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"].startswith(field)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [("/v1/tokenize", {"input": 5}, "input"), ("/v1/detokenize", {"ids": [1, "a"]}, "ids[1]")],
)
async def test_union_field_param_names_only_client_fields(client, path, body, param):
    r = await client.post(path, json=body)
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize(
    "path",
    ["/v1/tokenize", "/v1/detokenize", "/v1/tokens/count", "/v1/chat/template", "/v1/context/pack", "/v1/tokenizers"],
)
async def test_non_json_body_is_400_mentioning_json(client, assert_envelope, path):
    r = await client.post(path, content=b"input=hello", headers={"content-type": "text/plain"})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert "application/json" in error["message"]
    assert error["param"] is None


async def test_json_array_body_is_400(client, assert_envelope):
    r = await client.post("/v1/tokenize", json=["hello"])
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert "application/json" in error["message"]


async def test_malformed_json_is_400(client, assert_envelope):
    r = await client.post("/v1/tokenize", content=b'{"input": ', headers={"content-type": "application/json"})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert "JSON" in error["message"]


async def test_malformed_json_has_no_positional_param(client):
    r = await client.post("/v1/tokenize", content=b'{"input": ', headers={"content-type": "application/json"})
    assert r.json()["error"]["param"] is None


# -- /v1/detokenize ids ---------------------------------------------------------------------


async def test_out_of_range_id_in_list_of_lists_names_both_indices(client, assert_envelope):
    r = await client.post("/v1/detokenize", json={"ids": [[19556, 905], [1, 99_999_999]]})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "ids[1][1]"
    assert error["message"].startswith("ids[1][1]: token id 99999999 is out of range")
    assert "sequences" not in error["message"]
    assert "49152" in error["message"]


async def test_out_of_range_id_in_flat_list_names_ids(client, assert_envelope):
    r = await client.post("/v1/detokenize", json={"ids": [19556, 99_999_999]})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"].startswith("ids[")
    assert "99999999" in error["message"]


async def test_out_of_range_id_in_flat_list_param_matches_request_shape(client):
    r = await client.post("/v1/detokenize", json={"ids": [19556, 99_999_999]})
    assert r.json()["error"]["param"] == "ids[1]"


@pytest.mark.parametrize(("ids", "param"), [([-1], "ids[0]"), ([[1, 2], [3, -4]], "ids[1][1]")])
async def test_negative_id_is_400_naming_it(client, assert_envelope, ids, param):
    r = await client.post("/v1/detokenize", json={"ids": ids})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == param
    assert error["message"] == f"{param}: Input should be greater than or equal to 0"


@pytest.mark.parametrize("ids", [[], [[]]])
async def test_empty_ids_decode_as_one_empty_sequence(client, ids):
    # The gateway always sends at least one sequence, so the service's "no sequences" error is unreachable.
    r = await client.post("/v1/detokenize", json={"ids": ids})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [{"index": 0, "text": ""}]


# -- /v1/chat/template ----------------------------------------------------------------------


async def test_invalid_tool_call_arguments_json(client, assert_envelope):
    body = {
        "messages": [
            {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{not json"}}]}
        ]
    }
    r = await client.post("/v1/chat/template", json=body)
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "messages[0].tool_calls[0].function.arguments"
    assert "not valid JSON" in error["message"]


async def test_tool_call_arguments_must_be_an_object(client, assert_envelope):
    body = {
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"function": {"name": "f", "arguments": "{}"}},
                    {"function": {"name": "g", "arguments": "[1, 2]"}},
                ],
            },
        ]
    }
    r = await client.post("/v1/chat/template", json=body)
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "messages[1].tool_calls[1].function.arguments"
    assert "JSON object" in error["message"]


async def test_empty_messages_is_400(client, assert_envelope):
    r = await client.post("/v1/chat/template", json={"messages": []})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "messages"


async def test_chat_template_of_tokenizer_without_one_is_400(client, assert_envelope):
    r = await client.post("/v1/chat/template", json={"model": MINILM, "messages": [{"role": "user", "content": "hi"}]})
    error = assert_envelope(r, 400, BAD, "failed_precondition")  # FAILED_PRECONDITION -> 400
    assert "chat template" in error["message"]
    assert MINILM in error["message"]


async def test_broken_custom_template_is_400(client, assert_envelope):
    r = await client.post(
        "/v1/chat/template",
        json={"messages": [{"role": "user", "content": "hi"}], "chat_template": "{% for m in messages %}"},
    )
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "chat_template"


# -- /v1/context/pack -----------------------------------------------------------------------


@pytest.mark.parametrize("budget", [0, -5])
async def test_non_positive_token_budget_is_400(client, assert_envelope, budget):
    r = await client.post("/v1/context/pack", json={"token_budget": budget})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "token_budget"


async def test_budget_smaller_than_fixed_prompt_is_400(client, assert_envelope):
    r = await client.post(
        "/v1/context/pack", json={"token_budget": 3, "system_prompt": "You are a very helpful assistant."}
    )
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "token_budget"
    assert "raise the budget" in error["message"]


# -- POST /v1/tokenizers --------------------------------------------------------------------

CORPUS = ["the quick brown fox jumps over the lazy dog"] * 30


@pytest.mark.parametrize("corpus", [{"texts": CORPUS, "files": ["corpus/a.txt"]}, {}], ids=["both", "neither"])
async def test_train_needs_exactly_one_corpus(client, assert_envelope, corpus):
    r = await client.post("/v1/tokenizers", json={"id": "gw-x", "vocab_size": 200, **corpus})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "texts"
    assert "texts" in error["message"] and "files" in error["message"]


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd"])
async def test_train_path_outside_data_dir_is_400(client, assert_envelope, path):
    r = await client.post("/v1/tokenizers", json={"id": "gw-escape", "vocab_size": 200, "files": [path]})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "files[0]"
    assert "outside the data directory" in error["message"]
    assert error["message"].startswith("files[0]: ")


async def test_train_missing_file_names_its_index(client, assert_envelope):
    r = await client.post(
        "/v1/tokenizers", json={"id": "gw-missing", "vocab_size": 200, "files": ["corpus/a.txt", "corpus/nope.txt"]}
    )
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "files[1]"


async def test_train_bad_id_is_400_on_id(client, assert_envelope):
    r = await client.post("/v1/tokenizers", json={"id": "../evil", "vocab_size": 200, "texts": CORPUS})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "id"
    assert "tokenizer_id" not in error["message"]


async def test_train_empty_corpus_is_400_on_texts(client, assert_envelope):
    r = await client.post("/v1/tokenizers", json={"id": "gw-empty", "vocab_size": 200, "texts": []})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "texts"


@pytest.mark.parametrize("vocab_size", [5, 2_000_000])
async def test_train_vocab_size_out_of_bounds_is_400(client, assert_envelope, vocab_size):
    r = await client.post("/v1/tokenizers", json={"id": "gw-v", "vocab_size": vocab_size, "texts": CORPUS})
    error = assert_envelope(r, 400, BAD, "invalid_argument")
    assert error["param"] == "vocab_size"


async def test_train_duplicate_without_overwrite_is_409(client, assert_envelope):
    body = {"id": "gw-dup", "kind": "wordpiece", "vocab_size": 100, "texts": CORPUS}  # what this small corpus holds
    first = await client.post("/v1/tokenizers", json=body)
    assert first.status_code == 201, first.text
    r = await client.post("/v1/tokenizers", json=body)
    error = assert_envelope(r, 409, "conflict_error", "already_exists")
    assert "gw-dup" in error["message"] and "overwrite" in error["message"]


@pytest.mark.parametrize("builtin", ["smollm2-135m-instruct", MINILM])
async def test_train_builtin_id_is_409_even_with_overwrite(client, assert_envelope, builtin):
    r = await client.post("/v1/tokenizers", json={"id": builtin, "vocab_size": 150, "texts": CORPUS, "overwrite": True})
    error = assert_envelope(r, 409, "conflict_error", "already_exists")
    assert "built-in" in error["message"]


# -- routing --------------------------------------------------------------------------------


async def test_unknown_route_is_404_envelope(client, assert_envelope):
    r = await client.get("/v1/nope")
    # Its own code: LangChain reads code "not_found"/"model_not_found" on a 404 as a missing model.
    error = assert_envelope(r, 404, BAD, "unknown_url")
    assert error["param"] is None
    assert error["message"] == "no route GET /v1/nope; the routes are listed at /docs"
    assert "x-request-id" in r.headers


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/v1/tokenize", {"POST"}),
    ("TRACE", "/v1/tokenizers", {"GET", "POST"}),
    ("DELETE", "/v1/models", {"GET"}),
])
async def test_wrong_method_is_405_envelope_with_allow(client, assert_envelope, method, path, allow):
    r = await client.request(method, path)
    assert_envelope(r, 405, BAD, "method_not_allowed")
    assert {m.strip() for m in r.headers["allow"].split(",")} == allow  # RFC 9110 15.5.6


# -- body limit -----------------------------------------------------------------------------


async def test_body_over_limit_is_413(small_client, assert_envelope):
    r = await small_client.post("/v1/tokenize", json={"input": "x" * 1000})
    error = assert_envelope(r, 413, BAD, "payload_too_large")
    assert "256" in error["message"]


async def test_body_under_limit_passes(small_client):
    r = await small_client.post("/v1/tokenize", json={"input": "Hello world"})
    assert r.status_code == 200, r.text


async def test_body_over_limit_still_has_request_id(small_client):
    r = await small_client.post("/v1/tokenize", json={"input": "x" * 1000}, headers={"x-request-id": "big-1"})
    assert r.headers.get("x-request-id") == "big-1"


async def test_chunked_body_over_limit_is_413(small_client):
    async def chunks():
        yield b'{"input": "'
        yield b"x" * 1000
        yield b'"}'

    r = await small_client.post("/v1/tokenize", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


# -- backends that are down or not configured -----------------------------------------------


async def test_backend_down_is_503_envelope(down_client, assert_envelope):
    r = await down_client.post("/v1/tokenize", json={"input": "hi"})
    error = assert_envelope(r, 503, "service_unavailable_error", "unavailable")
    assert error["param"] is None
    # Issue 14 defect 6: which service, not where it listens ("ipv4:127.0.0.1:<port>: Failed to connect").
    assert error["message"] == "the tokenizer service is unavailable; retry shortly"
    assert r.headers["retry-after"] == "1"


async def test_backend_not_configured_is_503(absent_client, assert_envelope):
    for method, path, body in [
        ("POST", "/v1/tokenize", {"input": "hi"}),
        ("POST", "/v1/detokenize", {"ids": [1]}),
        ("GET", "/v1/tokenizers", None),
        ("GET", "/v1/tokenizers/x", None),
    ]:
        r = await absent_client.request(method, path, json=body)
        error = assert_envelope(r, 503, "service_unavailable_error", "backend_not_configured")
        assert "GENAI_GATEWAY_TOKENIZER_TARGET" in error["message"]
