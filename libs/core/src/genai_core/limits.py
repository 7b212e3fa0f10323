"""The limits the services enforce, written once: their settings default to these values and the gateway's
HTTP schema (JSON Schema bounds in OpenAPI) is generated from them, so the documented contract and the
server cannot drift apart.

    >>> INFERENCE.max_samples
    8
    >>> proto_max("uint32")
    4294967295

A service checks its own (configurable) limit in its domain; the gateway only rejects what no default
deployment accepts, with the same bound, before it builds a protobuf message. An operator who raises a
limit through a service's environment also raises it here by changing the default (the gateway's schema
is static, so it states the shipped limits).
"""

from __future__ import annotations

from dataclasses import dataclass

# The largest value of each protobuf integer type: an HTTP integer bound for a proto field never exceeds it,
# so building the message can never fail with "Value out of range".
PROTO_MAX = {"uint32": 2**32 - 1, "int32": 2**31 - 1, "uint64": 2**64 - 1, "int64": 2**63 - 1}
PROTO_MIN = {"uint32": 0, "int32": -(2**31), "uint64": 0, "int64": -(2**63)}


def proto_max(kind: str) -> int:
    """The largest value a protobuf integer field of type ``kind`` ("uint32", "int64", ...) holds."""
    return PROTO_MAX[kind]


@dataclass(frozen=True)
class TokenizerLimits:
    max_batch_size: int = 256  # texts per request (and chunks per PackContext)
    max_input_chars: int = 1_000_000  # characters per text
    max_training_chars: int = 200_000_000  # corpus size of one training run
    max_page_size: int = 100  # ListTokenizers
    min_vocab_size: int = 100
    max_vocab_size: int = 1_000_000


@dataclass(frozen=True)
class InferenceLimits:
    max_new_tokens: int = 512  # the default and the cap of generated tokens per request
    max_samples: int = 8  # n
    max_stop_sequences: int = 8
    max_top_logprobs: int = 20
    # Images (POST /v1/images/generations, GenerateImages) of the fine-tune service's diffusion models.
    max_images: int = 16  # n
    max_image_steps: int = 1000  # denoising steps


@dataclass(frozen=True)
class EmbeddingLimits:
    max_request_inputs: int = 1024  # texts (or token-id sequences, or rerank passages) per request
    max_input_tokens: int = 256  # all-MiniLM-L6-v2's window; longer inputs follow the truncation policy


@dataclass(frozen=True)
class RetrievalLimits:
    max_documents_per_request: int = 256
    max_document_bytes: int = 8 * 1024 * 1024
    max_top_k: int = 100
    max_candidate_count: int = 1000  # candidates gathered per stage before fusion and rerank
    max_page_size: int = 1000  # collections or documents per list page
    # Tenants and collections: what a store path and a Qdrant collection name can be.
    name_pattern: str = r"^[a-z0-9][a-z0-9_-]{0,62}$"
    min_chunk_size_tokens: int = 8
    max_chunk_size_tokens: int = 8192


@dataclass(frozen=True)
class EvaluationLimits:
    max_examples: int = 100_000  # a run's limit per task
    max_few_shot: int = 64
    max_new_tokens: int = 4096  # per generated answer
    max_samples_per_example: int = 100  # answers per example (pass@k)
    max_temperature: float = 2.0
    max_top_k: int = 100  # retrieval results per query
    max_page_size: int = 1000  # runs or samples per list page
    min_resamples: int = 100  # bootstrap resamples of a comparison
    max_resamples: int = 100_000


@dataclass(frozen=True)
class AgentLimits:
    max_page_size: int = 1000  # assistants, threads, runs or checkpoints per list page
    default_max_steps: int = 25  # LangGraph's recursion limit when neither the run nor the assistant sets one
    max_steps: int = 200  # the largest step limit a run or an assistant may ask for


@dataclass(frozen=True)
class FinetuneLimits:
    max_dataset_bytes: int = 10 * 1024 * 1024  # one uploaded training file
    max_dataset_records: int = 100_000  # records (lines) of one training file
    max_page_size: int = 100  # files, jobs, events, checkpoints or artifacts per list page (OpenAI's `limit`)
    default_page_size: int = 20
    default_checkpoint_page_size: int = 10
    max_suffix_length: int = 40  # in the served name ft:<base>:<suffix>:<job>
    max_metadata_pairs: int = 16  # OpenAI's metadata: 16 pairs, keys up to 64 and values up to 512 characters
    max_metadata_key_length: int = 64
    max_metadata_value_length: int = 512
    # Hyperparameters (OpenAI's n_epochs is 1..50, batch_size 1..256).
    max_epochs: int = 50
    max_batch_size: int = 256
    max_learning_rate_multiplier: float = 100.0  # above zero
    max_steps: int = 1_000_000  # max_steps, checkpoint_steps and eval_steps
    min_seq_length: int = 16
    max_seq_length: int = 1_048_576  # tokens; a base model's context is the tighter bound, checked per model
    max_gradient_accumulation_steps: int = 256
    max_warmup_ratio: float = 1.0
    max_weight_decay: float = 1.0


TOKENIZER = TokenizerLimits()
INFERENCE = InferenceLimits()
EMBEDDING = EmbeddingLimits()
RETRIEVAL = RetrievalLimits()
EVALUATION = EvaluationLimits()
AGENT = AgentLimits()
FINETUNE = FinetuneLimits()
