"""Parsing and chunking, without services."""

from __future__ import annotations

import pytest
from genai_core.errors import InvalidArgument
from genai_retrieval import ingest
from genai_retrieval.testing import make_pdf


def test_plain_markdown_html():
    assert ingest.parse("d", "", "hello", None).text == "hello"
    assert ingest.parse("d", "text/markdown", "# T\n\nbody", None).mime_type == ingest.MARKDOWN
    html = "<html><head><style>x{}</style><title>T</title></head><body><h1>Head</h1><p>A &amp; B</p>" \
           "<script>bad()</script></body></html>"
    text = ingest.parse("d", "text/html; charset=utf-8", html, None).text
    assert "A & B" in text and "Head" in text and "bad()" not in text and "x{}" not in text


def test_pdf_pages_and_malformed():
    parsed = ingest.parse("documents[0]", "application/pdf", None, make_pdf(["Page one text", "Page two text"]))
    assert "Page one text" in parsed.text and "Page two text" in parsed.text
    chunks = ingest.chunk(parsed, 4, 0, "")
    assert chunks[0].page_number == 1 and chunks[-1].page_number == 2
    with pytest.raises(InvalidArgument) as err:
        ingest.parse("documents[3]", "application/pdf", None, b"%PDF-1.4 this is not a pdf")
    assert err.value.field_violations[0].field == "documents[3].data"
    with pytest.raises(InvalidArgument):
        ingest.parse("documents[0]", "image/png", None, b"x")


def test_chunks_by_tokens_with_overlap_and_spans():
    text = " ".join(f"word{i}" for i in range(400))
    chunks = ingest.chunk(ingest.Parsed(text, ingest.TEXT, [0]), 32, 8, "")
    assert len(chunks) > 5
    assert all(c.token_count <= 32 for c in chunks)
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert chunks[1].start < chunks[0].end  # overlap
    md = "# One\n\nalpha beta\n\n# Two\n\ngamma delta"
    md_chunks = ingest.chunk(ingest.Parsed(md, ingest.MARKDOWN, [0]), 5, 0, "")
    assert [c.text.splitlines()[0] for c in md_chunks][:2] == ["# One", "# Two"]
