"""How long the gateway waits for a backend: the deadline follows the work, per route.

* Generation (chat, completions, TGI, RAG answers) has no deadline by default, as in vLLM and TGI: it runs
  until it ends or its HTTP client leaves, and leaving cancels it (``calls.unary`` sends Cancel, a closed
  stream cancels the gRPC stream). ``GENAI_GATEWAY_GENERATION_TIMEOUT`` sets one.
* Work that grows with the request (embedding inputs, rerank passages, chunks to ingest, search candidates
  to rerank) gets the base deadline plus ``GENAI_GATEWAY_SECONDS_PER_INPUT`` per unit. The default, 0.25 s,
  is about 8x what one 256-token input costs the embedding service on 2 busy cores (30 abstracts/s alone,
  see README "Measured"), so the largest documented request (1,024 inputs) gets 286 s.
* Everything else (lookups, lists, tokenization: bounded by the body limit) gets the base deadline,
  ``GENAI_GATEWAY_REQUEST_TIMEOUT`` (30 s).
"""

from __future__ import annotations

from dataclasses import dataclass

from genai_core.channels import NO_DEADLINE

# About one chunk of text (200 MiniLM tokens is roughly 800 bytes of English): the unit of ingest work.
BYTES_PER_CHUNK = 800


@dataclass(frozen=True)
class Deadlines:
    base: float  # seconds
    generation: float  # seconds; 0: no deadline
    per_input: float  # seconds per unit of input

    def lookup(self) -> float:
        return self.base

    def generate(self) -> float:
        return self.generation or NO_DEADLINE

    def inputs(self, units: int) -> float:
        """The deadline of a call whose cost grows with ``units`` (texts, passages, chunks, candidates)."""
        return self.base + self.per_input * max(units, 0)

    def ingest(self, documents: int, text_bytes: int) -> float:
        return self.inputs(documents + text_bytes // BYTES_PER_CHUNK)
