"""Incremental detokenization and stop-sequence matching for one completion.

Text is emitted only once it is stable: a token sequence that ends inside a multi-byte UTF-8
character decodes to U+FFFD, so that piece waits for the next token. Text that could be the
start of a stop sequence is held back until it is clear, so a stop sequence split across
tokens is never streamed and never appears in the output.
"""

from __future__ import annotations

from collections.abc import Sequence


class TextStream:
    def __init__(self, tokenizer, stops: Sequence[str] = (), prompt_tail: Sequence[int] = ()) -> None:
        self._tokenizer = tokenizer
        self._stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        # Decoding starts a few prompt tokens back so the first word keeps its leading space.
        self._ids: list[int] = list(prompt_tail)[-4:]
        self._prefix = 0
        self._read = len(self._ids)
        self._text = ""  # all stable text of the completion
        self._sent = 0  # how much of _text was emitted
        self.stopped_by: str | None = None

    def _decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        """Add a token; return the text that became safe to emit (possibly empty)."""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        full = self._decode(self._ids[self._prefix :])
        if full.endswith("\ufffd") or len(full) <= len(prefix_text):
            return ""
        self._text += full[len(prefix_text) :]
        self._prefix, self._read = self._read, len(self._ids)
        return self._emit()

    def _emit(self, final: bool = False) -> str:
        if self._stops:
            start = max(0, self._sent - self._hold)
            found = [(i, s) for s in self._stops if (i := self._text.find(s, start)) >= 0]
            if found:
                index, stop = min(found)
                self.stopped_by = stop
                self._text = self._text[:index]
                final = True
        limit = len(self._text) if final or not self._stops else max(self._sent, len(self._text) - self._hold)
        piece = self._text[self._sent : limit]
        self._sent = limit
        return piece

    def finish(self) -> str:
        """Flush what was held back; call once when the completion ends."""
        return self._emit(final=True)

    @property
    def text(self) -> str:
        return self._text[: self._sent]
