"""Settings: the variables deployments already set keep their names and defaults."""

from __future__ import annotations

import re

import pytest
from genai_core.settings import SettingsError
from genai_retrieval.settings import Settings


def test_defaults_come_from_the_services_table():
    s = Settings.from_env({})
    assert (s.server.port, s.server.metrics_port) == (50054, 9104)
    assert s.downstream.targets == {"embedding": "127.0.0.1:50053", "inference": "127.0.0.1:50052",
                                    "tokenizer": "127.0.0.1:50051"}
    assert s.downstream.timeout == 120.0


def test_the_variables_users_set_keep_their_names():
    s = Settings.from_env({
        "GENAI_RETRIEVAL_PORT": "6000", "GENAI_RETRIEVAL_EMBEDDING_TARGET": "emb:1",
        "GENAI_RETRIEVAL_INFERENCE_TARGET": "", "GENAI_RETRIEVAL_TOKENIZER_TARGET": "tok:2",
        "GENAI_RETRIEVAL_DOWNSTREAM_TIMEOUT": "7.5", "GENAI_RETRIEVAL_CHUNK_SIZE_TOKENS": "300",
    })
    assert s.server.port == 6000 and s.retrieval.chunk_size_tokens == 300
    assert s.downstream.targets == {"embedding": "emb:1", "tokenizer": "tok:2"}  # empty: not deployed
    assert s.downstream.timeout == 7.5


@pytest.mark.parametrize(("env", "message"), [
    ({"GENAI_RETRIEVAL_DOWNSTREAM_TIMEOUT": "soon"}, "GENAI_RETRIEVAL_DOWNSTREAM_TIMEOUT='soon'"),
    ({"GENAI_RETRIEVAL_DOWNSTREAM_TIMEOUT": "0"}, "the downstream timeout must be positive"),
    ({"GENAI_RETRIEVAL_CHUNK_OVERLAP_TOKENS": "500"}, "chunk_overlap_tokens in"),
])
def test_a_bad_deployment_fails_at_start(env, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)
