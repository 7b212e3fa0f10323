"""A model directory's fast tokenizer and chat template, read with the ``tokenizers`` library and jinja2 alone.

The serving process needs four things of a tokenizer: encode, decode, the EOS token, and the chat template
rendered. transformers' ``PreTrainedTokenizerFast`` gives them too, but importing transformers and building
its tokenizer costs the inference process ~30 MiB of resident memory that a deployment must budget (the
engine's own weights are ~130 MiB). The template is rendered the way Hugging Face chat templates expect
(and TGI and llama.cpp's servers render them): a sandboxed jinja2 environment with ``trim_blocks`` and
``lstrip_blocks``, loop controls, a ``tojson`` that keeps non-ASCII text, ``raise_exception`` and
``strftime_now``, and the special tokens as variables. ``tests/test_tokenization.py`` checks the result
against transformers on the same files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")
# What transformers' clean_up_tokenization undoes: spaces a word-level detokenizer leaves before punctuation.
_CLEANUPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
             (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


@dataclass(frozen=True)
class Encoding:
    input_ids: list[int]


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _template(directory: Path, config: Mapping[str, Any]) -> str | None:
    """chat_template.jinja, chat_template.json, or tokenizer_config.json's (the "default" one of a named list)."""
    if (directory / "chat_template.jinja").exists():
        return (directory / "chat_template.jinja").read_text()
    template = config.get("chat_template")
    if (directory / "chat_template.json").exists():
        template = json.loads((directory / "chat_template.json").read_text()).get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
        template = named.get("default")
    return template if isinstance(template, str) else None


class Tokenizer:
    """Encode, decode and chat templates of a directory holding ``tokenizer.json`` (and usually
    ``tokenizer_config.json``); the calls are the subset of transformers' tokenizer API the service uses."""

    def __init__(self, directory: Path) -> None:
        from tokenizers import Tokenizer as Backend

        directory = Path(directory)
        backend = Backend.from_file(str(directory / "tokenizer.json"))
        backend.no_truncation()  # a prompt is never cut silently: the service checks its length itself
        backend.no_padding()
        self.backend_tokenizer = backend
        path = directory / "tokenizer_config.json"
        config = json.loads(path.read_text()) if path.exists() else {}
        self.special_tokens = {name: text for name in SPECIAL_TOKENS if (text := _token_text(config.get(name)))}
        eos = self.special_tokens.get("eos_token")
        self.eos_token_id = backend.token_to_id(eos) if eos else None
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        self.chat_template = _template(directory, config)

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    def __call__(self, text: str, add_special_tokens: bool = True) -> Encoding:
        return Encoding(self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        text = self.backend_tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        # The clean-up was made for WordPiece; on a byte-level BPE it would eat real spaces (transformers skips it too).
        if clean and type(self.backend_tokenizer.model).__name__ != "BPE":
            for before, after in _CLEANUPS:
                text = text.replace(before, after)
        return text

    def apply_chat_template(self, conversation: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = False,
                            tokenize: bool = False, **kwargs: Any) -> str:
        """The conversation as the model's template renders it; ``kwargs`` reach the template as variables."""
        if tokenize:
            raise ValueError("render the text, then encode it")
        if not self.chat_template:
            raise ValueError("this model has no chat template; send a prompt instead of messages")
        variables = {**self.special_tokens, **kwargs}
        return self._compiled.render(messages=list(conversation), add_generation_prompt=add_generation_prompt,
                                     **variables)

    @cached_property
    def _compiled(self) -> Any:
        import jinja2
        from jinja2.ext import Extension, loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        class Generation(Extension):
            """``{% generation %}…{% endgeneration %}`` (marks assistant text for training masks): its body as is."""

            tags = {"generation"}

            def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
                lineno = next(parser.stream).lineno
                body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
                return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

            def _body(self, caller: Any) -> str:
                return caller()

        def raise_exception(message: str) -> None:
            raise jinja2.exceptions.TemplateError(message)

        def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
                   separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
            return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                              sort_keys=sort_keys)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[Generation, loopcontrols])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        return env.from_string(self.chat_template)
