"""Parsing, chunking options and chunking, without services."""

from __future__ import annotations

import pytest
from genai_core.errors import InvalidArgument
from genai_retrieval import chunking, parsing
from genai_retrieval.types import Chunking, ChunkingOptions, Splitter

from tests.support.pdf import make_pdf


def test_plain_markdown_html():
    assert parsing.parse("d", "", "hello", None).text == "hello"
    assert parsing.parse("d", "text/markdown", "# T\n\nbody", None).mime_type == parsing.MARKDOWN
    html = "<html><head><style>x{}</style><title>T</title></head><body><h1>Head</h1><p>A &amp; B</p>" \
           "<script>bad()</script></body></html>"
    text = parsing.parse("d", "text/html; charset=utf-8", html, None).text
    assert "A & B" in text and "Head" in text and "bad()" not in text and "x{}" not in text


def test_pdf_pages_and_malformed():
    parsed = parsing.parse("documents[0]", "application/pdf", None, make_pdf(["Page one text", "Page two text"]))
    assert "Page one text" in parsed.text and "Page two text" in parsed.text
    chunks = chunking.cut(parsed, Chunking(4, 0))
    assert chunks[0].page_number == 1 and chunks[-1].page_number == 2
    with pytest.raises(InvalidArgument) as err:
        parsing.parse("documents[3]", "application/pdf", None, b"%PDF-1.4 this is not a pdf")
    assert err.value.field_violations[0].field == "documents[3].data"
    with pytest.raises(InvalidArgument):
        parsing.parse("documents[0]", "image/png", None, b"x")


def test_chunks_by_tokens_with_overlap_and_spans():
    text = " ".join(f"word{i}" for i in range(400))
    chunks = chunking.cut(parsing.Parsed(text, parsing.TEXT, [0]), Chunking(32, 8))
    assert len(chunks) > 5
    assert all(c.token_count <= 32 for c in chunks)
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert chunks[1].start < chunks[0].end  # overlap
    md = "# One\n\nalpha beta\n\n# Two\n\ngamma delta"
    md_chunks = chunking.cut(parsing.Parsed(md, parsing.MARKDOWN, [0]), Chunking(5, 0))
    assert [c.text.splitlines()[0] for c in md_chunks][:2] == ["# One", "# Two"]
    # The Markdown splitter asked for by name cuts at headings even when the document is plain text.
    as_text = chunking.cut(parsing.Parsed(md, parsing.TEXT, [0]), Chunking(5, 0, Splitter.MARKDOWN))
    assert [c.text for c in as_text] == [c.text for c in md_chunks]


def test_chunking_options_fall_back_and_are_checked():
    base = Chunking(200, 32, Splitter.MARKDOWN)
    assert chunking.resolve(ChunkingOptions(), base, "chunking") == base
    assert chunking.resolve(ChunkingOptions(64, 0, Splitter.TOKEN), base, "chunking") == Chunking(64, 0, Splitter.TOKEN)
    for options, field in ((ChunkingOptions(size=7), "chunking.chunk_size_tokens"),
                           (ChunkingOptions(size=8193), "chunking.chunk_size_tokens"),
                           (ChunkingOptions(size=64, overlap=64), "chunking.chunk_overlap_tokens"),
                           (ChunkingOptions(overlap=200), "chunking.chunk_overlap_tokens")):
        with pytest.raises(InvalidArgument) as err:
            chunking.resolve(options, base, "chunking")
        assert err.value.field_violations[0].field == field


@pytest.mark.parametrize("mime", ["text/plain", "text/markdown", "text/html"])
def test_binary_content_is_not_text(mime):
    # An executable's header decodes as UTF-8 ("MZ\0\0..."); its NUL bytes give it away.
    with pytest.raises(InvalidArgument, match="NUL bytes"):
        parsing.parse("documents[0]", mime, None, b"MZ\x00\x00\x03\x00\x00\x00")
    with pytest.raises(InvalidArgument, match="NUL bytes"):
        parsing.parse("documents[0]", mime, "text\x00more", None)
