"""Parsing documents into text: plain text, Markdown, HTML (visible text) and PDF (text per page)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from html.parser import HTMLParser

from genai_core.errors import InvalidArgument

TEXT, MARKDOWN, HTML, PDF = "text/plain", "text/markdown", "text/html", "application/pdf"
SUPPORTED = (TEXT, MARKDOWN, HTML, PDF)
_ALIASES = {"": TEXT, "text": TEXT, "txt": TEXT, "markdown": MARKDOWN, "md": MARKDOWN, "text/x-markdown": MARKDOWN,
            "html": HTML, "application/xhtml+xml": HTML, "pdf": PDF}


@dataclass(frozen=True)
class Parsed:
    text: str
    mime_type: str
    page_starts: list[int]  # character offset where each page starts (PDF), else [0]


def normalize_mime(mime: str) -> str:
    base = mime.split(";")[0].strip().lower()
    return _ALIASES.get(base, base)


class _TextExtractor(HTMLParser):
    _SKIP = {"script", "style", "head", "noscript", "template"}
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre",
              "blockquote", "table", "ul", "ol", "header", "footer", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data) -> None:
        if not self._skip:
            self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text, blank = [], False
    for line in lines:
        if line:
            text.append(line)
            blank = False
        elif not blank and text:
            text.append("")
            blank = True
    return "\n".join(text).strip()


def parse(field: str, mime: str, text: str | None, data: bytes | None) -> Parsed:
    """Extract text; INVALID_ARGUMENT names ``field`` when the content cannot be read."""
    mime = normalize_mime(mime)
    if mime not in SUPPORTED:
        raise InvalidArgument.for_field(f"{field}.mime_type", f"unsupported MIME type {mime!r}; use one of {list(SUPPORTED)}")
    if mime == PDF:
        if data is None:
            raise InvalidArgument.for_field(f"{field}.data", "send PDF content as bytes in data")
        return _pdf(field, data)
    where = f"{field}.text" if text is not None else f"{field}.data"
    if text is None:
        try:
            text = (data or b"").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgument.for_field(where, f"{mime} content must be UTF-8: {exc}") from None
    if "\x00" in text:  # executables, images, archives: binary content that happens to decode
        raise InvalidArgument.for_field(
            where, f"contains NUL bytes: binary content, not {mime}; supported types are {', '.join(SUPPORTED)}")
    if mime == HTML:
        text = _html_text(text)
    return Parsed(text, mime, [0])


def _pdf(field: str, data: bytes) -> Parsed:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise InvalidArgument.for_field(f"{field}.data", f"malformed PDF: {exc}") from None
    if not reader.pages:
        raise InvalidArgument.for_field(f"{field}.data", "malformed PDF: no pages")
    starts, parts, pos = [], [], 0
    for page in pages:
        starts.append(pos)
        parts.append(page)
        pos += len(page) + 2
    return Parsed("\n\n".join(parts), PDF, starts)
