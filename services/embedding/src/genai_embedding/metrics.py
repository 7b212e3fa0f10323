"""Embedding batch metrics (Prometheus): texts and padded tokens per forward, queue wait, forward time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_TEXTS = (1, 2, 4, 8, 16, 32, 64, 128)
_TOKENS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384)


class EmbeddingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.batch_texts = Histogram(
            "genai_embedding_forward_texts", "Texts in each forward pass.", buckets=_TEXTS, registry=registry
        )
        self.batch_tokens = Histogram(
            "genai_embedding_forward_padded_tokens", "Padded tokens (rows x width) in each forward pass.",
            buckets=_TOKENS, registry=registry,
        )
        self.padding = Counter(
            "genai_embedding_padding_tokens", "Pad tokens computed and thrown away, all forwards.", registry=registry
        )
        self.tokens = Counter("genai_embedding_input_tokens", "Real input tokens embedded.", registry=registry)
        self.queue_time = Histogram(
            "genai_embedding_queue_seconds", "Time a request waited before its forward started.", buckets=_SECONDS,
            registry=registry,
        )
        self.forward_time = Histogram(
            "genai_embedding_forward_seconds", "Wall time of one forward pass.", buckets=_SECONDS, registry=registry
        )
        self.queue_depth = Gauge("genai_embedding_queue_depth", "Requests waiting for the model.", registry=registry)
        self.rejected = Counter(
            "genai_embedding_rejected_requests", "Requests refused because the queue was full.", registry=registry
        )
