"""Generation metrics (Prometheus): TTFT, inter-token latency, queue, batch size, step time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH = (1, 2, 4, 8, 12, 16, 24, 32, 64)


class InferenceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.ttft = Histogram(
            "genai_inference_time_to_first_token_seconds", "From enqueue to the first generated token.",
            buckets=_SECONDS, registry=registry,
        )
        self.inter_token = Histogram(
            "genai_inference_inter_token_latency_seconds", "Mean time between tokens of a request.",
            buckets=_SECONDS, registry=registry,
        )
        self.queue_time = Histogram(
            "genai_inference_queue_seconds", "Time a request waited for a batch slot.", buckets=_SECONDS,
            registry=registry,
        )
        self.step_time = Histogram(
            "genai_inference_decode_step_seconds", "Wall time of one decode step of the whole batch.",
            buckets=_SECONDS, registry=registry,
        )
        self.batch_size = Histogram(
            "genai_inference_batch_size", "Sequences in each decode step.", buckets=_BATCH, registry=registry
        )
        self.queue_depth = Gauge("genai_inference_queue_depth", "Requests waiting for a slot.", registry=registry)
        self.rejected = Counter(
            "genai_inference_rejected_requests", "Requests refused because the queue was full.", registry=registry
        )
        self.cached_prompt_tokens = Counter(
            "genai_inference_cached_prompt_tokens", "Prompt tokens whose KV came from the prefix cache.",
            registry=registry,
        )
        self.generated_tokens = Counter(
            "genai_inference_generated_tokens", "Tokens generated, all requests.", registry=registry
        )
